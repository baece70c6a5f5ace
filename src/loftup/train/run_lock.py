"""The lock a run holds on its folder (``log.out_dir``, rank 0 only) from before it looks at
what the folder holds to its end (:func:`lock_run_folder`): a second run there is refused,
naming the run that writes there. What it shares with ``--save-masks``'s lock is
:mod:`..file_lock`'s."""

from __future__ import annotations

import errno
import logging
import os
import shlex
import socket
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..errors import LoftUpError
from ..file_lock import NO_FCNTL, NO_LOCKS, lockf_nowait, open_lock_file, still_at, tries
from ..read_refusal import owner_name

log = logging.getLogger("loftup.train")


#: the file in a run's folder that the run writing there holds a lock on (:func:`folder_lock`)
LOCK_NAME = ".loftup-train.lock"

#: the folders this process's runs hold, by their device and inode (a POSIX lock is the
#: process's: a second run of the same process would get it again, and its end would release
#: the first run's), each with its run's token; :data:`_RESERVING` held to look and add in one
#: step
_HELD: dict[tuple[int, int], object] = {}
_RESERVING = threading.Lock()

#: who locks :data:`LOCK_NAME`, in the refusal of what is no regular file in its place
RUNS = "loftup train runs"


@contextmanager
def folder_lock(out_dir: Path, made: bool = False):
    """Hold ``out_dir``'s lock while a run writes there. A second run on the same folder (a job
    launched twice, a requeued job while the first still runs) is refused with a
    :class:`LoftUpError` naming the holder, before it writes anything: the two overwrote each
    other's checkpoint, metrics and ``final/``. A POSIX lock (``fcntl.lockf``) of
    :data:`LOCK_NAME`: the system releases it when its process ends however it ends (``kill
    -9`` too), and DataLoader workers do not inherit it; where the file system keeps no locks
    (:data:`..file_lock.NO_LOCKS`), none is held, with a warning; another error of the request
    (an I/O error) is raised. A second run of the same process (threads, a notebook) is
    refused too, under any path of the folder, and so is a link, folder, FIFO or socket in the
    lock file's place. ``made``: this run made ``out_dir``, removed again at the end (the lock still held)
    where it holds nothing but the lock's file: the run failed before writing there, or
    writing its note in the lock file failed (a full disk). Whatever interrupts it (Ctrl-C, a
    signal said as an exception), the descriptor and the mark of this process's run go."""
    st = os.stat(out_dir)
    key, token, fd = (st.st_dev, st.st_ino), object(), None
    try:
        _reserve(key, token, out_dir)
        fd, locked = _take(out_dir)
        if locked:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:  # (each step whatever the one before raised)
        try:
            if fd is not None and made:
                _remove_if_unused(out_dir)
        finally:
            try:
                if fd is not None:
                    os.close(fd)  # the lock goes with it
            finally:
                with _RESERVING:  # (after the close: a run let in before would lose its lock)
                    if _HELD.get(key) is token:  # (not another run's, refused here)
                        del _HELD[key]


def _reserve(key: tuple[int, int], token: object, out_dir: Path) -> None:
    """Mark the folder ``out_dir`` (``key``: its device and inode) held by the run ``token`` of
    this process; LoftUpError where another of its runs holds it. A folder has one key under
    all its paths (a bind mount, a disk that ignores case, a renamed folder), and is looked at
    before its lock file is opened: closing any descriptor of that file would release a lock
    this process holds."""
    with _RESERVING:  # (two threads that both looked before either added both got it)
        if key in _HELD:
            raise _in_use(out_dir, f"process {os.getpid()}, this one")
        _HELD[key] = token


def _take(out_dir: Path) -> tuple[int, bool]:
    """A descriptor of ``out_dir``'s lock file and whether it holds its lock (False: the file
    system keeps none, with a warning), closed on any error once opened. Taken again where the
    file was removed meanwhile (by the run that made the folder, ending before it wrote there):
    its lock would be no one's, and a third run would get the folder too."""
    path = out_dir / LOCK_NAME
    for _ in tries(path):
        try:
            fd = open_lock_file(path, os.O_RDWR | os.O_CREAT, RUNS)
        except FileNotFoundError:
            raise LoftUpError(
                f"{out_dir} was removed while this run took its lock (by the run that made it, "
                "say, which ended before writing there); run again"
            ) from None
        except PermissionError:
            raise _not_writable(path, out_dir) from None
        try:
            locked = _lock(fd, out_dir)
            if not locked or still_at(fd, path):
                return fd, locked
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _lock(fd: int, out_dir: Path) -> bool:
    """Lock ``fd``: True, or False (with a warning) where the file system keeps no locks;
    LoftUpError naming the run that holds it."""
    try:
        lockf_nowait(fd)
    except BlockingIOError:
        raise _in_use(out_dir, _holder(fd)) from None
    except OSError as e:
        if e.errno not in NO_LOCKS:
            raise
        where = "this system has" if e.strerror == NO_FCNTL else f"{out_dir} keeps"
        log.warning(  # (ENOLCK: NFS without its lock service)
            "%s no file locks (%s): a second loftup train run into %s would not be refused; "
            "run one at a time there", where, e.strerror or e, out_dir,
        )  # fmt: skip
        return False
    return True


def _holder(fd: int) -> str:
    """The note of the run that holds the lock of ``fd``'s file: its process and host."""
    return os.pread(fd, 200, 0).decode(errors="replace").strip()


def _not_writable(path: Path, out_dir: Path) -> LoftUpError:
    """The refusal where this user may not open the lock file ``path`` for writing (another
    user's): the run that holds it, where one does (its lock refuses a shared one), else the
    file's owner and what they run."""
    owner, held = owner_name(path), None
    try:
        fd = open_lock_file(path, os.O_RDONLY, RUNS)
    except OSError:  # (unreadable too: whether a run holds it cannot be told)
        fd = None
    if fd is not None:
        try:
            lockf_nowait(fd, exclusive=False)
            held = False
        except BlockingIOError:
            return _in_use(out_dir, _holder(fd))
        except OSError:  # (no locks here: whether a run holds it cannot be told)
            pass
        finally:
            os.close(fd)
    try:
        mode = f", mode {os.lstat(path).st_mode & 0o7777:04o}"
    except OSError:
        mode = ""
    return LoftUpError(
        f"this user may not write {path} ({owner}'s{mode}), the file every loftup train run "
        f"into {out_dir} locks{'; no run holds it' if held is False else ''}: ask {owner} to "
        f"run chmod g+w {shlex.quote(str(path))} (or to remove it), or choose another --out "
        "(log.out_dir)"
    )


def _in_use(out_dir: Path, holder: str) -> LoftUpError:
    return LoftUpError(
        f"{out_dir} is in use by another loftup train run{f' ({holder})' if holder else ''}; "
        "wait for it to end (then --resume continues it), or choose another --out (log.out_dir)"
    )


def lock_run_folder(out_dir: Path, info, held: ExitStack) -> None:
    """Rank 0 makes ``out_dir`` and takes its lock (:func:`folder_lock`) for as long as
    ``held`` lasts, before the run looks at what the folder holds: a run that ended there while
    this one built its models could otherwise be overwritten on the strength of an earlier
    look (its checkpoint read as absent, or as older). A refusal is said by every rank."""
    from .distributed import broadcast_object

    problem = None
    if info.is_main:
        try:
            made = False
            try:
                out_dir.mkdir(parents=True)
                made = True
            except FileExistsError:
                pass
            held.enter_context(folder_lock(out_dir, made))  # (refused, it removes nothing:
            # the folder is another run's; nor where the lock's request failed, held by none)
        except LoftUpError as e:
            problem = str(e)
        except OSError as e:  # one line on every rank
            problem = _cannot_lock(out_dir / LOCK_NAME, e)
    if info.enabled:
        problem = broadcast_object(problem, info)
    if problem is not None:
        raise LoftUpError(problem)


def _cannot_lock(path: Path, e: OSError) -> str:
    """The refusal where taking the lock of ``path`` failed with ``e``: a folder on its way
    another user's, say (who owns it is the question; a lock file this user may not write is
    :func:`_not_writable`'s), or an error of its file system (an I/O error: its text and the
    path, no owner to ask)."""
    if e.errno in (errno.EACCES, errno.EPERM):
        return (
            f"cannot take the lock of {path} ({e.strerror or e}); check who owns it, or choose "
            "another --out (log.out_dir)"
        )
    return (
        f"cannot take the lock of {path}: {e.strerror or e}; run again once that is fixed, or "
        "choose another --out (log.out_dir)"
    )


def _remove_if_unused(out_dir: Path) -> None:
    """Remove ``out_dir``, made by this run, which failed before writing there, where it holds
    nothing but the lock's file (the lock still held: a run that opened the file meanwhile
    sees it gone once it has the lock, :func:`_take`)."""
    try:
        if [p.name for p in out_dir.iterdir()] == [LOCK_NAME]:
            (out_dir / LOCK_NAME).unlink()
            out_dir.rmdir()
    except OSError:  # taken over, or not ours to remove: left as it is
        pass
