"""The CLI's one-line errors, where a path the user gave holds characters that are not
printable: written escaped, not obeyed by the terminal nor breaking the line."""

from __future__ import annotations

from loftup.cli import main


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
