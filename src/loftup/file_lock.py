"""What the locks a loftup run holds on a file in the folder it writes share, so that a second
run there is refused: ``eval davis --save-masks``'s (:mod:`.eval.mask_lock`) and a train run's
(:mod:`.train.run_lock`). One rule for a file system that keeps no locks (:data:`NO_LOCKS`),
one way to open the lock file (:func:`open_lock_file`), a lock without waiting of each kind,
and the check that the file locked is still the one at its path (:func:`still_at`).

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
import stat
from pathlib import Path

#: A lock's errors where the file system keeps no locks (NFS without lockd, some FUSE mounts,
#: Lustre mounted noflock: ENOSYS; EBADF: NFS refusing an exclusive flock of a folder, which
#: opens for reading only). Any other error (an I/O error) is the request's: raised, not read
#: as "no locks", where a run would go on unlocked.
NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF, errno.EINVAL, errno.ENOSYS}


#: The text of the OSError(ENOLCK) a lock raises where the system has no fcntl (Windows): no
#: file system there is to blame.
NO_FCNTL = "no fcntl"


def _fcntl():
    """The fcntl module; OSError(ENOLCK, :data:`NO_FCNTL`), "no locks", where there is none."""
    try:
        import fcntl
    except ImportError:
        raise OSError(errno.ENOLCK, NO_FCNTL) from None
    return fcntl


def lock_nowait(fd: int, exclusive: bool = True) -> None:
    """Lock ``fd`` (``flock``), exclusive or shared, without waiting: BlockingIOError where
    another holds it, OSError(ENOLCK) where there is no fcntl (Windows)."""
    fcntl = _fcntl()
    fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)


def lock_wait(fd: int) -> None:
    """Lock ``fd`` (``flock``) exclusive, waiting for another holder: OSError(ENOLCK) where
    there is no fcntl (Windows)."""
    fcntl = _fcntl()
    fcntl.flock(fd, fcntl.LOCK_EX)


def flock_holder(st: os.stat_result) -> int | None:
    """The pid of the process that holds a ``flock`` of the file of ``st`` (its ``os.fstat``),
    as /proc/locks says (its device and inode; the inode alone where no line names its device,
    as on overlayfs, whose locks are its upper layer's); None where it does not say: no
    /proc/locks (not Linux), no such lock (let go meanwhile), a holder of another pid namespace
    (which it shows as 0), or two processes where the inode alone matches."""
    try:
        with open("/proc/locks") as f:
            held = [line.split() for line in f]
    except OSError:
        return None
    # ("1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; one waiting: "1: -> FLOCK ...")
    held = [fields for fields in held if len(fields) >= 6 and fields[1] == "FLOCK"]
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = {f[4] for f in held if f[5] == device}
    pids = pids or {f[4] for f in held if f[5].rsplit(":", 1)[-1] == str(st.st_ino)}
    pid = pids.pop() if len(pids) == 1 else ""
    return int(pid) if pid.isdigit() and int(pid) > 0 else None


def lockf_nowait(fd: int, exclusive: bool = True) -> None:
    """Lock ``fd`` with a POSIX lock (``lockf``), exclusive (``fd`` open for writing) or shared
    (for reading), without waiting: BlockingIOError where another process holds it (which
    lockf may say as EACCES), OSError(ENOLCK) where there is no fcntl (Windows). The lock is
    the process's: granted to it again, and let go when it closes *any* descriptor of the
    file."""
    fcntl = _fcntl()
    try:
        fcntl.lockf(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except PermissionError as e:
        if e.errno != errno.EACCES:
            raise
        raise BlockingIOError(errno.EAGAIN, "held by another process") from None


#: ``struct flock`` on Linux: l_type, l_whence, (padding), l_start, l_len, l_pid, (padding)
#: (off_t of 64 bits: Python is built with large files, its F_GETLK the 64-bit one)
_FLOCK = "hhqqi4x"


def lockf_holder(fd: int) -> int | bool | None:
    """The process that holds a POSIX lock (:func:`lockf_nowait`, exclusive) of ``fd``'s file
    (its pid; 0 where the system does not tell, a lock of another host), asked with
    ``F_GETLK``, which takes no lock: a run taking it meanwhile is not refused. False where
    none holds one (a shared lock, an older loftup's look, is none); None where it cannot be
    asked (not Linux, whose ``struct flock`` is known here; no fcntl; the file system's error:
    the caller looks another way). A lock of this process is never reported (POSIX)."""
    import struct
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        fcntl = _fcntl()
        ask = struct.pack(_FLOCK, fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0)
        kind, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, ask))
    except OSError:
        return None
    if kind == fcntl.F_UNLCK:
        return False
    return max(pid, 0)


def still_at(fd: int, path: Path) -> bool:
    """Whether the file ``fd`` is open on is still the one at ``path``, checked once its lock
    is taken: a run that made the lock file removes it at its end, and a lock taken on the
    removed file (opened just before) is no one's, as the next run opens a new file."""
    try:
        return os.path.samestat(os.fstat(fd), os.lstat(path))
    except FileNotFoundError:
        return False


#: How many times a lock is taken again where the file locked is no longer the one at its path
#: (:func:`still_at`) before giving up: a file system whose two looks at one file disagree for
#: good (an old overlayfs, a FUSE mount) looped for ever, silently, at full CPU.
TRIES = 100


def tries(path: Path):
    """The attempts of a lock of ``path`` (:data:`TRIES`), then a LoftUpError naming it."""
    yield from range(TRIES)
    from .errors import LoftUpError

    raise LoftUpError(
        f"the lock file {path} was another file each time it was locked ({TRIES} tries): its "
        "file system says two things of one file (an old overlayfs, a FUSE mount); choose a "
        "folder on another file system"
    )


def open_lock_file(path: Path, flags: int, runs: str) -> int:
    """``os.open`` of the lock file ``path`` (mode 0666 less the umask where made), not
    following a link and not waiting (a FIFO in its place opened for reading waited for a
    writer, for ever); LoftUpError where it is no regular file (a link, a folder, a FIFO or
    socket), naming what to remove (``runs``: who locks it, "loftup train runs"). A regular
    file whose open without waiting would block (EAGAIN: a lease being broken, an NFS
    delegation, a Samba oplock) is opened again waiting for the break, as any open does."""
    nonblock = getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        try:
            fd = os.open(path, flags | nonblock, 0o666)
        except BlockingIOError:  # (a FIFO or socket opens, or says ENXIO)
            fd, nonblock = os.open(path, flags, 0o666), 0
    except OSError as e:
        if e.errno not in _NOT_REGULAR:
            raise
        kind = _NOT_REGULAR[e.errno]
    else:
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                if nonblock:
                    os.set_blocking(fd, True)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        kind = "special file"
    from .errors import LoftUpError
    from .escaping import printable, shell_quoted

    kind = _kind(path, kind)
    remove = f"rm {'-r ' if kind == 'folder' else ''}{shell_quoted(path)}"
    raise LoftUpError(  # (the path escaped here: the command's escapes are not escaped again)
        f"{printable(str(path))} is a {kind}, not the regular file that {runs} lock: remove it "
        f"({remove}) and run again"
    )


#: What the errors of an open that does not follow a link or wait say is in the path's place:
#: a link (ELOOP), a folder (EISDIR), a socket or a FIFO without a reader (ENXIO).
_NOT_REGULAR = {errno.ELOOP: "link", errno.EISDIR: "folder", errno.ENXIO: "special file"}


def _kind(path: Path, said: str) -> str:
    """What is at ``path`` (no regular file): a link, a folder or a special file (a FIFO, a
    socket, a device); ``said`` (what the open said) where it is gone again."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return said
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "folder"
    return said if stat.S_ISREG(mode) else "special file"
