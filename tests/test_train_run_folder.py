"""A run's folder is locked while the run writes there: a second run on it is refused before it
writes, in another process or the same one, and a folder is removed only by the run that made
it and wrote nothing.
"""

import os
import subprocess
import sys

import pytest
import torch

from loftup.train import train
from train_fixtures import tiny_config as tiny

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
    pytest.mark.usefixtures("one_thread"),
]


def test_a_second_run_on_a_folder_in_use_is_refused_before_it_writes_there(sa1b, tmp_path):
    """Two runs on one --out (a job launched twice, a requeued job while the first one still
    runs) overwrote each other's checkpoint, metrics.csv and final/ without a word. The run
    writing there holds a lock (here another process holds it, as a run does); a second run
    is refused, naming the holder and the fix, before it writes anything; once the holder
    has gone (however it ended), a run goes on there."""
    import subprocess
    import sys

    from loftup.errors import LoftUpError
    from loftup.train.run_lock import LOCK_NAME

    out = tmp_path / "run"
    out.mkdir()
    hold = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.lockf(fd, fcntl.LOCK_EX); os.write(fd, b'process 4242 on elsewhere'); "
        "print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out / LOCK_NAME)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(LoftUpError) as e:
            train(tiny(sa1b, out, 1, 2))
    finally:
        holder.communicate("")  # the holder ends
    assert str(e.value) == (
        f"{out} is in use by another loftup train run (process 4242 on elsewhere); wait for it "
        "to end (then --resume continues it), or choose another --out (log.out_dir)"
    )
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    assert train(tiny(sa1b, out, 1, 2)).steps == 2


def test_the_folder_is_locked_before_the_run_looks_at_what_it_holds(sa1b, tmp_path, monkeypatch):
    """The lock was taken after the models were built (SAM's pass too, hours on a big set):
    a run that ended there meanwhile was overwritten on the strength of the earlier look (its
    checkpoint read as absent). The look at the checkpoint now happens under the lock."""
    from loftup.train import loop, run_lock

    out = tmp_path / "run"
    looked = []
    real = loop.checkpoint_to_resume

    def look(cfg, out_dir, *rest):
        st = os.stat(out_dir)
        looked.append((st.st_dev, st.st_ino, run_lock.LOCK_NAME) in run_lock._HELD)
        return real(cfg, out_dir, *rest)

    monkeypatch.setattr(loop, "checkpoint_to_resume", look)
    train(tiny(sa1b, out, 1, 1))
    assert looked == [True]


def test_a_folder_is_removed_only_by_the_run_that_made_it_and_wrote_nothing(tmp_path, monkeypatch):
    """A run refused at the lock removed the folder it had made, which the run holding the
    lock was using (it took the lock between the refused run's mkdir and lock); a run that
    made its folder and failed before writing removes it."""
    from contextlib import ExitStack, contextmanager

    from loftup.errors import LoftUpError
    from loftup.train import run_lock
    from loftup.train.distributed import DistInfo
    from loftup.train.run_lock import lock_run_folder

    @contextmanager
    def taken_meanwhile(out_dir, made, another, kind):  # another run locked the folder just made
        (out_dir / run_lock.LOCK_NAME).touch()  # its lock's file
        raise LoftUpError(f"{out_dir} is in use by another loftup train run")
        yield

    with monkeypatch.context() as m:
        m.setattr(run_lock, "folder_lock", taken_meanwhile)
        with pytest.raises(LoftUpError), ExitStack() as refused:
            lock_run_folder(tmp_path / "raced", DistInfo(device=torch.device("cpu")), refused)
    assert (tmp_path / "raced").is_dir()  # the other run's now: not removed

    info = DistInfo(device=torch.device("cpu"))
    out = tmp_path / "new" / "run"
    with ExitStack() as first:
        lock_run_folder(out, info, first)  # made here and locked: the holder
        with pytest.raises(LoftUpError, match="in use by another"), ExitStack() as second:
            lock_run_folder(out, info, second)
        assert out.is_dir()  # the refused one removed nothing
        (out / "config.yaml").write_text("x")  # the holder writes
    assert out.is_dir()  # it wrote: kept
    (out / "config.yaml").unlink()
    with ExitStack() as held:
        lock_run_folder(tmp_path / "other", info, held)
    assert not (tmp_path / "other").exists()  # made, nothing written: removed
    with ExitStack() as held:  # an empty folder that was there is the user's: kept
        lock_run_folder(out, info, held)
    assert out.is_dir()


def test_a_second_run_of_the_same_process_is_refused_and_leaves_the_first_its_lock(tmp_path):
    """A POSIX lock is the process's: a second run in the same process (threads, a notebook)
    got it again, and its end released the first run's lock for any other process."""
    from loftup.errors import LoftUpError
    from loftup.train.run_lock import LOCK_NAME, folder_lock

    hold = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
        "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    )

    def other_process_can_lock() -> bool:
        return (
            subprocess.run([sys.executable, "-c", hold, str(tmp_path / LOCK_NAME)]).returncode == 0
        )

    with folder_lock(tmp_path):
        with pytest.raises(LoftUpError, match=r"in use by another loftup train run \(process"):
            with folder_lock(tmp_path):
                pass
        assert not other_process_can_lock()  # the refused one did not release it
    assert other_process_can_lock()
    with folder_lock(tmp_path):  # and the folder is free again for this process
        pass


def test_a_file_system_without_locks_is_said_once_and_the_run_goes_on(
    tmp_path, monkeypatch, caplog
):
    """On ENOLCK (NFS without its lock service) the run went on with a debug line only: a
    second run there is not refused, and the user is now told so."""
    import errno
    import fcntl

    from loftup.train.run_lock import folder_lock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    with caplog.at_level("WARNING", logger="loftup.train"), folder_lock(tmp_path):
        pass
    assert "keeps no file locks (No locks available): a second loftup train run" in caplog.text
