"""The lock a ``loftup upsample`` run holds on its folder while it writes or marks its record
(``upsample.json``): a run marking its record finished reads it, compares and rewrites it, and
a run of another ``--format`` writing its own record in between lost it (the first run put
back a record that named none of the other's files). Held briefly, never across a run: an
exclusive ``flock`` (:mod:`..file_lock`) of ``OUT/.upsample.lock``, waited for, and removed by
its holder, so no file stays behind (one a killed run left is taken and removed by the next).
A wait past :data:`WAIT_NOTE_AFTER` is said once (a holder stopped with Ctrl-Z), and goes on."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path

from ..file_lock import NO_LOCKS, flock_holder, lock_wait, open_lock_file, still_at, tries

#: The lock file, hidden (no output: :func:`.record.read_record` passes over hidden files).
LOCK_NAME = ".upsample.lock"

#: How long (seconds) a run waits for another's hold of the lock before it says so, once (and
#: waits on): a hold lasts moments, so a wait this long is a holder stopped (Ctrl-Z, SIGSTOP,
#: a debugger) or hung, for which every other run there waited for ever, silently.
WAIT_NOTE_AFTER = 10.0


@contextlib.contextmanager
def record_lock(out_dir: Path):
    """Hold ``out_dir``'s record lock (waiting for another run's short hold); unlocked where
    the file system keeps no locks (:data:`..file_lock.NO_LOCKS`) or there is no fcntl."""
    path = out_dir / LOCK_NAME
    for _ in tries(path):
        fd = _open(path)
        try:
            locked = True
            try:
                _lock(fd, path)
            except OSError as e:  # no locks here (nor fcntl): as unlocked as before this lock
                if e.errno not in NO_LOCKS:
                    raise
                locked = False
            if locked and not still_at(fd, path):
                continue  # its holder removed it meanwhile: its lock is no one's
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(path)  # while held: one who waits on it takes a new one
            return
        finally:
            os.close(fd)


def _lock(fd: int, path: Path) -> None:
    """Lock ``fd`` (the lock file ``path``), waiting for another holder (:func:`lock_wait`),
    said once on stderr where that wait passes :data:`WAIT_NOTE_AFTER` (:func:`_say_waiting`);
    the lock's errors as they are (no locks here: :data:`..file_lock.NO_LOCKS`)."""
    note = threading.Timer(WAIT_NOTE_AFTER, _say_waiting, (path, os.fstat(fd)))
    note.daemon = True
    note.start()
    try:
        lock_wait(fd)
    finally:
        note.cancel()


def _say_waiting(path: Path, st: os.stat_result) -> None:
    """Say on stderr that this run waits for the lock file ``path`` (of ``st``), held by
    another run: by its pid where /proc/locks tells it (:func:`..file_lock.flock_holder`),
    stopped where its state says so, and how to let it go on or end it."""
    from ..errors import printable
    from .run_entries import stopped

    pid = flock_holder(st)
    holder = "" if pid is None else f" (process {pid})"
    # (stopped, a signal it handles, loftup's SIGTERM, waits until it goes on: -CONT)
    kill = (
        "kill its process, then kill -CONT it" if pid is None else f"kill {pid}; kill -CONT {pid}"
    )
    state = "it is stopped" if pid is not None and stopped(pid) else "it may be stopped"
    print(
        printable(
            f"waiting for the lock file {path}, held by another loftup upsample run{holder} "
            f"for {WAIT_NOTE_AFTER:g} s though a run holds it for moments: {state} (Ctrl-Z, a "
            f"debugger); let it go on (fg in its shell) or end it ({kill}); still waiting"
        ),
        file=sys.stderr,
    )


def _open(path: Path) -> int:
    """The lock file, open for reading and writing: on NFS, whose client makes a flock a POSIX
    lock, an exclusive one of a descriptor open for reading only fails (EBADF, one of
    :data:`..file_lock.NO_LOCKS`), and every run went on unlocked, silently. For reading alone
    where this user may not write it (another's, left by a killed run): locked where the file
    system locks so, as before."""
    runs = "loftup upsample runs"
    try:
        return open_lock_file(path, os.O_RDWR | os.O_CREAT, runs)
    except PermissionError:
        return open_lock_file(path, os.O_RDONLY | os.O_CREAT, runs)
