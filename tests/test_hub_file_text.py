"""Text in a weights file's place that the quotes of test_hub_file_quotes.py missed: UTF-16
without a byte order mark (a server's reply, a file saved as UTF-16LE without one), said as
"corrupt" with no word of what it holds; a line holding a bidirectional control, said as no
text at all. Both are now quoted, the control escaped so that it reorders no line."""

from __future__ import annotations

import pytest

from hub_helpers import TEXT, _said
from loftup.hub.file_text import decoded

SUFFIXES = [".safetensors", ".pth"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_utf16_text_without_a_byte_order_mark_is_decoded_and_quoted(tmp_path, suffix):
    """Little-endian text (its accents too, and an odd last byte) and a big-endian page: NULs
    between its letters, it was "corrupt" and nothing more."""
    reply = "Accès refusé par le proxy\r\n".encode("utf-16-le") + b"x"
    path, said = _said(tmp_path, suffix, reply)
    assert said.startswith(f"{path} {TEXT}'Accès refusé par le proxy'; ")
    page = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>\n"
    path, said = _said(tmp_path, suffix, page.encode("utf-16-be"))
    assert said.startswith(f"{path} is a web page (HTML) titled 'Sign in', not a weights file")


def test_bytes_with_nuls_beside_controls_are_no_utf16_text():
    """Two-byte units of a control character and a NUL (a table of small integers) are not
    read as UTF-16 (whose text they would be: "\\x01\\x02..."): they stay the bytes they are."""
    data = bytes(b for i in range(1, 9) for b in (i, 0)) * 8
    assert decoded(data) == (data.decode("utf-8"), False)
    assert decoded("plain text".encode("utf-16-le")) == ("plain text", False)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_reply_holding_a_right_to_left_override_is_quoted_with_it_escaped(tmp_path, suffix):
    """U+202E in an error reply's line: the reply was not quoted at all (its line held a
    character not printable); it is, the override written as \\u202e, so that it reverses
    nothing of the message after it."""
    path, said = _said(tmp_path, suffix, "Access \u202edenied\u2066 by proxy\n".encode())
    assert said.startswith(f"{path} {TEXT}'Access \\u202edenied\\u2066 by proxy'; ")
    assert "\u202e" not in said and "\u2066" not in said
