"""The worker of the looks at the meeting point (loftup.extract.looks.Looks): one at a time on
its one client, whatever Ctrl-C interrupts as it starts, and one of its own in a forked
child."""

from __future__ import annotations

import os
import threading
import time
import warnings

import pytest

from loftup.extract import looks
from loftup.extract.looks import Looks
from test_torchrun_looks import _no_workers, _workers, point_here  # noqa: F401 - a fixture


class _OneAtATime:
    """A client that counts the calls made on it while another is under way (torch's takes
    one at a time)."""

    def __init__(self):
        self.busy, self.overlaps = threading.Lock(), 0

    def call(self, n: int) -> int:
        if not self.busy.acquire(blocking=False):
            self.overlaps += 1
            return n
        try:
            time.sleep(0.01)
            return n
        finally:
            self.busy.release()


def test_ctrl_c_as_a_worker_starts_leaves_that_worker_alone_on_the_client(monkeypatch):
    """Ctrl-C in Thread.start (its wait for the new thread to run: the worker runs) left the
    looks without a worker, as they thought: the next look (the meeting's way out leaves its
    claim) started a second one, and both made calls on the one client at once."""
    _no_workers()
    client, start = _OneAtATime(), threading.Thread.start

    def started_then_interrupted(thread):
        monkeypatch.setattr(threading.Thread, "start", start)
        start(thread)
        raise KeyboardInterrupt  # (as Ctrl-C there raises it)

    monkeypatch.setattr(threading.Thread, "start", started_then_interrupted)
    many = Looks(("127.0.0.1", 1), client)
    with pytest.raises(KeyboardInterrupt):
        many.start(lambda client: client.call(0))
    handed = [many.start(lambda client, n=n: client.call(n)) for n in range(1, 20)]
    assert all(look.wait(10, 0.05) is None for look in handed)
    assert [look.value() for look in handed] == list(range(1, 20))
    assert (_workers(), client.overlaps) == (1, 0)


def test_a_worker_that_did_not_start_leaves_the_next_look_to_start_one(monkeypatch):
    """A thread that could not start (none left to this process, or Ctrl-C before it ran)
    leaves its look unmade, none under way, and the next look starts a worker."""
    many = Looks(("127.0.0.1", 1), _OneAtATime())
    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", lambda thread: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            many.start(lambda client: client.call(0))
    assert not looks.in_flight()
    look = many.start(lambda client: client.call(1))
    assert look.wait(10, 0.05) is None and look.value() == 1


def test_a_forked_child_makes_its_looks_on_a_worker_and_client_of_its_own(
    point_here,  # noqa: F811 - the fixture imported above
):
    """A child forked while the parent's worker was alive thought it had one (there is none
    in a child): its looks were never made."""
    _, where = point_here
    many = Looks(where)
    assert many.start(lambda client: client.check(["k"])).wait(10, 0.05) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (fork with threads running)
        pid = os.fork()
    if pid == 0:  # the child: its look made, or not, is its status
        try:
            look = many.start(lambda client: client.check(["k"]))
            os._exit(0 if look.wait(3, 0.05) is None and look.answered() else 1)
        finally:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
