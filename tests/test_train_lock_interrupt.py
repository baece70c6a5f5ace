"""The train folder lock (:func:`loftup.train.run_lock.folder_lock`) interrupted wherever it
is (an error of the file system, Ctrl-C, a signal said as an exception at any line): it leaves
no descriptor open, so no lock that no run holds, and no mark of a run of this process. In a
notebook either kept the folder locked until a restart, every other run told to wait for a run
that was not running."""

import errno
import inspect
import os
import sys

import pytest

from loftup import file_lock
from loftup.errors import LoftUpError
from loftup.train import run_lock
from loftup.train.run_lock import LOCK_NAME, folder_lock
from test_train_lock_same_process import another_process_can_lock

pytest.importorskip("fcntl")


def interrupt_at(function, line_text: str | None = None):
    """A trace function raising KeyboardInterrupt (Ctrl-C) in ``function`` at the line whose
    text holds ``line_text``, or on its return where None."""
    lines, first = inspect.getsourcelines(function)
    at = None if line_text is None else first + next(
        i for i, line in enumerate(lines) if line_text in line
    )  # fmt: skip

    def local(frame, event, arg):
        if (event, frame.f_lineno) in {("line", at), ("return", None if at else frame.f_lineno)}:
            raise KeyboardInterrupt
        return local

    return lambda frame, event, arg: local if frame.f_code is function.__code__ else None


def run_interrupted(tracer, folder):
    sys.settrace(tracer)
    try:
        with pytest.raises(KeyboardInterrupt), folder_lock(folder):
            pass
    finally:
        sys.settrace(None)


def test_an_error_after_the_lock_is_taken_leaves_it_to_other_processes(tmp_path, monkeypatch):
    """The check that the file locked is still the one at its path came after the code that
    closes the descriptor on an error: an NFS "stale file handle" there left the lock held by
    no run, for as long as the process lived."""
    real = os.lstat

    def stale(path, *args, **kwargs):
        if str(path).endswith(LOCK_NAME):
            raise OSError(errno.ESTALE, "Stale file handle")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", stale)
    with pytest.raises(OSError, match="Stale file handle"), folder_lock(tmp_path):
        pass
    monkeypatch.undo()
    assert another_process_can_lock(tmp_path)
    assert run_lock._HELD == {}


def test_ctrl_c_as_the_lock_is_handed_over_leaves_it_to_other_processes(tmp_path):
    """Ctrl-C as the descriptor holding the lock was returned to the code that closes it at the
    run's end: neither closed it."""
    run_interrupted(interrupt_at(run_lock._take, "return fd, locked"), tmp_path)
    assert another_process_can_lock(tmp_path)


def test_ctrl_c_as_the_folder_is_marked_held_leaves_no_mark(tmp_path):
    """Ctrl-C just after the folder was marked held by a run of this process, before the code
    that drops the mark: every later run of the process was refused, "in use by another loftup
    train run (process N, this one)", for as long as it lived."""
    run_interrupted(interrupt_at(run_lock._reserve), tmp_path)
    with folder_lock(tmp_path):  # the next run of the same process
        assert not another_process_can_lock(tmp_path)


def test_a_refused_run_keeps_the_mark_of_the_run_that_holds_the_folder(tmp_path):
    """A run of this process refused (the folder held by another of its runs) drops no mark
    but its own: the holder's stays, and a third run is refused too."""
    with folder_lock(tmp_path):
        for _ in range(2):
            with pytest.raises(LoftUpError, match="this one"), folder_lock(tmp_path):
                pass


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_an_error_after_the_lock_files_open_closes_it(tmp_path, monkeypatch):
    """An error after the lock file's open (making it blocking again) left its descriptor
    open."""

    def failing(fd, blocking):
        raise OSError(errno.EIO, "Input/output error")

    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "set_blocking", failing)
    with pytest.raises(OSError, match="Input/output error"):
        file_lock.open_lock_file(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT, "runs")
    assert len(os.listdir("/proc/self/fd")) == before
