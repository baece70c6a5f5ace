"""The lock a loftup run holds on a file in the folder it writes, so that a second run there is
refused: a train run's (:mod:`.train.run_folder`) and ``eval davis --save-masks``'s
(:mod:`.eval.mask_lock`). One kind of lock, one rule for a file system that keeps none
(:data:`NO_LOCKS`), one way to open the file, and the descriptors holding one closed in a
forked child.

The lock is ``fcntl.flock``, not a POSIX record lock (``fcntl.lockf``): a flock is its open
file's, so that a second open in the same process (a second run in a thread or a notebook) is
refused as another process's is, where a POSIX lock is the process's: granted to it again, and
let go when the process closes *any* descriptor of the file (a reader's look at it). A folder
can take a flock too (``--save-masks`` locks DIR itself for a loftup from before its file). On
NFS, Linux sends a flock to the server as a POSIX lock of the whole file, so that runs on two
machines see each other (and a POSIX lock there). The system lets a lock go when the last
descriptor of its open file is closed, however its process ends.

What it costs: a forked child (a DataLoader or Pool worker) shares the parent's open files,
and the lock lasts while any copy is open, so that a worker outliving its killed run would keep
the folder locked. The descriptors of :func:`hold` are closed in a forked child (the parent's
lock kept); :func:`let_go` closes them in the process that holds them, not in such a child,
where their numbers may have been reused."""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import stat
from pathlib import Path

#: A lock's errors where the file system keeps no locks (NFS without lockd, some FUSE mounts,
#: Lustre mounted noflock: ENOSYS; EBADF: NFS refusing an exclusive flock of a folder, which
#: opens for reading only).
NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF, errno.EINVAL, errno.ENOSYS}

#: The descriptors holding a lock (:func:`hold`) that this process has open.
_HELD: set[int] = set()
#: Other modules' records of those descriptors (:func:`forget_in_child`).
_RECORDS: list = []


def lock_nowait(fd: int, exclusive: bool = True) -> None:
    """Lock ``fd`` (``flock``), exclusive or shared, without waiting: BlockingIOError where
    another holds it, OSError(ENOLCK) where there is no fcntl (Windows)."""
    try:
        import fcntl
    except ImportError:
        raise OSError(errno.ENOLCK, "no fcntl") from None
    fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)


def hold(fd: int) -> int:
    """Record ``fd`` as holding (or about to hold) a lock: closed in a child forked while it is
    open. Returns ``fd``."""
    _HELD.add(fd)
    return fd


def holds(fd: int | None) -> bool:
    """Whether ``fd`` is a descriptor of :func:`hold` that this process has open (not one a
    forked child inherited, closed there)."""
    return fd in _HELD


def let_go(fd: int | None) -> None:
    """Close ``fd`` of :func:`hold`, letting its lock go; nothing in a forked child."""
    if fd in _HELD:
        _HELD.discard(fd)
        os.close(fd)


def forget_in_child(*records) -> None:
    """Empty each of ``records`` (sets, dicts of a module's held descriptors) in a forked
    child, where those descriptors are closed and their numbers free for others."""
    _RECORDS.extend(records)


def _close_inherited_locks() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()
    for record in _RECORDS:
        record.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def open_lock_file(path: Path, flags: int, runs: str) -> int:
    """``os.open`` of the lock file ``path`` (mode 0666 less the umask where made), not
    following a link; LoftUpError where it is no regular file (a link, a folder), naming
    what to remove (``runs``: who locks it, "loftup train runs")."""
    try:
        fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.EISDIR):
            raise
    else:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
    from .errors import LoftUpError

    kind = "folder" if os.path.isdir(path) and not os.path.islink(path) else "link"
    remove = f"rm {'-r ' if kind == 'folder' else ''}{shlex.quote(str(path))}"
    raise LoftUpError(
        f"{path} is a {kind}, not the regular file that {runs} lock: remove it ({remove}) and "
        "run again"
    )
