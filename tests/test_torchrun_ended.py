"""``extract.torchrun``'s collectives (a barrier, a sum) that fail because another process of
the run has ended, said in one line (``_with_the_others``) whatever gloo's error holds."""

from __future__ import annotations

import pytest

from loftup.errors import LoftUpError
from loftup.extract import torchrun


@pytest.mark.parametrize(
    ("error", "why"),
    [
        ("[../gloo/transport/tcp/pair.cc:534] ", "RuntimeError"),
        ("[../gloo/transport/tcp/pair.cc:534]", "RuntimeError"),
        ("", "RuntimeError"),
        ("[x] . Connection reset", "RuntimeError"),
        ("[x]\n\n  Connection closed by peer [::1]:45\nmore", "Connection closed by peer [::1]:45"),
        ("Connection closed by peer. Rank 1 is gone", "Connection closed by peer"),
    ],
)
def test_another_process_ended_with_nothing_after_gloos_prefix_is_said_in_one_line(error, why):
    """gloo's error with nothing after its ``[file:line]`` prefix (or nothing at all) raised an
    IndexError as its first line was taken, a traceback in place of the one line that says
    another process of the run has ended. Where nothing is left, its type is named."""
    with pytest.raises(LoftUpError) as e, torchrun._with_the_others():
        raise RuntimeError(error)
    assert str(e.value) == (
        f"another process of this run has ended ({why}), so this one cannot finish; its "
        "error says why"
    )
