"""`loftup train` on the command line: what it says at the end of a run, and where."""

import os
import pty
import sys

import pytest

from loftup.cli import main
from train_fixtures import tiny_overrides, write_sa1b

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def test_a_finished_run_ends_with_status_0_on_a_terminal_that_is_gone(tmp_path, monkeypatch):
    """A terminal gone without a hang-up (its window closed, the SSH session ended, the run
    not stopped by SIGHUP) fails every write with EIO: the summary printed after the run
    raised, and a traceback and status 1 stood for a run whose files were all written."""
    data = write_sa1b(tmp_path / "sa1b", 4, size=56)
    parent, child = pty.openpty()
    os.close(parent)  # the terminal is gone: writes to it fail with EIO
    gone = open(child, "w", buffering=1)  # line-buffered, as Python's stdout at a terminal
    monkeypatch.setattr(sys, "stdout", gone)
    try:
        with pytest.raises(OSError):
            print("to the gone terminal")  # the premise: printing there fails
        status = main(["train", *tiny_overrides(data, tmp_path / "run", steps=1)])
    finally:
        monkeypatch.undo()
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, child)  # its buffer flushes somewhere, not to the gone terminal
        os.close(fd)
        gone.close()
    assert status == 0
    assert (tmp_path / "run" / "final").is_dir() and (tmp_path / "run" / "summary.json").is_file()
