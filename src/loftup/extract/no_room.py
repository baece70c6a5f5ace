"""Why an image's outputs could not be written, said with the fix (:func:`write_failure`):
for a file too large for the room where it goes, how large it is and how much room there is,
not ``[Errno 28] No space left on device`` alone (a 40000 x 60000 output is 614 GB)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import torch

from ..words import said, said_with

#: The errors of a file too large for where it goes: a full disk, a full quota, a file over
#: the process's (``ulimit -f``) or the file system's limit on one file.
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def write_failure(
    e: OSError,
    out_dir: Path,
    nbytes: int,
    fmt: str,
    save_dtype: torch.dtype,
    said_as: dict | None = None,
    *,
    streamed: bool = False,
) -> str:
    """The failure of an image whose outputs (its features file of ``nbytes`` in ``out_dir``,
    stored as ``save_dtype`` in ``fmt``; ``streamed``: a memory-mapped one, whose ``.pt`` takes
    twice its size until it is complete) raised ``e``: for lack of room, the file's size and
    the room there (or the limit it is over), and the fix (a smaller size; a 16-bit
    ``save_dtype`` where it is wider and ``fmt`` holds one; another output folder; where the
    room is there, out of inodes, freeing some or another output folder alone), naming
    the options as ``said_as`` calls them; otherwise ``e`` as it says itself."""
    room_needed = 2 * nbytes if streamed and fmt == "pt" else nbytes
    why = _no_room(e, out_dir, nbytes)
    if why is None:
        return f"could not write its outputs: {e}"
    need = f"its features file is {amount(nbytes)}"
    if why == errno.EFBIG:
        limit = _over_limit(nbytes)
        if limit is not None:
            room = f"over this process's limit on a file's size, {amount(limit)} (ulimit -f)"
            elsewhere = "a higher limit"
        else:
            room = "over the most one file may hold on that file system (FAT32: 4 GB)"
            elsewhere = f"another {said('out', said_as)} on a file system that holds it"
    else:
        if room_needed > nbytes:  # else "free now (filled meanwhile ...)" with room for one
            need += " (twice that until it is complete: a .pt archive is saved beside its data)"
        room_now = _free(out_dir)  # None: not to be looked at (said so, not "no room")
        free = "room that could not be looked at"
        if room_now is not None:
            free = f"{amount(room_now)} free"
        room = f"and {out_dir} has {free}"
        if why == errno.ENOSPC and room_now is not None and room_now >= room_needed:
            room += " now (filled meanwhile, or out of inodes, its files' entries: df -i)"
            # no smaller file nor 16 bits helps where the bytes are there and no inode is
            fix = f"free inodes or room there (delete files), or try another {said('out', said_as)}"
            return f"could not write its outputs ({os.strerror(why)}): {need}, {room}; {fix}"
        if why == errno.EDQUOT:  # the disk's room, not the quota's
            room = f"over this user's disk quota there ({out_dir}: {free} on the disk)"
        elsewhere = f"another {said('out', said_as)} with room (or free space there)"
    fixes = [f"a smaller {said('size', said_as)}"]
    if save_dtype.itemsize > 2:  # npy has no bfloat16
        half = ("float16",) if fmt == "npy" else ("float16", "bfloat16")
        fixes.append(said_with("save_dtype", *half[:1], said_as, *half[1:]))
    fixes.append(elsewhere)
    fixes[-1] = f"{'or ' * (len(fixes) > 1)}{fixes[-1]}"
    return (
        f"could not write its outputs ({os.strerror(why)}): {need}, {room}; try "
        f"{(', ' if len(fixes) > 2 else ' ').join(fixes)}"
    )


def _no_room(e: OSError, out_dir: Path, nbytes: int) -> int | None:
    """The errno of ``e`` where it is one of :data:`NO_ROOM`, None otherwise. NumPy's short
    write (``8388608 requested and 262112 written``: ``.npy``) says no errno: the limit on a
    file's size where the file reaches it (:func:`_over_limit`), or ENOSPC where the disk has
    less room than it."""
    if e.errno in NO_ROOM:
        return e.errno
    if e.errno is not None or "requested and" not in str(e):
        return None
    if _over_limit(nbytes) is not None:
        return errno.EFBIG
    free = _free(out_dir)
    return errno.ENOSPC if free is not None and free < nbytes else None


def _over_limit(nbytes: int) -> int | None:
    """This process's limit on a file's size (``ulimit -f``) where a features file of
    ``nbytes`` reaches it, its headers allowed for (a megabyte or 1%); None where it has none
    or the file is well under it (EFBIG then is the file system's limit: FAT32's 4 GB)."""
    limit = _file_size_limit()
    return limit if limit is not None and nbytes + max(2**20, nbytes // 100) > limit else None


def _free(out_dir: Path) -> int | None:
    """The bytes free in ``out_dir``'s file system (for this user), asked of the nearest folder
    that exists (``out_dir`` may not be made yet: its file system is that folder's); None where
    it cannot be looked at (unreadable, unmounted)."""
    where = Path(os.path.abspath(out_dir))
    while not where.exists() and where.parent != where:
        where = where.parent
    try:
        return shutil.disk_usage(where).free
    except OSError:
        return None


def amount(nbytes: float) -> str:
    """``nbytes`` to a tenth of a TB, GB, MB or kB: ``28.7 TB``, ``614.4 GB``, ``1.0 MB``,
    ``12.3 kB`` (MB below a tenth of a GB, kB below a tenth of a MB, TB from ten thousand GB);
    bytes below a thousand (``512 bytes``: no ``0.0 MB`` for a small file or a full disk)."""
    if nbytes >= 1e13:
        return f"{nbytes / 1e12:.1f} TB"
    if nbytes >= 1e8:
        return f"{nbytes / 1e9:.1f} GB"
    if nbytes >= 1e5:
        return f"{nbytes / 1e6:.1f} MB"
    if nbytes >= 1e3:
        return f"{nbytes / 1e3:.1f} kB"
    return f"{int(nbytes)} byte{'s' * (int(nbytes) != 1)}"


def _file_size_limit() -> int | None:
    """This process's limit on the size of a file it writes (``ulimit -f``), None where it has
    none (or the platform none: Windows)."""
    try:
        import resource
    except ImportError:
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else limit
