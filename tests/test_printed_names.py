"""Names a command prints, as the terminal shows them: a hostile one (an escape, a newline, a
right-to-left override) escaped wherever it is said, the per-image lines of a folder's
upsample too; a harmless one (a no-break space, an ideographic space, a soft hyphen, the
zero-width joiners of Persian and of emoji) as it is, so that the name said is the file's.
Within an escaped text, a backslash is written ``\\\\`` and a byte that is no UTF-8
``\\xNN``, so its escapes are told from its own backslashes; a text with nothing to escape is
printed as it is, backslashes too, so a name holding the characters ``\\x1b`` reads like an
escape where its line shows no other."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from loftup.cli import _show_warning, main
from loftup.errors import printable

#: An escape (a colour), a newline, a right-to-left override, and how each line shows them.
HOSTILE, SHOWN = "ba\x1b[31md\nx\u202e", "ba\\x1b[31md\\nx\\u202e"


def test_an_unreadable_image_s_name_is_escaped_in_its_skipped_line(tmp_path, upsampler, capsys):
    """The 'skipped:' line of an image that cannot be read printed its name raw: the escape
    coloured the terminal, the newline split the line."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (32, 24)).save(folder / "a.png")
    (folder / f"{HOSTILE}.png").write_bytes(b"not an image")
    argv = ["upsample", str(folder), "-m", str(upsampler), "--size", "16", "--no-progress"]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"skipped: cannot read image {folder}/{SHOWN}.png: " in err
    assert "\x1b" not in err and "\u202e" not in err


def test_an_image_that_fails_is_named_escaped_in_its_failed_line(tmp_path, upsampler, capsys):
    """The 'failed:' line (an image its backbone cannot take) printed its name raw."""
    strip = tmp_path / f"{HOSTILE}.png"
    Image.new("RGB", (3000, 2)).save(strip)
    argv = ["upsample", str(strip), "-m", str(upsampler), "--size", "16", "--no-progress"]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"failed: {tmp_path}/{SHOWN}.png: image is 2x3000 px" in err
    assert "\x1b" not in err and "\u202e" not in err


@pytest.mark.parametrize(
    "name",
    ["r e\u00a0port", "x\u3000y", "soft\u00adhyphen", "\u0645\u06cc\u200c\u062e", "👨\u200d👩"],
)
def test_a_harmless_name_is_said_as_it_is(tmp_path, capsys, name):
    """A no-break space, U+3000, a soft hyphen, the ZWNJ of Persian and the ZWJ of emoji
    were escaped ('wrote r e\\xa0port.json'), naming a file that does not exist."""
    path = tmp_path / f"{name}.json"
    assert main(["info", "--json", str(path)]) == 0
    wrote = capsys.readouterr().out.splitlines()[-1]
    assert wrote == f"wrote {path}"
    assert os.path.isfile(wrote.removeprefix("wrote "))


@pytest.mark.parametrize(
    "text, shown",
    [
        ("a\\x1b\x1b", "a\\\\x1b\\x1b"),  # the backslash told from the escape's
        ("a\\b", "a\\b"),  # nothing to escape: as it is
        ("back\\x1b.png", "back\\x1b.png"),  # nothing to escape: as it is, like an escape though
        ("o\udcfe\x85", "o\\xfe\\x85"),  # a byte of a name that is no UTF-8, as the byte
        ("\u2028\u2029\x7f\t\r\ud800", "\\u2028\\u2029\\x7f\\t\\r\\ud800"),
    ],
)
def test_printable_escapes_only_what_is_dangerous_and_its_backslashes_beside(text, shown):
    assert printable(text) == shown


def test_a_warning_keeps_a_name_s_newline_and_no_break_space(capsys):
    """A warning was made one line by turning every white space into a plain space: a path's
    newline and no-break space were said as spaces, the name not the file's."""
    _show_warning("/d/a\u00a0b\nc.jpg: its EXIF block is damaged", UserWarning, "x.py", 1)
    assert capsys.readouterr().err == "warning: /d/a\u00a0b\\nc.jpg: its EXIF block is damaged\n"


def test_a_davis_sequence_s_name_is_escaped_on_its_bar(tmp_path, capsys, monkeypatch):
    """The DAVIS bar's postfix named the sequence being tracked raw: a folder named with an
    escape coloured the terminal, one with U+202E reversed the bar's line. The bar is drawn as
    on a terminal (a notebook's: ten times a second), not every 5 s as into this test's log."""
    import loftup.bars
    from eval_data import TEST_BACKBONE, write_davis

    monkeypatch.setattr(loftup.bars, "_in_a_notebook", lambda: True)

    seq = "ba\x1b[31md\u202e"
    write_davis(tmp_path / "davis", sequences=(seq,), frames=3, h=28, w=28)
    argv = ["eval", "davis", "--root", str(tmp_path / "davis"), "--backbone", TEST_BACKBONE]
    assert main([*argv, "--upsampler", "bilinear", "--json", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    assert "sequence=ba\\x1b[31md\\u202e" in err and "\u202e" not in err
