"""What a weights file is before it is read as weights: a regular file this user may read
(:func:`check_regular_file`, :func:`open_weights`), and what its first bytes (its head,
:data:`HEAD_SIZE` of them, read once a load) say where they are not what its name promises
(:func:`check_head_not_lfs`, :func:`head_mistaken`): a Git LFS pointer (with the size of the
file it stands for), a web page (its title quoted), other text (its first line), a PyTorch
file under a ``.safetensors`` name."""

from __future__ import annotations

import os
import re
import stat
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

from ..errors import CheckpointError
from ..read_refusal import read_refused

#: How a Git LFS pointer file starts: what a clone made without Git LFS holds in place of each
#: large file (about 130 bytes of text naming the real file's hash and size).
LFS_POINTER = b"version https://git-lfs.github.com/spec/"

#: How many bytes of a weights file are read as its head (once a load): a Git LFS pointer whole
#: (about 130 bytes, its size line last), a web page's <title>, an error reply's first line.
HEAD_SIZE = 4096

#: The most characters of a file's text that a message quotes (cut at a word, then "...").
QUOTE_MAX = 120


def check_regular_file(path: Path, what: str = "") -> None:
    """A CheckpointError where ``path`` exists but is neither a regular file nor a folder (a
    FIFO, a socket, a device, a pipe given as ``<(...)``): opened, a FIFO waits forever for a
    writer, a pipe cannot be sought in. A missing file, a folder or one that cannot be looked
    at is left to the caller's own check or open. ``what``: the kind of file ("training
    checkpoint "), for the message."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    if stat.S_ISFIFO(mode):
        kind, why = "a FIFO or pipe, as <(...) gives", "a FIFO's open waits for a writer, a pipe "
        why += "cannot be read twice"
        fix = "copy them into a file and give its path, or put one in its place"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind, why = "a device", "a device holds no saved weights: /dev/null reads as nothing, "
        why += "/dev/zero as zeros without end"
        fix = "give the path of the weights file itself"
    else:
        kind = "a socket" if stat.S_ISSOCK(mode) else "not a file"
        why, fix = "it cannot be read as a file", "give the path of the weights file itself"
    raise CheckpointError(
        f"{what}{path} is not a regular file ({kind}): weights and their records are read "
        f"from regular files only ({why}); {fix}"
    )


def open_weights(path: Path, what: str = "", another: str = ""):
    """``open(path, "rb")``, a file this user may not read (its mode, or a folder on the way)
    said as a PathPermissionError with its fix (:func:`~loftup.read_refusal.read_refused`:
    ``what`` it is, ``another`` the option that chose its folder, where it is loftup's own
    output), not a bare "[Errno 13] Permission denied"."""
    try:
        return open(path, "rb")
    except PermissionError as e:
        refused = read_refused(path, e, what.strip() or "weights file", another=another)
        if refused is None:
            raise
        raise refused from None


def check_not_lfs_pointer(path: str | os.PathLike, fix: str) -> None:
    """A CheckpointError where ``path`` is a Git LFS pointer, not the file it stands for: a hub
    repo cloned with git but without Git LFS (read as weights, a "corrupt" header or pickle
    said nothing of the cause). ``fix``: how else to get the file. A FIFO, socket or device is
    refused before it is opened (a FIFO's open waits forever)."""
    check_regular_file(Path(path))
    with open_weights(Path(path)) as f:
        check_head_not_lfs(f.read(HEAD_SIZE), path, fix)


def check_head_not_lfs(head: bytes, path: str | os.PathLike, fix: str) -> None:
    """:func:`check_not_lfs_pointer` of the file ``path`` that begins with ``head`` (its first
    :data:`HEAD_SIZE` bytes: the pointer whole, whose size and hash are said)."""
    if head.startswith(LFS_POINTER):
        raise CheckpointError(
            f"{path} is a Git LFS pointer ({os.path.getsize(path)} bytes of text), not the "
            f"file it stands for{_lfs_target(head)} (a repository cloned without Git LFS: "
            f"`git lfs install` and `git lfs pull` in the clone fetch the files); {fix}"
        )


def _lfs_target(head: bytes) -> str:
    """What :func:`check_head_not_lfs` says of the file that the Git LFS pointer ``head``
    stands for, from its ``size`` and ``oid`` lines: ", of SIZE bytes (N MiB), sha256 HASH..."
    (the hash's first 12 digits, which the hub's page of the file shows whole); "" where the
    pointer names neither."""
    text = head.decode("utf-8", "replace")
    size = re.search(r"^size (\d+)\s*$", text, re.MULTILINE)
    oid = re.search(r"^oid (\w+):([0-9a-f]{12})", text, re.MULTILINE)
    said = ""
    if size:
        n = int(size[1])
        power = min((n.bit_length() - 1) // 10, 4)  # of 1024: KiB from 1024 bytes on
        unit = ("", "KiB", "MiB", "GiB", "TiB")[power]
        said = f", of {n} bytes" + (f" ({n / 1024**power:.1f} {unit})" if power else "")
    return said + (f", {oid[1]} {oid[2]}..." if oid else "")


#: The fix :func:`~.files.read_weights` gives a damaged file where its caller gave none: for a
#: file :func:`head_mistaken` names, which its own remedy replaces ("re-download it" would
#: fetch the same page).
GENERIC_FIX = "re-download it or pass the file save_pretrained wrote"

#: What may stand before a page's first tag: a UTF-8 byte order mark.
_BOM = b"\xef\xbb\xbf"


def head_mistaken(head: bytes, path: str | os.PathLike, fix: str | None = None) -> str | None:
    """What the file ``path``, which begins with ``head`` and failed to load as safetensors or
    as a PyTorch file, is instead, where its bytes say: a web page (an HTML page saved in the
    weights' place: the hub's /blob/ link shows the file's page, its /resolve/ link is the
    file; its <title> quoted, or its first text), other text (an error reply saved in its
    place: its first line quoted, cut at a word), or a PyTorch file under a ``.safetensors``
    name (``head``: its first :data:`HEAD_SIZE` bytes). None elsewhere, and for a safetensors
    file's own head (one cut short or damaged after its header's length).
    The message is the diagnosis (no "; " in it: callers cut at the first to put their own
    fix), then "; " and ``fix``, the caller's, where it gave one (the Hugging Face cache's
    blob to delete, say); else (None, or :data:`GENERIC_FIX`, which would fetch the same
    bytes) the remedy for what it is."""
    if safetensors_head(head) and int.from_bytes(head[:8], "little") < 1 << 32:
        return None  # a safetensors header's length, then its JSON: a damaged safetensors file
    own = None if fix in (None, "", GENERIC_FIX) else fix
    text = head.removeprefix(_BOM).lstrip()
    if text[:14].lower() == b"<!doctype html" or text[:5].lower() == b"<html":
        return (
            f"{path} is a web page (HTML){_page_said(head)}, not a weights file: a page's "
            "address was downloaded in its place (the hub's /blob/ link shows the file's page, "
            f"its /resolve/ link the file itself); {own or 'download the /resolve/ URL'}"
        )
    first = _text_line(head)
    if first is not None:
        return (
            f"{path} is corrupt or not a PyTorch or safetensors file: it is text (an error "
            f"reply saved in its place?) and begins {first!r}; "
            + (own or "download the file itself again")
        )
    pickle = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    if Path(path).suffix == ".safetensors" and (head.startswith(b"PK\x03\x04") or pickle):
        kind = "a zip archive, as torch.save writes" if head[:1] == b"P" else "a pickle"
        return f"{path} is a PyTorch file ({kind}) under a .safetensors name; " + (
            own
            or "rename it with a .pth suffix, which loads it as one (never running code), "
            "with the config.json beside it where there is one, or convert it to "
            "safetensors (save_pretrained writes the model it loads as one)"
        )
    return None


def _text_line(head: bytes) -> str | None:
    """The first line of ``head`` where it is printable text (:func:`_decoded`), as a message
    quotes it (:func:`_quoted`; an XML declaration passed over for the line that says what
    the reply is), else None."""
    text = _decoded(head)
    if text is None or any(not c.isprintable() and not c.isspace() for c in text):
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    if lines[0].lstrip().startswith("<?xml") and len(lines) > 1:
        return _quoted(lines[1])
    return _quoted(lines[0])


def _decoded(head: bytes) -> str | None:
    """``head`` as text: UTF-8 (a character cut at the end of a whole :data:`HEAD_SIZE` head
    dropped), else Windows-1252 (a Latin-1 error page's "é"); None where it is neither."""
    text = head.removeprefix(_BOM)
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as e:
        if len(head) >= HEAD_SIZE and e.reason == "unexpected end of data":
            return text[: e.start].decode("utf-8")
    try:
        return text.decode("cp1252")
    except UnicodeDecodeError:
        return None


def _quoted(text: str) -> str:
    """``text`` as a message quotes it: each run of white space one space, cut before its first
    "; " (which starts a caller's fix) and, past :data:`QUOTE_MAX` characters, at the last
    word that ends before it, "..." where it was cut."""
    text = " ".join(text.split())
    said = text.split("; ")[0]
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


def _page_said(head: bytes) -> str:
    """What :func:`head_mistaken` says of the web page that begins with ``head``: " titled
    'TITLE'", or " that reads 'TEXT'" (its first text) where it has no title; "" where it
    holds no text."""
    page = _PageText()
    page.feed(_decoded(head) or head.decode("utf-8", "replace"))
    title, text = (" ".join(pieces).strip() for pieces in (page.title, page.text))
    if title:
        return f" titled {_quoted(title)!r}"
    return f" that reads {_quoted(text)!r}" if text else ""


@contextmanager
def safetensors_at(path: Path):
    """The name to give safetensors' ``safe_open`` for ``path``: the path itself, or, where it
    is no UTF-8 (a Latin-1 name, ``caf\\xe9.safetensors``, which safetensors refuses as "not
    valid UTF-8"), the file opened here as ``/proc/self/fd/N`` for as long as it is used."""
    name = os.fspath(path)
    utf8 = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace") == name
    if utf8 or not os.path.isdir("/proc/self/fd"):  # no /proc: safetensors' own error
        yield name
        return
    fd = os.open(name, os.O_RDONLY)
    try:
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def looks_like_safetensors(path: Path) -> bool:
    """A safetensors file under another suffix: an 8-byte little-endian header length, then the
    JSON header."""
    with open_weights(Path(path)) as f:
        return safetensors_head(f.read(9))


def safetensors_head(head: bytes) -> bool:
    """:func:`looks_like_safetensors` of a file that begins with ``head`` (9 bytes or more)."""
    return len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1
