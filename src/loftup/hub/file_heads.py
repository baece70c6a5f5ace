"""What a weights file is before it is read as weights: a regular file this user may read
(:func:`check_regular_file`, :func:`open_weights`), and what its first bytes (its head,
:data:`HEAD_SIZE` of them, read once a load) say where they are not what its name promises
(:func:`check_head_not_lfs`, :func:`head_mistaken`): a Git LFS pointer (with the size of the
file it stands for), a web page (its title quoted), other text (its first line), a PyTorch
file under a ``.safetensors`` name."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointError
from ..listing import special_at
from ..read_refusal import read_refused
from .damaged import CACHE_FIX, blob_as_fetched
from .file_text import HEAD_SIZE, UTF8_BOM, decoded, is_page, page_said, text_line

#: How a Git LFS pointer file starts: what a clone made without Git LFS holds in place of each
#: large file (about 130 bytes of text naming the real file's hash and size).
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


#: The reason and the fix of a refusal of a file no weights can be read from as a file
_UNREAD = ("it cannot be read as a file", "give the path of the weights file itself")
#: Of each kind of file :func:`~loftup.listing.special_at` names: how a refusal names it, why
#: weights are not read from it, and what to do
_SPECIAL = {
    "a pipe": (
        "a FIFO or pipe, as <(...) gives",
        "a FIFO's open waits for a writer, a pipe cannot be read twice",
        "copy them into a file and give its path, or put one in its place",
    ),
    "a device": (
        "a device",
        "a device holds no saved weights: /dev/null reads as nothing, /dev/zero as zeros "
        "without end",
        _UNREAD[1],
    ),
    "a socket": ("a socket", *_UNREAD),
    "no regular file": ("not a file", *_UNREAD),
}


def check_regular_file(path: Path, what: str = "") -> None:
    """A CheckpointError where ``path`` exists but is neither a regular file nor a folder (a
    FIFO, a socket, a device, a pipe given as ``<(...)``): opened, a FIFO waits forever for a
    writer, a pipe cannot be sought in. A missing file, a folder or one that cannot be looked
    at is left to the caller's own check or open. ``what``: the kind of file ("training
    checkpoint "), for the message."""
    special = special_at(path)
    if special is None:
        return
    kind, why, fix = _SPECIAL[special]
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
    file downloaded by its /raw/ link, or a hub repo cloned with git but without Git LFS (read
    as weights, a "corrupt" header or pickle said nothing of the cause). ``fix``: how else to get the file. A FIFO, socket or device is
    refused before it is opened (a FIFO's open waits forever)."""
    check_regular_file(Path(path))
    with open_weights(Path(path)) as f:
        check_head_not_lfs(f.read(HEAD_SIZE), path, fix)


def check_head_not_lfs(head: bytes, path: str | os.PathLike, fix: str) -> None:
    """:func:`check_not_lfs_pointer` of the file ``path`` that begins with ``head`` (its first
    :data:`HEAD_SIZE` bytes: the pointer whole, whose size and hash are said). Where it came
    from is said where the caller gave no fix of its own (``fix`` None, "" or
    :data:`GENERIC_FIX`, which would fetch the same pointer): a clone made without Git LFS
    where the folder above holding ``.git`` tracks files with Git LFS, else the hub's /raw/
    link (``wget .../raw/main/FILE``), which gives a large file's pointer."""
    if not head.startswith(LFS_POINTER):
        return
    own = None if fix in (None, "", GENERIC_FIX) else fix
    said = (
        f"{path} is a Git LFS pointer ({os.path.getsize(path)} bytes of text), not the file it "
        f"stands for{_lfs_target(head)}"
    )
    if own is not None:
        raise CheckpointError(f"{said}; {own}")
    if _in_lfs_clone(path):
        raise CheckpointError(
            f"{said} (a repository cloned without Git LFS holds pointers in place of its large "
            "files); `git lfs install` and `git lfs pull` in the clone fetch the files"
        )
    raise CheckpointError(
        f"{said} (the hub's /raw/ link gives a large file's pointer, its /resolve/ link the "
        "file itself); download the file by its /resolve/ URL, as "
        "https://huggingface.co/ORG/NAME/resolve/main/FILE"
    )


def _in_lfs_clone(path: str | os.PathLike) -> bool:
    """Whether ``path`` lies in a git clone (the nearest folder above holding ``.git``) that
    tracks files with Git LFS, as every hub repo does: git's own answer for the file (``git
    check-attr``: every .gitattributes, the clone's info/attributes), else a .gitattributes
    from the clone's top down to the file's folder that names ``filter=lfs`` (a hub repo's
    subfolder has its own). A project's own repository that a pointer was downloaded into
    is no such clone."""
    here = Path(os.path.abspath(path))
    root = next((f for f in here.parents if os.path.exists(f / ".git")), None)  # os.path: no raise
    if root is None:
        return False
    if _git_tracks_with_lfs(root, here):
        return True
    folders = [root, *(f for f in reversed(here.parents) if f.is_relative_to(root) and f != root)]
    for folder in folders:
        try:
            if "filter=lfs" in (folder / ".gitattributes").read_text(errors="replace"):
                return True
        except OSError:
            continue
    return False


def _git_tracks_with_lfs(root: Path, path: Path) -> bool:
    """Whether git, where it is installed, says that clone ``root`` stores ``path`` with Git
    LFS (its ``filter`` attribute ``lfs``); False where git is missing or fails (no clone it
    knows, another user's it refuses)."""
    import shutil
    import subprocess

    git = shutil.which("git")
    if git is None:
        return False
    try:
        said = subprocess.run(
            [git, "-C", str(root), "check-attr", "filter", "--", str(path)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return said.returncode == 0 and said.stdout.rstrip().endswith(": filter: lfs")


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
        power = min(max(n.bit_length() - 1, 0) // 10, 4)  # of 1024: KiB from 1024 bytes on
        unit = ("", "KiB", "MiB", "GiB", "TiB")[power]
        said = f", of {n} bytes" + (f" ({n / 1024**power:.1f} {unit})" if power else "")
    return said + (f", {oid[1]} {oid[2]}..." if oid else "")


#: The fix :func:`~.files.read_weights` gives a damaged file where its caller gave none: for a
#: file :func:`head_mistaken` names, which its own remedy replaces ("re-download it" would
#: fetch the same page).
GENERIC_FIX = "re-download it or pass the file save_pretrained wrote"

#: What a download's output written as UTF-16 text is told to do: write the bytes themselves
_REDIRECTED = (
    "download it with curl -L -o FILE URL or Invoke-WebRequest URL -OutFile FILE, which write "
    "its bytes as they are"
)


def head_mistaken(head: bytes, path: str | os.PathLike, fix: str | None = None) -> str | None:
    """What the file ``path``, which begins with ``head`` and failed to load as safetensors or
    as a PyTorch file, is instead, where its bytes say: a web page (an HTML page saved in the
    weights' place: the hub's /blob/ link shows the file's page, its /resolve/ link is the
    file; in the Hugging Face cache, which huggingface_hub fills by /resolve/ links, a proxy's
    or captive portal's page; its <title> quoted, or its first text), other text (an error
    reply saved in its place: its first line quoted, cut at a word; UTF-16 text, as a shell's
    ``>`` redirection writes it, said so, but in the cache), or a PyTorch file under a ``.safetensors`` name (one cut short said
    so: renamed, it would not load either) (``head``: its first :data:`HEAD_SIZE` bytes). None
    elsewhere, and for a safetensors file's own head (one cut short or damaged after its
    header's length).
    The message is the diagnosis (no "; " in it: callers cut at the first to put their own
    fix), then "; " and ``fix``, the caller's, where it gave one (the Hugging Face cache's
    blob to delete, say); else (None, or :data:`GENERIC_FIX`, which would fetch the same
    bytes) the remedy for what it is."""
    if safetensors_head(head) and int.from_bytes(head[:8], "little") < 1 << 32:
        return None  # a safetensors header's length, then its JSON: a damaged safetensors file
    own = None if fix in (None, "", GENERIC_FIX) else fix
    text, utf16 = decoded(head)
    # huggingface_hub fetched a file of its cache by its /resolve/ link into a file of its own
    # (the cache's fix), and the hub holds other bytes (its blob's name is not their hash):
    # neither the hub's /blob/ page nor a shell's redirection put it there, but the network
    hub = own is not None and own.startswith(CACHE_FIX) and blob_as_fetched(path) is not True
    as_utf16 = " as UTF-16 text, as a shell's > redirection writes it" if utf16 else ""
    origin = (
        ": a page's address was downloaded in its place (the hub's /blob/ link shows the "
        "file's page, its /resolve/ link the file itself)"
    )
    if hub:
        as_utf16 = " as UTF-16 text" if utf16 else ""
        origin = " (a proxy's or captive portal's page saved by the download?)"
    # a byte Windows-1252 leaves undefined (0x81, 0x9d...): read as Latin-1, for both looks
    page = text if text is not None else head.removeprefix(UTF8_BOM).decode("latin-1")
    if is_page(page):
        return (
            f"{path} is a web page (HTML{as_utf16}){page_said(page)}, not a weights file"
            f"{origin}; "
            + (own or ("download the /resolve/ URL" + (f": {_REDIRECTED}" if utf16 else "")))
        )
    first = text_line(text) if text is not None else None
    if first is not None:
        kind = "text (an error reply saved in its place?)"
        if utf16:  # Windows PowerShell 5.1's > writes what it is given as UTF-16 text
            kind = "UTF-16 text (a download's output written by a shell's > redirection?)"
            kind = "UTF-16 text (an error reply saved in its place?)" if hub else kind
        return (
            f"{path} is corrupt or not a PyTorch or safetensors file: it is {kind} and begins "
            f"{first!r}; " + (own or (_REDIRECTED if utf16 else "download the file itself again"))
        )
    pickle = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    if Path(path).suffix == ".safetensors" and (head.startswith(b"PK\x03\x04") or pickle):
        kind = "a zip archive, as torch.save writes" if head[:1] == b"P" else "a pickle"
        said = f"{path} is a PyTorch file ({kind}) under a .safetensors name"
        members = None if pickle else _zip_members(path)
        if not pickle and members is None:  # renamed .pth, it would fail as corrupt
            return f"{said}, cut short (its zip archive has no end); {own or GENERIC_FIX}"
        if not pickle and not any(m.endswith("/data.pkl") for m in members):
            return (
                f"{path} is a zip archive, not weights (no PyTorch file: torch.save's holds a "
                f"data.pkl); {own or 'pass the weights file itself, not an archive of it'}"
            )
        return f"{said}; " + (
            own
            or "rename it with a .pth suffix, which loads it as one (never running code), "
            "with the config.json beside it where there is one, or convert it to "
            "safetensors (save_pretrained writes the model it loads as one)"
        )
    return None


def _zip_members(path: str | os.PathLike) -> list[str] | None:
    """The names of the zip archive ``path``'s members (torch.save's: ``NAME/data.pkl`` and its
    tensors), or None where it is not whole (its end record, the central directory, unread)."""
    import zipfile

    from .zip_open import open_zip

    try:
        with open(path, "rb") as f, open_zip(f) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return None


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
