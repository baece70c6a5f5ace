"""The train run's folder lock (:func:`loftup.train.run_folder.folder_lock`) is
:mod:`loftup.file_lock`'s, as ``--save-masks``'s is: a flock, closed in forked workers, one
rule for a file system without locks, a link in its file's place refused; and the POSIX lock
of an older loftup's runs, held beside it where the file system keeps the two apart.
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
from loftup.train.run_folder import LOCK_NAME, folder_lock, lock_run_folder

fcntl = pytest.importorskip("fcntl")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a worker")
def test_a_worker_forked_while_a_run_holds_its_folder_does_not_keep_it_after_the_run_dies(
    tmp_path,
):
    """The lock is a flock, which a forked child (a DataLoader worker) shares: a worker that
    outlived its killed run kept the folder locked, and the requeued run was refused, naming
    the dead one. The worker closes its copy; the run's own lock lasts until it dies."""
    run = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from loftup.train.run_folder import folder_lock\n"
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


def _other_process_can_lockf(path) -> bool:
    """Whether another process can take the POSIX lock of ``path`` (an older loftup's run)."""
    hold = "import fcntl, os, sys; fcntl.lockf(os.open(sys.argv[1], os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB)"
    return subprocess.run([sys.executable, "-c", hold, str(path)]).returncode == 0


def test_where_a_flock_is_a_posix_lock_too_a_run_is_not_refused_by_its_own(tmp_path, monkeypatch):
    """On NFS, Linux sends a flock to the server as a POSIX lock of the whole file: there the
    POSIX lock taken for an older loftup's runs meets the run's own flock. The run is not
    refused by itself: it holds the POSIX lock alone there, which both kinds of run meet."""
    lockf = fcntl.lockf

    def as_on_nfs(fd, op):  # a POSIX lock meets a flock that another open file holds
        probe = os.open(tmp_path / LOCK_NAME, os.O_RDONLY)
        try:
            fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable") from None
        finally:
            os.close(probe)  # (before the POSIX lock is taken: closing it would let that go)
        lockf(fd, op)

    monkeypatch.setattr(fcntl, "lockf", as_on_nfs)
    with folder_lock(tmp_path):
        assert not _other_process_can_lockf(tmp_path / LOCK_NAME)
    assert _other_process_can_lockf(tmp_path / LOCK_NAME)


def test_a_lock_request_that_fails_otherwise_is_not_taken_for_a_file_system_without_locks(
    tmp_path, monkeypatch, caplog
):
    """Any error of the lock but "held" was read as "this file system keeps no locks": the run
    went on unlocked, with a warning, where the request itself failed (an I/O error of a
    network file system). It is refused, naming the error, as a --save-masks run is; the
    errors of a file system that keeps no locks are one list for both (file_lock.NO_LOCKS)."""

    def failing(fd, op):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fcntl, "flock", failing)
    monkeypatch.setattr(fcntl, "lockf", failing)
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="loftup.train"), pytest.raises(LoftUpError) as e:
        with ExitStack() as held:
            lock_run_folder(out, DistInfo(device=torch.device("cpu")), held)
    assert str(e.value) == (
        f"cannot take the lock of {out / LOCK_NAME} (Input/output error); check who owns it, "
        "or choose another --out (log.out_dir)"
    )
    assert "keeps no file locks" not in caplog.text


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
