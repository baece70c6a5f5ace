"""The lock a run holds on its folder (``log.out_dir``, rank 0 only) from before it looks at
what the folder holds to its end (:func:`lock_run_folder`): a second run there is refused,
naming the run that writes there. What it shares with ``--save-masks``'s lock is
:mod:`..file_lock`'s."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..errors import LoftUpError
from ..file_lock import NO_FCNTL, NO_LOCKS, lockf_nowait, open_lock_file, still_at, tries
from .earlier import OUT_OPTION
from .lock_refusal import (
    LOCK_NAME,
    TRAIN,
    LockKind,
    cannot_lock,
    held_by,
    holder_of,
    in_use,
    not_writable,
)

log = logging.getLogger("loftup.train")


#: the folders this process's runs hold, by their device and inode (a POSIX lock is the
#: process's: a second run of the same process would get it again, and its end would release
#: the first run's), each with its run's token; :data:`_RESERVING` held to look and add in one
#: step
_HELD: dict[tuple[int, int, str], object] = {}
_RESERVING = threading.Lock()


@contextmanager
def folder_lock(
    out_dir: Path, made: bool = False, another: str = OUT_OPTION, kind: LockKind = TRAIN
):
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
    signal said as an exception), the descriptor and the mark of this process's run go.
    ``another``: the option that chose ``out_dir``, offered in a refusal ("or choose another
    --out"); ``kind``: the lock's (:data:`.lock_refusal.TRAIN`, or the whole demo's on its
    --out, :data:`.lock_refusal.DEMO`)."""
    st = os.stat(out_dir)
    key, token, fd = (st.st_dev, st.st_ino, kind.name), object(), None
    try:
        _reserve(key, token, out_dir, another, kind)
        fd, locked = _take(out_dir, another, kind)
        if locked:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:  # (each step whatever the one before raised)
        try:
            if fd is not None and made:
                _remove_if_unused(out_dir, kind.name)
        finally:
            try:
                if fd is not None:
                    os.close(fd)  # the lock goes with it
            finally:
                with _RESERVING:  # (after the close: a run let in before would lose its lock)
                    if _HELD.get(key) is token:  # (not another run's, refused here)
                        del _HELD[key]


def check_not_held(out_dir: Path, another: str = OUT_OPTION, kind: LockKind = TRAIN) -> None:
    """A :class:`LoftUpError` naming the run that holds ``out_dir``'s lock, where one does: a
    look without taking it (a shared lock, let go at once) and writing nothing, none where
    there is no lock file (no run was there). The up-front check of ``loftup demo --resume``
    makes it for each stage's folder (a stage 2 in use was refused after stage 1 trained on),
    and ``loftup demo`` for its --out (``kind``: :data:`.lock_refusal.DEMO`) before it looks at
    what it holds (a demo running there was said to be an interrupted one). One this process
    holds is refused without a look, and none of its runs takes one during the look
    (:data:`_RESERVING` held): closing the lock file would let go of its lock."""
    path = out_dir / kind.name
    if not os.path.lexists(path):
        return
    try:
        st = os.stat(out_dir)
    except OSError:  # (said where the run looks at it)
        return
    # held for the look: opened and closed, a lock this process holds would be let go (one
    # that another of its threads took between a look at _HELD and the close too)
    with _RESERVING:
        if (st.st_dev, st.st_ino, kind.name) in _HELD:
            raise in_use(out_dir, f"process {os.getpid()}, this one", another, kind)
        held = held_by(path, kind)
    if isinstance(held, str):
        raise in_use(out_dir, held, another, kind)


def _reserve(key: tuple, token: object, out_dir: Path, another: str, kind: LockKind) -> None:
    """Mark the folder ``out_dir`` (``key``: its device, inode and lock's name) held by the run
    ``token`` of
    this process; LoftUpError where another of its runs holds it. A folder has one key under
    all its paths (a bind mount, a disk that ignores case, a renamed folder), and is looked at
    before its lock file is opened: closing any descriptor of that file would release a lock
    this process holds."""
    with _RESERVING:  # (two threads that both looked before either added both got it)
        if key in _HELD:
            raise in_use(out_dir, f"process {os.getpid()}, this one", another, kind)
        _HELD[key] = token


def _take(out_dir: Path, another: str, kind: LockKind = TRAIN) -> tuple[int, bool]:
    """A descriptor of ``out_dir``'s lock file and whether it holds its lock (False: the file
    system keeps none, with a warning), closed on any error once opened. Taken again where the
    file was removed meanwhile (by the run that made the folder, ending before it wrote there):
    its lock would be no one's, and a third run would get the folder too."""
    path = out_dir / kind.name
    for _ in tries(path):
        try:
            fd = open_lock_file(path, os.O_RDWR | os.O_CREAT, kind.runs)
        except FileNotFoundError:
            raise LoftUpError(
                f"{out_dir} was removed while this run took its lock (by the run that made it, "
                "say, which ended before writing there); run again"
            ) from None
        except PermissionError:
            raise not_writable(path, out_dir, another, kind) from None
        try:
            locked = _lock(fd, out_dir, another, kind)
            if not locked or still_at(fd, path):
                return fd, locked
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _lock(fd: int, out_dir: Path, another: str, kind: LockKind = TRAIN) -> bool:
    """Lock ``fd``: True, or False (with a warning) where the file system keeps no locks;
    LoftUpError naming the run that holds it. Tried for 0.1 s: a look at the lock that takes
    a shared one (:func:`.lock_refusal.held_by` where F_GETLK cannot be asked, an older
    loftup's) holds it that long at most, and refused a run starting during it."""
    for wait in (0.01, 0.02, 0.03, 0.04, None):
        try:
            lockf_nowait(fd)
            break
        except BlockingIOError:
            if wait is None:
                raise in_use(out_dir, holder_of(fd), another, kind) from None
            time.sleep(wait)
        except OSError as e:
            if e.errno not in NO_LOCKS:
                raise
            where = "this system has" if e.strerror == NO_FCNTL else f"{out_dir} keeps"
            log.warning(  # (ENOLCK: NFS without its lock service)
                "%s no file locks (%s): a second %s into %s would not be refused; "
                "run one at a time there", where, e.strerror or e, kind.run, out_dir,
            )  # fmt: skip
            return False
    return True


def lock_run_folder(
    out_dir: Path, info, held: ExitStack, another: str = OUT_OPTION, kind: LockKind = TRAIN
) -> None:
    """Rank 0 makes ``out_dir`` and takes its lock (:func:`folder_lock`) for as long as
    ``held`` lasts, before the run looks at what the folder holds: a run that ended there while
    this one built its models could otherwise be overwritten on the strength of an earlier
    look (its checkpoint read as absent, or as older). A refusal is said by every rank, with
    ``another``, the option that chose ``out_dir``. ``kind``: the lock's (``loftup demo``
    takes :data:`.lock_refusal.DEMO` on its --out, ``info`` a single process's)."""
    from .distributed import broadcast_object

    problem = None
    if info.is_main:
        try:
            made = _make(out_dir)
            with ExitStack() as mine:  # (refused or ended, those still empty are removed: a
                # folder holding a lock file is left, another run's, or one whose request failed)
                mine.callback(_remove_made, made)
                mine.enter_context(folder_lock(out_dir, out_dir in made, another, kind))
                held.enter_context(mine.pop_all())
        except LoftUpError as e:
            problem = str(e)
        except OSError as e:  # one line on every rank
            problem = cannot_lock(out_dir / kind.name, e, another)
    problem = broadcast_object(problem, info)
    if problem is not None:
        raise LoftUpError(problem)


def _remove_if_unused(out_dir: Path, name: str = LOCK_NAME) -> None:
    """Remove ``out_dir``, made by this run, which failed before writing there, where it holds
    nothing but the lock's file (the lock still held: a run that opened the file meanwhile
    sees it gone once it has the lock, :func:`_take`)."""
    try:
        if [p.name for p in out_dir.iterdir()] == [name]:
            (out_dir / name).unlink()
            out_dir.rmdir()
    except OSError:  # taken over, or not ours to remove: left as it is
        pass


def _make(out_dir: Path) -> list[Path]:
    """Make ``out_dir`` and the folders on its way that are missing: those made, outermost
    first (none made is left where one fails)."""
    missing, folder = [], out_dir
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:  # (another made it meanwhile: not ours)
                continue
            made.append(folder)
    except BaseException:
        _remove_made(made)
        raise
    return made


def _remove_made(made: list[Path]) -> None:
    """Remove the folders of ``made`` (outermost first) that are empty, innermost first, up to
    the first that is not (``rmdir``: a folder anyone wrote in is left as it is)."""
    for folder in reversed(made):
        try:
            folder.rmdir()
        except FileNotFoundError:  # (removed with its lock file, :func:`_remove_if_unused`)
            continue
        except OSError:
            return
