"""The CLI's one-line errors, where a path the user gave holds characters that are not
printable: written escaped, not obeyed by the terminal nor breaking the line; so are argparse's
error, the rank that starts a line, a "wrote" line, a file system error's path and a
warning."""

from __future__ import annotations

import argparse
import errno
import os

import pytest

from loftup.cli import _main, _show_warning, main
from loftup.data.images import list_images


def test_a_path_with_an_escape_and_a_newline_is_shown_escaped_in_the_error(capsys, tmp_path):
    """A name holding ESC and a newline was printed raw in the error: the terminal took the
    escape as a colour and the error ran over two lines. Printable non-ASCII (é) stays."""
    taken = tmp_path / "caf\u00e9\x1b[31mred\nline.jpg"
    taken.write_bytes(b"x")
    assert main(["upsample", str(taken), "-m", "nosuch", "-o", str(taken)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: -o {tmp_path}/caf\u00e9\\x1b[31mred\\nline.jpg is a file; give a folder\n"
    )


#: What a name holding an escape, a right-to-left override and a newline is shown as: each
#: written as Python writes it (the override, U+202E, reversed the rest of the line)
ODD, SHOWN = "o\x1b[31m\u202eut\nx", "o\\x1b[31m\\u202eut\\nx"


def test_an_unknown_argument_is_quoted_escaped_in_argparse_s_error(capsys):
    """argparse's error quoted what was typed raw ("unrecognized arguments: ..."): the escape
    coloured the terminal, the override reversed the line, the newline broke it."""
    with pytest.raises(SystemExit) as e:
        main(["info", f"--{ODD}"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"loftup: error: unrecognized arguments: --{SHOWN}"
    )


def test_the_rank_an_error_line_starts_with_is_escaped(capsys, monkeypatch, tmp_path):
    """Under torchrun an error line starts with RANK as the environment holds it: written raw,
    before the message that was escaped. The whole line is now, the one line it was meant to
    be."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", ODD)
    assert main(["upsample", str(tmp_path / "none.jpg"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"[rank {SHOWN}] error: RANK={SHOWN} is not an integer")
    assert err.count("\n") == 1 and "\x1b" not in err and "\u202e" not in err


def test_the_wrote_line_quotes_the_path_escaped(capsys, tmp_path):
    """``wrote PATH`` (on stdout, as every command's last words) printed the path raw."""
    path = tmp_path / f"{ODD}.json"
    assert main(["info", "--json", str(path)]) == 0
    assert path.is_file()
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {tmp_path}/{SHOWN}.json"


def test_a_file_system_error_names_its_path_escaped(capsys):
    """A path the file system refused was said as ``error: PATH: why`` with PATH raw (the one
    error line that did not go through printable)."""

    def refused(args):
        raise OSError(errno.ENOENT, "No such file or directory", ODD)

    assert _main(argparse.Namespace(func=refused, command="upsample")) == 2
    assert capsys.readouterr().err == f"error: {SHOWN}: No such file or directory\n"


def test_a_warning_is_shown_escaped_on_one_line(capsys):
    """A warning quoting a path (a skipped dataset file's, a config.json passed over) was
    written with its escape and override raw; a newline, the path's or a library's wrapped
    line's, is written ``\\n`` (it was made a space: the name was not the file's)."""
    _show_warning(f"skipped {ODD}:\n    not an image", UserWarning, "x.py", 1)
    assert capsys.readouterr().err == f"warning: skipped {SHOWN}:\\n    not an image\n"


def test_a_skipped_dataset_file_is_named_escaped_in_its_warning(tmp_path, capsys):
    """A pipe under a dataset's image name, passed over with a warning: the name's newline
    and escape were in it raw (the one-line warning made the newline a space, the name
    no longer the file's). Escaped where the warning is made (a library user's terminal
    obeyed it raw), and said as it is by the CLI: escaping an escaped text changes nothing."""
    os.mkfifo(tmp_path / f"{ODD}.jpg")
    with pytest.warns(UserWarning) as said:
        assert list_images(tmp_path) == []
    assert str(said[0].message).startswith(f"skipped {tmp_path}/{SHOWN}.jpg: ")
    _show_warning(said[0].message, UserWarning, "x.py", 1)
    assert capsys.readouterr().err.startswith(f"warning: skipped {tmp_path}/{SHOWN}.jpg: ")


def test_training_s_log_lines_quote_a_path_escaped(capsys):
    """``loftup train`` prints loftup's log lines (an unreadable image skipped, a checkpoint's
    folder) through its own handler: the path in them was raw."""
    import logging

    from loftup.cli.train import _log_beside_bars

    log = logging.getLogger("loftup.test_terminal_text")
    with _log_beside_bars(log):
        log.warning("skipping unreadable %s (OSError: truncated)", ODD)
    assert capsys.readouterr().err == f"skipping unreadable {SHOWN} (OSError: truncated)\n"


def test_every_bidirectional_control_is_escaped():
    """Each embedding, override, isolate and mark (the quotes of a file's text keep them in
    the line, for the quote's repr to escape) is written as its escape, the text around it
    as it is: none reorders the line it is said in."""
    from loftup.errors import printable
    from loftup.hub.file_text import BIDI_CONTROLS

    for c in sorted(BIDI_CONTROLS):
        assert printable(f"a{c}é") == f"a\\u{ord(c):04x}é" == repr(f"a{c}é")[1:-1]
