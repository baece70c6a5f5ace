"""The look at a folder's lock without taking it (:func:`loftup.train.run_lock.check_not_held`,
the demo's up-front checks): it took a shared lock of the lock file, so a run starting during
the look was refused, naming the note a run that ended left in the file; and it let go of the
lock to open the file, so another thread of this process that took the lock in that moment
lost it to the next process. Now asked with F_GETLK, which takes no lock and tells the
holder, under the mark of this process's runs."""

from __future__ import annotations

import os
import socket
import sys
import threading

import pytest

from loftup.errors import LoftUpError
from loftup.train import lock_refusal, run_lock
from loftup.train.run_lock import LOCK_NAME, check_not_held, folder_lock
from test_train_lock_same_process import another_process_can_lock
from train_fixtures import held_elsewhere

pytest.importorskip("fcntl")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="F_GETLK's struct: Linux")


def test_the_holder_is_named_not_the_note_of_a_run_that_ended(tmp_path):
    """A run that ended left its note; another holds the lock before it wrote its own."""
    (tmp_path / LOCK_NAME).write_text(f"process 999999 on {socket.gethostname()}\n")
    with held_elsewhere(tmp_path / LOCK_NAME, note=None) as pid:
        with pytest.raises(LoftUpError) as looked:
            check_not_held(tmp_path)
        with pytest.raises(LoftUpError) as taken:
            with folder_lock(tmp_path):
                pass
    for e in (looked, taken):
        said = f"in use by another loftup train run (process {pid} on {socket.gethostname()}); "
        assert said in str(e.value)


def test_a_note_of_another_host_is_named(tmp_path):
    """Through a network file system, the holder's process id says nothing here: its note."""
    with held_elsewhere(tmp_path / LOCK_NAME, "process 12 on node7\n"):
        with pytest.raises(LoftUpError, match=r"\(process 12 on node7\); wait"):
            check_not_held(tmp_path)


class _ClosingOs:
    """``os`` for lock_refusal, but for ``close``: before the look closes its descriptor (its
    look done), another process tries to take the lock (``tried``: whether it got it)."""

    def __init__(self, folder):
        self.folder, self.tried = folder, []

    def __getattr__(self, name):
        return getattr(os, name)

    def close(self, fd):
        self.tried.append(another_process_can_lock(self.folder))
        os.close(fd)


def test_a_run_starting_during_the_look_takes_the_lock(tmp_path, monkeypatch):
    (tmp_path / LOCK_NAME).write_text("process 999999 on gone\n")  # a run that ended
    closing = _ClosingOs(tmp_path)
    monkeypatch.setattr(lock_refusal, "os", closing)
    check_not_held(tmp_path)
    assert closing.tried == [True]


def test_a_lock_another_thread_takes_during_the_look_is_kept(tmp_path, monkeypatch):
    """The look, past the check of this process's runs, opens the lock file as another thread
    takes the lock: the look's close let go of it, and another process took the folder. That
    thread waits for the look now (given 0.5 s, it took the lock within it before)."""
    (tmp_path / LOCK_NAME).touch()
    took, looked, result = threading.Event(), threading.Event(), {}
    real = run_lock.held_by

    def other_thread():
        with folder_lock(tmp_path):
            took.set()
            looked.wait(timeout=60)
            result["kept"] = not another_process_can_lock(tmp_path)

    thread = threading.Thread(target=other_thread)

    def look_as_a_run_starts(path, kind):
        thread.start()
        took.wait(timeout=0.5)
        return real(path, kind)

    monkeypatch.setattr(run_lock, "held_by", look_as_a_run_starts)
    try:
        check_not_held(tmp_path)
    finally:
        looked.set()
        thread.join(timeout=60)
    assert result == {"kept": True}
