"""What a train run refused its folder's lock (:mod:`.run_lock`) is told: the run that holds
it, or why this user may not take it and the fix, one line; its other fix, another folder,
offered as the option that chose it (``another``: ``loftup train``'s --out (log.out_dir), a
demo's or an experiment's --out)."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import LoftUpError
from ..escaping import printable, shell_quoted
from ..file_lock import lockf_holder, lockf_nowait, open_lock_file
from ..read_refusal import euid, folder_refusal, may, mode_refuses
from .earlier import OUT_OPTION

#: the file in a run's folder that the run writing there holds a lock on
#: (:func:`.run_lock.folder_lock`)
LOCK_NAME = ".loftup-train.lock"

#: who locks :data:`LOCK_NAME`, in the refusal of what is no regular file in its place
RUNS = "loftup train runs"


@dataclass(frozen=True)
class LockKind:
    """A kind of folder lock (:func:`.run_lock.folder_lock`): its file's ``name``, who takes
    it (``run``: "loftup train run"; ``runs`` "loftup train runs") and what a command refused
    it is told to ``wait`` for."""

    name: str
    run: str
    runs: str
    wait: str


#: a train run's lock of its folder (``log.out_dir``)
TRAIN = LockKind(
    LOCK_NAME, "loftup train run", RUNS, "wait for it to end (then --resume continues it)"
)
#: ``loftup demo``'s lock of its ``--out`` for the whole demo (its runs lock their own folders)
DEMO = LockKind(".loftup-demo.lock", "loftup demo", "loftup demos", "wait for it")


def holder(fd: int) -> str:
    """The note of the run that holds the lock of ``fd``'s file: its process and host."""
    return os.pread(fd, 200, 0).decode(errors="replace").strip()


def in_use(
    out_dir: Path, held_by: str, another: str = OUT_OPTION, kind: LockKind = TRAIN
) -> LoftUpError:
    return LoftUpError(
        f"{out_dir} is in use by another {kind.run}{f' ({held_by})' if held_by else ''}; "
        f"{kind.wait}, or choose another {another}"
    )


def not_writable(
    path: Path, out_dir: Path, another: str = OUT_OPTION, kind: LockKind = TRAIN
) -> LoftUpError:
    """The refusal where this user may not open the lock file ``path`` for reading and writing
    (another user's, say): the run that holds it, where one does (its lock refuses a shared
    one); else what refuses it with the fix for this user's class of users (``chmod g+rw``,
    :func:`..read_refusal.mode_refuses`), and ``rm`` where no run holds it and this user may
    remove it. Where there is no lock file, the folder that this user may not make it in;
    ``another``: the option that chose ``out_dir``, offered last. The paths are escaped here
    (:func:`~loftup.escaping.printable`), the commands' in bash's quotes
    (:func:`~loftup.escaping.shell_quoted`): the message holds nothing the command line escapes
    again, and a command pasted from it names the file (escaped whole, its backslashes
    doubled, it named another)."""
    held = held_by(path, kind)
    if isinstance(held, str):
        return in_use(out_dir, held, another, kind)
    folder = printable(str(out_dir))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        why = folder_refusal(out_dir) or mode_refuses(out_dir, os.stat(out_dir), "wx")
        return LoftUpError(
            f"this user may not make files in {folder}, where every {kind.run} locks the "
            f"file {kind.name}: {why}; or choose another {another}"
        )
    except OSError:  # (a folder this user may not search)
        st = None
    why = folder_refusal(path) or (
        mode_refuses(path, st, "rw") if st is not None else "permission denied"
    )
    remove = ""
    if held is False and st is not None and _may_remove(out_dir, st):
        remove = f"; or remove it, as no run holds it: rm {shell_quoted(path)}"
    return LoftUpError(
        f"this user may not write {printable(str(path))}, the file every {kind.run} into "
        f"{folder} locks{'; no run holds it' if held is False else ''}: {why}{remove}; or "
        f"choose another {another}"
    )


def held_by(path: Path, kind: LockKind = TRAIN) -> str | bool | None:
    """Whether a run holds the lock of ``path``, asked through a read-only open: who, where one
    does (its note, where it names the process that holds the lock; else that process, a note
    left by a run that ended being no one's), False where none does, None where that cannot be
    told (unreadable too, or no locks here). Asked with F_GETLK, which takes no lock (a shared
    one, taken where it cannot be asked, refused a run starting during the look: the run
    tries again, :func:`.run_lock._lock`). Closing the file lets go of any lock this process
    holds of it: a caller looks only at one it does not hold (:func:`.run_lock.check_not_held`)."""
    try:
        fd = open_lock_file(path, os.O_RDONLY, kind.runs)
    except OSError:
        return None
    try:
        pid = lockf_holder(fd)
        if pid is False:
            return False
        if pid is not None:
            return holder_of(fd, pid)
        lockf_nowait(fd, exclusive=False)
        return False
    except BlockingIOError:
        return holder(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def holder_of(fd: int, pid: int | bool | None = None) -> str:
    """Who holds the lock of ``fd``'s file: its run's note (:func:`holder`, "process 12 on
    host"), but where F_GETLK tells the process that holds it (``pid``, else asked here; 0,
    None, False: not told) and the note is this host's naming another (the note of a run that
    ended here, before the holder wrote its own), or there is none, that process. A note of
    another host is kept: the lock there may be held through a network file system, whose
    process ids say nothing here."""
    import socket

    note = holder(fd)
    pid = lockf_holder(fd) if pid is None else pid
    here = f"process {pid} on {socket.gethostname()}"
    if not pid or note == here:
        return note
    if not note or (note.startswith("process ") and note.endswith(f" on {socket.gethostname()}")):
        return here
    return note


def _may_remove(folder: Path, st: os.stat_result) -> bool:
    """Whether this user may remove the file (``st``: its stat) from ``folder``: may write and
    search it, and, where it is sticky, owns it or the file."""
    if not may(folder, os.W_OK | os.X_OK):
        return False
    try:
        fst = os.stat(folder)
    except OSError:
        return False
    return not fst.st_mode & stat.S_ISVTX or euid() in (0, st.st_uid, fst.st_uid)


def cannot_lock(path: Path, e: OSError, another: str = OUT_OPTION) -> str:
    """The refusal where taking the lock of ``path`` failed with ``e``: a folder on its way
    another user's, say (who owns it is the question; a lock file this user may not write is
    :func:`not_writable`'s), or an error of its file system (an I/O error: its text and the
    path, no owner to ask)."""
    if e.errno in (errno.EACCES, errno.EPERM):
        return (
            f"cannot take the lock of {path} ({e.strerror or e}); check who owns it, or choose "
            f"another {another}"
        )
    return (
        f"cannot take the lock of {path}: {e.strerror or e}; run again once that is fixed, or "
        f"choose another {another}"
    )
