"""What a weights file is before it is read as weights: a regular file this user may read
(:func:`check_regular_file`, :func:`open_weights`), and what its first bytes say where they
are not what its name promises (:func:`check_head_not_lfs`, :func:`head_mistaken`): a Git LFS
pointer, a web page, a PyTorch file under a ``.safetensors`` name."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import CheckpointError
from ..read_refusal import read_refused

#: How a Git LFS pointer file starts: what a clone made without Git LFS holds in place of each
#: large file (about 130 bytes of text naming the real file's hash and size).
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


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
    kind = (
        "a FIFO or pipe, as <(...) gives"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a file"
    )
    raise CheckpointError(
        f"{what}{path} is not a regular file ({kind}): weights are read from a regular file "
        "only (a FIFO's open waits for a writer, a pipe cannot be read twice); copy them into "
        "a file and give its path, or put one in its place"
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
    said nothing of the cause). ``fix``: how else to get the file."""
    with open_weights(Path(path)) as f:
        check_head_not_lfs(f.read(len(LFS_POINTER)), path, fix)


def check_head_not_lfs(head: bytes, path: str | os.PathLike, fix: str) -> None:
    """:func:`check_not_lfs_pointer` of the file ``path`` that begins with ``head``."""
    if head.startswith(LFS_POINTER):
        raise CheckpointError(
            f"{path} is a Git LFS pointer ({os.path.getsize(path)} bytes of text), not the "
            "file it stands for (a repository cloned without Git LFS: `git lfs install` and "
            f"`git lfs pull` in the clone fetch the files); {fix}"
        )


def head_mistaken(head: bytes, path: str | os.PathLike) -> str | None:
    """What the file ``path``, which begins with ``head`` and failed to load as safetensors or
    as a PyTorch file, is instead, with the fix, where its bytes say (fetching it again as it
    was fetched would give the same bytes, so "re-download it" would not mend it): a web page
    (an HTML page saved in the weights' place: the hub's /blob/ link shows the file's page, its
    /resolve/ link is the file), or a PyTorch file under a ``.safetensors`` name. None
    elsewhere."""
    if head.lstrip()[:1] == b"<":
        return (
            f"{path} is a web page (HTML), not a weights file: a page's address was downloaded "
            "in its place (the hub's /blob/ link shows the file's page; its /resolve/ link is "
            "the file itself); download the /resolve/ URL"
        )
    if Path(path).suffix == ".safetensors" and (
        head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"
    ):
        kind = "a zip archive, as torch.save writes" if head[:1] == b"P" else "a pickle"
        return (
            f"{path} is a PyTorch file ({kind}) under a .safetensors name: rename it with a "
            ".pth suffix, which loads it as one (never running code), or convert it to "
            "safetensors (save_pretrained writes the model it loads as one)"
        )
    return None


def looks_like_safetensors(path: Path) -> bool:
    """A safetensors file under another suffix: an 8-byte little-endian header length, then the
    JSON header."""
    with open_weights(Path(path)) as f:
        return safetensors_head(f.read(9))


def safetensors_head(head: bytes) -> bool:
    """:func:`looks_like_safetensors` of a file that begins with ``head`` (9 bytes or more)."""
    return len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1
