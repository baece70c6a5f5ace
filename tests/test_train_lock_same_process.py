"""A train run's folder lock (:func:`loftup.train.run_lock.folder_lock`) is a POSIX lock, which
is the process's: a second run in the same process would be granted it again, and closing its
descriptor would release the first run's lock for every other process. Such a run is refused
however it comes: from another thread at the same moment, or under another path of the folder.
"""

import subprocess
import sys
import threading

import pytest

from loftup.errors import LoftUpError
from loftup.train import run_lock
from loftup.train.run_lock import LOCK_NAME, folder_lock

fcntl = pytest.importorskip("fcntl")

#: a process that tries the lock of the file argv[1] once: exit status 0 where it got it
TRY_LOCK = (
    "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
    "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
)


def another_process_can_lock(folder) -> bool:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(folder / LOCK_NAME)]).returncode == 0


def test_a_second_thread_is_refused_while_the_first_opens_the_lock_file(tmp_path, monkeypatch):
    """The check "held by this process?" and the mark came on either side of the lock file's
    open, which lets other threads run (a slow network file system makes it long): a second
    thread that looked meanwhile was granted the folder too, and the first to end released
    the lock the other relied on. Here the first thread's open waits until the second has
    tried: the second is refused, and the first then holds the folder alone."""
    opening, tried = threading.Event(), threading.Event()
    real = run_lock.open_lock_file

    def slow_open(*args):  # the first open waits for the second thread's try
        if not opening.is_set():
            opening.set()
            assert tried.wait(timeout=60)
        return real(*args)

    monkeypatch.setattr(run_lock, "open_lock_file", slow_open)
    first = {}

    def first_run():
        try:
            with folder_lock(tmp_path):
                first["held"] = not another_process_can_lock(tmp_path)
        except BaseException as e:  # noqa: BLE001 - said by the test below
            first["error"] = e

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert opening.wait(timeout=60)
        with pytest.raises(LoftUpError, match=r"in use by another loftup train run \(process"):
            with folder_lock(tmp_path):
                pass
    finally:
        tried.set()
        thread.join(timeout=60)
    assert first == {"held": True}


def test_the_folder_under_another_path_is_refused_in_the_same_process(tmp_path):
    """This process's runs were known by the folder's path, but the lock is the file's: the
    same folder under another path (a bind mount, a disk that ignores case, a folder renamed
    meanwhile) was granted a second time, and the end of that run released the first's lock.
    The folder is known by its device and inode."""
    first, renamed = tmp_path / "exp", tmp_path / "exp-renamed"
    first.mkdir()
    with folder_lock(first):
        first.rename(renamed)
        with pytest.raises(LoftUpError, match=r"in use by another loftup train run \(process"):
            with folder_lock(renamed):
                pass
        assert not another_process_can_lock(renamed)  # the first run's lock is kept
    assert another_process_can_lock(renamed)
