"""What ``loftup upsample`` echoes of its output folder's record (``upsample.json``) in a
refusal or a note: a value of a damaged or edited record (a 1 MB string, a list of 100,000
entries) is shortened, and said to be (:func:`loftup.words.echoed`)."""

from __future__ import annotations

import pytest

from loftup.cli.upsample import SAID_AS
from loftup.errors import LoftUpError
from loftup.extract import check_options
from loftup.extract.writers import warn_elsewhere
from loftup.words import ECHOED_CHARS

#: A record edited by hand, or damaged: values far longer than any option
HUGE = {"loftup_version": "0", "backbone": "b" * 1_000_000, "size": list(range(100_000))}

#: The rest of a refusal, past the values it echoes
WORDS = 1000


@pytest.mark.parametrize(("said_as", "quotes"), [(None, 2), (SAID_AS, 0)], ids=["python", "cli"])
def test_a_refusal_of_a_record_of_huge_values_echoes_them_shortened(tmp_path, said_as, quotes):
    """A run of other options than a record holding a 1 MB ``backbone`` and a ``size`` of
    100,000 entries was refused in a message as long (megabytes on one line, the command line's
    whole screen). Each value is cut to its start and end, saying how much was left out."""
    options = {"backbone": "dinov2_vits14", "size": [16, 16]}
    with pytest.raises(LoftUpError) as e:
        check_options(tmp_path, options, HUGE, resume=False, said_as=said_as)
    said = str(e.value)
    assert len(said) < 2 * ECHOED_CHARS + WORDS, said[:3000]
    assert said.count("[... shortened: ") == 2, said
    left = 1_000_000 + quotes - ECHOED_CHARS  # of the backbone's name (Python's: its repr)
    assert f"b[... shortened: {left} characters left out ...]b" in said, said
    assert "dinov2_vits14" in said  # (what this run has: whole)


def test_a_note_of_a_run_of_a_huge_host_name_echoes_it_shortened(tmp_path, capsys):
    """A ``--resume``'s warning of a run listed on another host named that host whole: an
    edited record's 1 MB name made a 1 MB line."""
    listed = {"id": "x", "host": "h" * 1_000_000, "pid": 12}
    warn_elsewhere(tmp_path, {"running": [listed]})
    err = capsys.readouterr().err
    assert len(err) < ECHOED_CHARS + WORDS and "[... shortened: " in err, err[:3000]
    assert err.startswith(f"warning: {tmp_path} lists a run as writing there, process 12 on h")
