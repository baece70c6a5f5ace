"""The lock a ``loftup upsample`` run holds on its folder while it writes or marks its record
(``upsample.json``): a run marking its record finished reads it, compares and rewrites it, and
a run of another ``--format`` writing its own record in between lost it (the first run put
back a record that named none of the other's files). Held briefly, never across a run: an
exclusive ``flock`` (:mod:`..file_lock`) of ``OUT/.upsample.lock``, waited for, and removed by
its holder, so no file stays behind (one a killed run left is taken and removed by the next)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..file_lock import NO_LOCKS, lock_wait, open_lock_file, still_at, tries

#: The lock file, hidden (no output: :func:`.record.read_record` passes over hidden files).
LOCK_NAME = ".upsample.lock"


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
                lock_wait(fd)
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
