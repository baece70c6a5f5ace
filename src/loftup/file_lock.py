"""What the locks a loftup run holds on a file in the folder it writes share, so that a second
run there is refused: ``eval davis --save-masks``'s (:mod:`.eval.mask_lock`) and a train run's
(:mod:`.train.run_lock`). One rule for a file system that keeps no locks (:data:`NO_LOCKS`),
one way to open the lock file (:func:`open_lock_file`), and a lock without waiting of each kind.

Two kinds, because the two locks need different things. The mask lock is a ``flock``
(:func:`lock_nowait`): its readers share it, and DIR itself is locked too (for an older
loftup), which an exclusive POSIX lock cannot do (a folder opens for reading only); a forked
child shares a flock, so mask_lock closes the child's copy. The train lock needs neither and
must not pass to forked DataLoader workers (one outliving its killed run kept the folder
locked): a POSIX lock (:func:`lockf_nowait`), which no child inherits, and the lock an older
loftup's train run takes."""

from __future__ import annotations

import errno
import os
import shlex
import stat
from pathlib import Path

#: A lock's errors where the file system keeps no locks (NFS without lockd, some FUSE mounts,
#: Lustre mounted noflock: ENOSYS; EBADF: NFS refusing an exclusive flock of a folder, which
#: opens for reading only). Any other error (an I/O error) is the request's: raised, not read
#: as "no locks", where a run would go on unlocked.
NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF, errno.EINVAL, errno.ENOSYS}


def _fcntl():
    """The fcntl module; OSError(ENOLCK), "no locks", where there is none (Windows)."""
    try:
        import fcntl
    except ImportError:
        raise OSError(errno.ENOLCK, "no fcntl") from None
    return fcntl


def lock_nowait(fd: int, exclusive: bool = True) -> None:
    """Lock ``fd`` (``flock``), exclusive or shared, without waiting: BlockingIOError where
    another holds it, OSError(ENOLCK) where there is no fcntl (Windows)."""
    fcntl = _fcntl()
    fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)


def lockf_nowait(fd: int) -> None:
    """Lock ``fd`` (open for writing) with an exclusive POSIX lock (``lockf``) without waiting:
    BlockingIOError where another process holds it (which lockf may say as EACCES),
    OSError(ENOLCK) where there is no fcntl (Windows). The lock is the process's: granted to
    it again, and let go when it closes *any* descriptor of the file."""
    fcntl = _fcntl()
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except PermissionError as e:
        if e.errno != errno.EACCES:
            raise
        raise BlockingIOError(errno.EAGAIN, "held by another process") from None


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
