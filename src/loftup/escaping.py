"""What a line loftup prints quotes of a path, a file's text or an environment variable,
written so that the terminal shows it and obeys none of it (:func:`printable`)."""

from __future__ import annotations

import re

#: Bidirectional controls (embeddings, overrides, isolates, marks): one reorders the rest of
#: the line it is printed in (U+202E reverses it).
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)

#: The characters a terminal obeys or that break or reorder a line: the C0 controls (escape,
#: newline, tab, ...), DEL, the C1 controls, the line and paragraph separators (U+2028,
#: U+2029), the bidirectional controls, and surrogates (a byte of a name that is no UTF-8,
#: as Python decodes it: U+DC80-U+DCFF).
DANGEROUS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029" + "".join(sorted(BIDI_CONTROLS)) + "\ud800-\udfff]"
)

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}


def _escape(c: str) -> str:
    code = ord(c)
    if c in _NAMED:
        return _NAMED[c]
    if 0xDC80 <= code <= 0xDCFF:  # the byte that was no UTF-8, as it was
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with each character a terminal would obey, or that would break or reorder the
    line (:data:`DANGEROUS`: an escape, a newline, a tab, a bidirectional control, a line
    separator) written as Python writes it in a string: ``\\x1b``, ``\\n``, ``\\u202e``; a
    byte of a file name that is no UTF-8 (``os.fsdecode``'s U+DCFE) as the byte, ``\\xfe``.
    Where anything is escaped, so is a backslash (``\\\\``): in such a text the four
    characters ``\\x1b`` are told from an escape. A text with nothing to escape is returned
    as it is, its backslashes too: a name holding the four characters ``\\x1b`` and nothing
    dangerous is printed as it is, and reads like an escaped one; a backslash sequence is an
    escape for sure only in a text that shows other escapes or a doubled backslash. Every
    other character stays as it is (``é``, a no-break space, U+3000, a soft hyphen, the
    zero-width joiners of Persian and of emoji): a path without a dangerous character is
    printed as it is, the name of the file it is. Idempotent (what it returns holds nothing
    to escape): a warning escaped where it is made is said as it is by the CLI, which escapes
    each warning again. A text should be escaped whole, or each piece it quotes; a piece
    escaped inside a text that holds a dangerous character elsewhere has its backslashes
    doubled when the whole is escaped."""
    if not DANGEROUS.search(text):
        return text
    return re.sub(r"[\\]|" + DANGEROUS.pattern, lambda m: _escape(m.group()), text)


def quoted(text) -> str:
    """``text`` (a path, a name, a file's text) in single quotes, :func:`printable`: what a
    user wrote quoted as they wrote it (``'my weights'``, its no-break space kept), where
    ``repr`` would write a no-break space ``\\xa0``, naming a file that does not exist."""
    return "'" + printable(str(text)) + "'"


def shell_quoted(text) -> str:
    """``text`` (a path) as a shell command pasted from a message gets it back: quoted as
    ``shlex.quote`` does where it holds nothing to escape; else in bash's ``$'...'``, with
    each :data:`DANGEROUS` character, a backslash and a single quote escaped as bash reads
    them there (``$'out\\nname'``; a byte that is no UTF-8 as the byte, ``\\xfe``; another
    character as its UTF-8 bytes, ``\\xe2\\x80\\xae``, which bash reads so in any locale). Plain
    single quotes around :func:`printable`'s escapes named a file that does not exist (``rm
    -r 'a\\nb'`` removed nothing). The result holds nothing :func:`printable` escapes: a
    message made of it and :func:`printable` pieces is said as it is."""
    import shlex

    text = str(text)
    if not DANGEROUS.search(text):
        return shlex.quote(text)
    return "$'" + re.sub(r"[\\']|" + DANGEROUS.pattern, _shell_escape, text) + "'"


def _shell_escape(match: re.Match) -> str:
    c = match.group()
    code = ord(c)
    if c == "'":
        return "\\'"
    if c in _NAMED or code < 0x80 or 0xDC80 <= code <= 0xDCFF:
        return _escape(c)  # \n, \\, \x1b; a byte that is no UTF-8 as the byte
    # its UTF-8 bytes (U+202E: \xe2\x80\xae; a C1 control too: \x85 is a byte to bash, not
    # U+0085): bash in the C or POSIX locale (LANG unset, as in many containers) leaves \u202e
    # as it is, naming another file; bytes are read the same in every locale
    return "".join(f"\\x{b:02x}" for b in c.encode())
