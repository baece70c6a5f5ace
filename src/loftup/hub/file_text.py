"""What a weights file's head (its first :data:`HEAD_SIZE` bytes) says where it is text: decoded
(UTF-8, UTF-16 with or without its byte order mark, else Windows-1252: :func:`decoded`), a web
page told from other text (:func:`is_page`) and quoted by its title or first text
(:func:`page_said`), other text by its first line (:func:`text_line`), each quote cut at a word
and free of "; " (:func:`quoted`), which starts a caller's fix."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from ..escaping import BIDI_CONTROLS

#: How many bytes of a weights file are read as its head (once a load): a Git LFS pointer whole
#: (about 130 bytes, its size line last), a web page's <title>, an error reply's first line.
HEAD_SIZE = 4096

#: The most characters of a file's text that a message quotes (cut at a word, then "...").
QUOTE_MAX = 120

#: What may stand before a page's first tag: a UTF-8 byte order mark.
UTF8_BOM = b"\xef\xbb\xbf"

#: UTF-16's byte order marks (little-endian first: what Windows PowerShell 5.1's ``>`` writes).
UTF16_BOMS = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}

#: How a web page begins, once comments and an XML declaration before it are passed over: a
#: doctype, or the first tag of a page (a Squid or nginx page may start at <head> or <body>).
_PAGE = re.compile(
    r"\s*(?:<!--.*?-->\s*|<\?xml[^>]*>\s*)*<(?:!doctype\s+html|html|head|body|title)(?=[\s>/])",
    re.IGNORECASE | re.DOTALL,
)

#: How many of a head's first two-byte units :func:`_utf16_without_bom` looks at, and how many
#: in 16 of them must be a NUL beside a character of text for the head to be UTF-16.
_UTF16_UNITS, _UTF16_SHARE = 64, 15

#: Which bytes are a character of text as the low byte of a UTF-16 unit of ASCII or Latin-1:
#: printable ones, tab, line feed and carriage return.
_LATIN_TEXT = [chr(b).isprintable() or chr(b) in "\t\n\r" for b in range(256)]

#: A terminal's escape sequences, as a coloured error reply holds them: CSI (``ESC [ ... m``, a
#: colour) and OSC (``ESC ] ... BEL`` or ``ESC \``, a window's title); left out of what is
#: quoted, and of the count of control characters.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*(?:\x07|\x1b\\)")

#: At most one character in this many of a head's text may be a control character (an escape
#: sequence of a coloured error reply): more, and the bytes are no text.
_CONTROL_SHARE = 16


def decoded(head: bytes) -> tuple[str | None, bool]:
    """``head`` as text, and whether it is UTF-16 (its byte order mark first: a download's
    output written by a shell's ``>`` redirection, as Windows PowerShell 5.1 writes text);
    else UTF-8 (its byte order mark dropped), else Windows-1252 (a Latin-1 error page's "é").
    A character cut at the end of a whole :data:`HEAD_SIZE` head is dropped. None where it is
    none of these. UTF-16 without a byte order mark (a server's reply, a file saved as
    UTF-16LE without one: :func:`_utf16_without_bom`) is decoded too, the second value False:
    no shell's redirection writes it, so the fix for one would mislead."""
    whole = len(head) >= HEAD_SIZE
    codec = UTF16_BOMS.get(head[:2])
    if codec is not None:
        return _decode(head[2:], codec, whole), True
    codec = _utf16_without_bom(head)
    if codec is not None:  # (an odd last byte: the file's, cut; a NUL-riddled UTF-8 else)
        return _decode(head[: len(head) // 2 * 2], codec, whole), False
    return _decode(head.removeprefix(UTF8_BOM), "utf-8", whole) or _decode(head, "cp1252"), False


def _utf16_without_bom(head: bytes) -> str | None:
    """The codec ("utf-16-le" or "utf-16-be") of ``head``, with no byte order mark, where it
    plausibly is UTF-16 text: of its first :data:`_UTF16_UNITS` two-byte units (at least 4),
    nearly all (:data:`_UTF16_SHARE` in 16) are a NUL beside an ASCII or Latin-1 character
    (white space but for NUL itself), the NUL on the same side each time; else None (UTF-8
    text holds no NULs, a weights file's head no such run)."""
    units = min(len(head) // 2, _UTF16_UNITS)
    if units < 4:
        return None
    for codec, at in (("utf-16-le", 0), ("utf-16-be", 1)):
        chars, nuls = head[at : units * 2 : 2], head[1 - at : units * 2 : 2]
        text = sum(n == 0 and _LATIN_TEXT[c] for c, n in zip(chars, nuls))
        if text * 16 >= units * _UTF16_SHARE:
            return codec
    return None


def _decode(data: bytes, codec: str, whole: bool = False) -> str | None:
    """``data`` decoded as ``codec``, where it is; a character cut at its end dropped where
    ``whole`` (the head stopped there, not the file); None where it is no such text."""
    try:
        return data.decode(codec)
    except UnicodeDecodeError as e:
        if not whole or e.reason not in ("unexpected end of data", "truncated data"):
            return None
        try:
            return data[: e.start].decode(codec)
        except UnicodeDecodeError:
            return None


def is_page(text: str) -> bool:
    """Whether ``text`` begins as a web page (HTML) does: comments and an XML declaration
    passed over, then ``<!doctype html``, ``<html``, ``<head``, ``<body`` or ``<title``."""
    return _PAGE.match(text) is not None


def text_line(text: str) -> str | None:
    """The first line of ``text`` that is not blank, as a message quotes it (:func:`quoted`;
    an XML declaration passed over for the line that says what the reply is), where that line
    is printable and the text holds few control characters; else None (bytes that are no
    text). A control character past that line leaves it quoted; a terminal's escape sequences
    (a colour's) are left out."""
    text = _ESCAPES.sub("", text)
    lines = [line for line in re.split(r"\r\n|[\r\n]", text) if line.strip()]
    if not lines:
        return None
    line = lines[1] if lines[0].lstrip().startswith("<?xml") and len(lines) > 1 else lines[0]
    controls = sum(not _printable(c) for c in text)
    if controls * _CONTROL_SHARE > len(text) or not _printable(line):
        return None
    return quoted(line)


def _printable(line: str) -> bool:
    """Whether ``line`` holds no character that is neither printable nor white space nor a
    bidirectional control (:data:`BIDI_CONTROLS`: the quote's repr escapes it)."""
    return all(c.isprintable() or c.isspace() or c in BIDI_CONTROLS for c in line)


def quoted(text: str) -> str:
    """``text`` as a message quotes it: a terminal's escape sequences left out, each run of white space one space, each "; " made ", "
    (callers cut a message at its first "; ", where their fix starts: a quote's own cut it
    short) and, past :data:`QUOTE_MAX` characters, cut at the last word that ends before it,
    "..." where it was cut."""
    text = " ".join(_ESCAPES.sub("", text).split()).replace("; ", ", ")
    said = text
    if len(said) > QUOTE_MAX:  # a word's end (a URL kept whole where it ends in time), else in it
        at = said.rfind(" ", QUOTE_MAX // 3, QUOTE_MAX + 1)
        said = said[: at if at > 0 else QUOTE_MAX]
    return said if said == text else said.rstrip(" ,.:;") + "..."


class _PageText(HTMLParser):
    """A web page's first <title> and its other text (``title``, ``text``: their pieces), its
    scripts and styles left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.text: list[str] = []
        self._in = ""  # "title", "script" or "style" while inside one
        self._titled = False  # the first title has ended: a later one is left out

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in ("title", "script", "style"):
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._titled = self._titled or tag == "title"
            self._in = ""

    def handle_data(self, data: str) -> None:
        if self._in == "title" and not self._titled:
            self.title.append(data)
        elif not self._in:
            self.text.append(data)


def page_said(text: str) -> str:
    """What a message says of the web page ``text``: " titled 'TITLE'", or " that reads
    'TEXT'" (its first text) where it has no title; "" where it holds no text. Markup the
    parser gives up on (an unknown marked section, ``<![foo]>``, which it raises
    AssertionError for) ends what is read of it: what came before is said."""
    page = _PageText()
    try:
        page.feed(text)
        page.close()
    except Exception:  # noqa: BLE001 - HTMLParser's asserts on odd markup: what it read stands
        pass
    title, text = (" ".join(pieces).strip() for pieces in (page.title, page.text))
    if title:
        return f" titled {quoted(title)!r}"
    return f" that reads {quoted(text)!r}" if text else ""
