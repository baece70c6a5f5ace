"""The train run's folder lock (:func:`loftup.train.run_lock.folder_lock`) is a POSIX lock
(``fcntl.lockf``), which forked DataLoader workers do not inherit, with what it shares with
``--save-masks``'s lock (:mod:`loftup.file_lock`): one rule for a file system without locks,
a link in its file's place refused.
"""

import errno
import os
import subprocess
import sys
from contextlib import ExitStack

import pytest
import torch

from loftup.errors import LoftUpError
from loftup.train.distributed import DistInfo
from loftup.train.run_lock import LOCK_NAME, folder_lock, lock_run_folder

fcntl = pytest.importorskip("fcntl")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a worker")
def test_a_worker_forked_while_a_run_holds_its_folder_does_not_keep_it_after_the_run_dies(
    tmp_path,
):
    """A flock is shared by a forked child (a DataLoader worker): with one, a worker that
    outlived its killed run kept the folder locked, and the requeued run was refused, naming
    the dead one. The lock is a POSIX lock, which no child inherits: the run's own lasts
    until it dies, and a new run gets the folder while the worker lives on."""
    run = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from loftup.train.run_lock import folder_lock\n"
        "with folder_lock(Path(sys.argv[1])):\n"
        "    if os.fork() == 0:  # the worker: alive until its stdin ends\n"
        "        os.write(1, b'worker\\n'); sys.stdin.read(); os._exit(0)\n"
        "    os.write(1, b'run\\n'); os.read(int(sys.argv[2]), 1)  # alive until told\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    die_r, die_w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", run, str(tmp_path), str(die_r)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            pass_fds=[die_r])  # fmt: skip
    os.close(die_r)
    try:
        assert {proc.stdout.readline(), proc.stdout.readline()} == {"worker\n", "run\n"}
        with pytest.raises(LoftUpError, match="in use by another loftup train run"):
            with folder_lock(tmp_path):  # the run alive: refused
                pass
        os.write(die_w, b"x")
        assert proc.wait(timeout=60) == -9  # killed, its worker alive (its stdin still open)
        with folder_lock(tmp_path):
            pass
    finally:
        os.close(die_w)
        proc.stdin.close()  # the worker ends
        proc.stdout.close()


def test_a_lock_request_that_fails_otherwise_is_not_taken_for_a_file_system_without_locks(
    tmp_path, monkeypatch, caplog
):
    """Any error of the lock but "held" was read as "this file system keeps no locks": the run
    went on unlocked, with a warning, where the request itself failed (an I/O error of a
    network file system). It is refused, naming the error and the lock file, as a --save-masks
    run is (the errors of a file system that keeps no locks are one list for both:
    file_lock.NO_LOCKS), and not told to check who owns the file, which is no one's fault."""

    def failing(fd, op):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fcntl, "lockf", failing)
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="loftup.train"), pytest.raises(LoftUpError) as e:
        with ExitStack() as held:
            lock_run_folder(out, DistInfo(device=torch.device("cpu")), held)
    assert str(e.value) == (
        f"cannot take the lock of {out / LOCK_NAME}: Input/output error; run again once that "
        "is fixed, or choose another --out (log.out_dir)"
    )
    assert "keeps no file locks" not in caplog.text
    # the folder it made is left: removing it, no lock held, could remove another run's lock
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_a_link_in_the_lock_files_place_is_refused_and_what_it_names_left_as_it_was(tmp_path):
    """A link (a copied run folder, another member's in a shared one) in place of the lock
    file was followed: the run emptied the file it named and wrote its holder's note there.
    It is refused, naming the fix, as --save-masks refuses one."""
    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    (out / LOCK_NAME).symlink_to(tmp_path / "notes.txt")
    with pytest.raises(LoftUpError) as e, ExitStack() as held:
        lock_run_folder(out, DistInfo(device=torch.device("cpu")), held)
    assert str(e.value) == (
        f"{out / LOCK_NAME} is a link, not the regular file that loftup train runs lock: "
        f"remove it (rm {out / LOCK_NAME}) and run again"
    )
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_lock_that_lockf_says_is_held_with_eacces_refuses_the_run_as_in_use(
    tmp_path, monkeypatch
):
    """POSIX lets a lock request say "held by another" as EACCES as well as EAGAIN (some
    systems do): that is the run that holds the folder, named in the refusal, not a lock file
    this user may not use."""
    (tmp_path / LOCK_NAME).write_text("process 4242 on elsewhere\n")

    def held_elsewhere(fd, op):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(fcntl, "lockf", held_elsewhere)
    with pytest.raises(LoftUpError) as e:
        with folder_lock(tmp_path):
            pass
    assert str(e.value) == (
        f"{tmp_path} is in use by another loftup train run (process 4242 on elsewhere); wait "
        "for it to end (then --resume continues it), or choose another --out (log.out_dir)"
    )


@pytest.mark.parametrize("kind", ["FIFO", "socket"])
def test_a_fifo_or_socket_in_the_lock_files_place_is_refused_with_rm(tmp_path, monkeypatch, kind):
    """A FIFO in the lock file's place was called a link, and a socket's open error (ENXIO)
    was said as "No such device or address; run again once that is fixed", though nothing
    but removing it fixes it. Both are named for what they are, with the rm."""
    import socket

    out = tmp_path / "run"
    out.mkdir()
    monkeypatch.chdir(out)  # (a socket's path is short: relative here)
    if kind == "FIFO":
        os.mkfifo(LOCK_NAME)
    else:
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(LOCK_NAME)
    try:
        with pytest.raises(LoftUpError) as e, ExitStack() as held:
            lock_run_folder(out, DistInfo(device=torch.device("cpu")), held)
    finally:
        if kind == "socket":
            listening.close()
    assert str(e.value) == (
        f"{out / LOCK_NAME} is a special file, not the regular file that loftup train runs "
        f"lock: remove it (rm {out / LOCK_NAME}) and run again"
    )


def test_a_lock_file_removed_by_the_run_that_made_it_while_opened_is_not_taken(
    tmp_path, monkeypatch
):
    """A run that made its folder and ended before writing there removes the folder and its
    lock file. A second run that had opened that file just before locked it after: a lock of
    a file no longer there, which a third run (opening a new one) did not see, and the two
    wrote there together. The lock is checked to be the file's at the path: here the folder
    is gone, and the run is told so."""
    from loftup.train import run_lock

    out = tmp_path / "run"
    first = (
        "import sys, torch\n"
        "from contextlib import ExitStack\n"
        "from pathlib import Path\n"
        "from loftup.train.distributed import DistInfo\n"
        "from loftup.train.run_lock import lock_run_folder\n"
        "with ExitStack() as held:  # makes the folder, then ends without writing there\n"
        "    lock_run_folder(Path(sys.argv[1]), DistInfo(device=torch.device('cpu')), held)\n"
        "    print('held', flush=True); sys.stdin.readline()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", first, str(out)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    real = run_lock.open_lock_file

    def first_ends_after_the_open(*args):
        fd = real(*args)
        if proc.poll() is None:
            proc.communicate("\n", timeout=60)
        return fd

    try:
        assert proc.stdout.readline() == "held\n"
        monkeypatch.setattr(run_lock, "open_lock_file", first_ends_after_the_open)
        with pytest.raises(LoftUpError) as e, ExitStack() as held:
            lock_run_folder(out, DistInfo(device=torch.device("cpu")), held)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == 0 and not out.exists()
    assert str(e.value) == (
        f"{out} was removed while this run took its lock (by the run that made it, say, which "
        "ended before writing there); run again"
    )


def test_a_run_whose_lock_note_cannot_be_written_removes_the_folder_it_made(tmp_path, monkeypatch):
    """Where the holder's note could not be written into the lock file (a full disk), the run
    was refused and left the folder it had made, holding the lock file alone. It is removed,
    the lock still held, as at the end of a run that failed before writing there."""

    def disk_full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", disk_full)
    out = tmp_path / "run"
    with pytest.raises(LoftUpError) as e, ExitStack() as held:
        lock_run_folder(out, DistInfo(device=torch.device("cpu")), held)
    assert str(e.value) == (
        f"cannot take the lock of {out / LOCK_NAME}: No space left on device; run again once "
        "that is fixed, or choose another --out (log.out_dir)"
    )
    assert not out.exists()


def test_a_system_without_fcntl_is_said_as_such_not_as_the_folders_file_system(
    tmp_path, monkeypatch, caplog
):
    """Where Python has no fcntl (Windows), the warning blamed the folder's file system ("X
    keeps no file locks (no fcntl)"), sending the user to look at a disk that is not at fault."""
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl fails, as on Windows
    with caplog.at_level("WARNING", logger="loftup.train"), folder_lock(tmp_path):
        pass
    assert caplog.messages == [
        f"this system has no file locks (no fcntl): a second loftup train run into {tmp_path} "
        "would not be refused; run one at a time there"
    ]


def test_a_run_that_writes_nothing_removes_the_folders_it_made_on_the_way_too(tmp_path):
    """``--out runs/exp1`` where neither was there: a run that ended before writing there
    removed ``exp1`` and left ``runs``, which it had made too."""
    with ExitStack() as held:
        lock_run_folder(tmp_path / "runs" / "exp1", DistInfo(device=torch.device("cpu")), held)
        assert (tmp_path / "runs" / "exp1" / LOCK_NAME).exists()
    assert list(tmp_path.iterdir()) == []


def test_a_lock_file_that_cannot_be_made_leaves_no_folder(tmp_path, monkeypatch):
    """A full disk or quota at the lock file's making (before any lock) left the empty folder
    the run made, and the folders on its way: removed, as a folder this run made and nothing
    holds is no one's."""
    from loftup.train import run_lock

    def quota(path, flags, runs):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(run_lock, "open_lock_file", quota)
    out = tmp_path / "runs" / "exp1"
    with pytest.raises(LoftUpError, match="Disk quota exceeded"), ExitStack() as held:
        lock_run_folder(out, DistInfo(device=torch.device("cpu")), held)
    assert list(tmp_path.iterdir()) == []
