"""Names in what loftup says to a library user (its warnings, its errors' text), as a terminal
shows them: a hostile one escaped where the warning or error is made, not only where the CLI
prints it; a harmless one quoted as it is."""

from __future__ import annotations

import os
import warnings

import pytest

from loftup.data.images import list_images
from loftup.escaping import printable, quoted

#: An escape (a colour) and a right-to-left override, and how a line shows them.
HOSTILE, SHOWN = "x\x1b[31mRED\u202e", "x\\x1b[31mRED\\u202e"


def test_a_library_warning_escapes_a_dangling_link_s_name(tmp_path):
    """list_images warned of a link to nothing named with an escape and U+202E raw: only the
    CLI's warning printer escaped it, so a library user's terminal obeyed both."""
    os.symlink(tmp_path / "nowhere", tmp_path / f"{HOSTILE}.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(list_images(tmp_path))
    said = " ".join(str(w.message) for w in caught)
    assert f"{SHOWN}.png" in said
    assert "\x1b" not in said and "\u202e" not in said


def test_escaping_twice_changes_nothing():
    """The CLI's warning printer escapes a warning made escaped: a no-op."""
    once = printable(f"a\\b {HOSTILE}")
    assert printable(once) == once == f"a\\\\b {SHOWN}"


def test_quoted_keeps_a_harmless_name_and_escapes_a_hostile_one():
    assert quoted("my\u00a0weights") == "'my\u00a0weights'"
    assert quoted(HOSTILE) == f"'{SHOWN}'"


def _refusal(weights: str) -> str:
    from loftup.errors import WeightsNotFoundError
    from loftup.featurizers import get_featurizer

    with pytest.raises(WeightsNotFoundError) as caught:
        get_featurizer("dinov2_vits14", weights=weights)
    return str(caught.value)


def test_a_hostile_hub_id_is_shown_the_same_wherever_the_line_quotes_it(tmp_path, monkeypatch):
    """The line quoted the id with repr ('org/we\\x1b...') next to huggingface_hub's message,
    which quotes it raw: the CLI escaped the raw ESC and with it doubled the repr's backslashes,
    so one line showed the name two ways, one with a backslash it does not hold."""
    monkeypatch.chdir(tmp_path)
    said = _refusal("org/we\x1b[31mights")
    assert said.count("'org/we\\x1b[31mights'") == 2
    assert "\x1b" not in said and "\\\\" not in said
    assert printable(said) == said  # the CLI's escape of the line: a no-op


def test_a_no_break_space_in_a_weights_folder_is_quoted_as_it_is(tmp_path, monkeypatch):
    """repr wrote 'my\\xa0weights', a folder that does not exist."""
    monkeypatch.chdir(tmp_path)
    said = _refusal("my\u00a0weights")
    assert "'my\u00a0weights' is neither a folder here nor a hub id" in said
