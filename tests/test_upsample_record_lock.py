"""The lock a ``loftup upsample`` run holds while it writes or marks its record
(:func:`loftup.extract.record_lock.record_lock`): what it is open as, seen from the system."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loftup.extract.record_lock import LOCK_NAME, record_lock

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fdinfo").is_dir(), reason="the open flags and locks are read in /proc"
)


def _open_on(path: Path) -> list[str]:
    """The /proc/self/fdinfo text of each descriptor of this process open on ``path``."""
    target = os.path.realpath(path)
    return [
        Path(f"/proc/self/fdinfo/{fd}").read_text()
        for fd in os.listdir("/proc/self/fd")
        if os.path.realpath(f"/proc/self/fd/{fd}") == target
    ]


def _access(info: str) -> int:
    flags = next(line for line in info.splitlines() if line.startswith("flags:"))
    return int(flags.split()[1], 8) & os.O_ACCMODE


def test_the_record_lock_is_held_on_a_descriptor_open_for_writing(tmp_path):
    """The lock file was opened for reading only: on NFS, which makes an exclusive flock a
    POSIX lock, that fails with EBADF, one of the errors read as "this file system keeps no
    locks", so every run there wrote its record unlocked, silently."""
    with record_lock(tmp_path):
        (info,) = _open_on(tmp_path / LOCK_NAME)
        assert _access(info) == os.O_RDWR, info
        assert "FLOCK" in info and "WRITE" in info, info  # held, exclusive
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_a_lock_file_this_user_may_not_write_is_locked_read_only(tmp_path):
    """Another user's lock file, left by a killed run (read-only to this one), is still
    locked where the file system locks a descriptor open for reading, as before."""
    (tmp_path / LOCK_NAME).touch(mode=0o444)
    with record_lock(tmp_path):
        (info,) = _open_on(tmp_path / LOCK_NAME)
        assert _access(info) == os.O_RDONLY and "FLOCK" in info, info
