"""What a file system does to the lock files of a loftup run (:mod:`loftup.file_lock`, the
train folder lock's and ``--save-masks``'s): a lease on the file, a file system whose two looks
at one file disagree."""

import subprocess
import sys
from pathlib import Path

import pytest

from loftup.errors import LoftUpError
from loftup.eval import mask_lock
from loftup.train import run_lock
from loftup.train.run_lock import LOCK_NAME, folder_lock

fcntl = pytest.importorskip("fcntl")

#: a process that takes a read lease of the file argv[1] and lets it go when an open for
#: writing breaks it (SIGIO), as an NFS server's delegation or a Samba oplock is given back
LEASE = (
    "import fcntl, os, signal, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "def give_back(*_):\n"
    "    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK); print('broken', flush=True)\n"
    "signal.signal(signal.SIGIO, give_back)\n"
    "try:\n"
    "    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)\n"
    "except OSError as e:\n"
    "    print('no leases', e, flush=True); sys.exit()\n"
    "print('leased', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.mark.skipif(not hasattr(fcntl, "F_SETLEASE"), reason="file leases are Linux's")
def test_a_lease_on_the_lock_file_is_waited_for_not_taken_for_a_held_lock(tmp_path):
    """The lock file was opened without waiting (for a FIFO in its place), which a lease on it
    (an NFS delegation, a Samba oplock) turned into an error at once (EWOULDBLOCK) instead of
    the wait for its break: the run was refused, "cannot take the lock ...; run again"."""
    (tmp_path / LOCK_NAME).write_text("")
    holder = subprocess.Popen([sys.executable, "-c", LEASE, str(tmp_path / LOCK_NAME)],
                              text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    try:
        said = holder.stdout.readline()
        if said.startswith("no leases"):
            pytest.skip(f"this file system keeps no leases: {said}")
        assert said == "leased\n"
        with folder_lock(tmp_path):
            assert holder.stdout.readline() == "broken\n"  # the open waited for the break
    finally:
        holder.communicate("", timeout=60)


@pytest.mark.parametrize("lock", ["train", "masks"])
def test_a_file_system_that_never_agrees_on_the_lock_file_is_refused_not_looped_on(
    tmp_path, monkeypatch, lock
):
    """A lock taken again while the file locked is not the one at its path: a file system whose
    two looks at one file always disagree (an old overlayfs, a FUSE mount) kept a run looping
    there for ever, silently, at full CPU. It gives up, naming the file."""
    looks = []

    def never_the_same(fd, path):
        looks.append(path)
        assert len(looks) < 1000, "looping for ever"
        return False

    module = run_lock if lock == "train" else mask_lock
    monkeypatch.setattr(module, "still_at", never_the_same)
    with pytest.raises(LoftUpError) as e:
        if lock == "train":
            with folder_lock(tmp_path):
                pass
        else:
            mask_lock._lock_file(tmp_path, exclusive=True)
    path = Path(looks[0])
    assert str(e.value) == (
        f"the lock file {path} was another file each time it was locked (100 tries): its file "
        "system says two things of one file (an old overlayfs, a FUSE mount); choose a folder "
        "on another file system"
    )
    assert len(looks) == 100
