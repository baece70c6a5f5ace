"""Names in what loftup says to a library user (its warnings, its errors' text), as a terminal
shows them: a hostile one escaped where the warning or error is made, not only where the CLI
prints it; a harmless one quoted as it is."""

from __future__ import annotations

import os
import warnings

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
