"""tests/as_nobody.py's as_nobody, the call made as another user in a forked child: a child
that ends before it answers, or cannot take the ids, fails the call saying so (it answered
"", which a test comparing refusals could take for one), and a hung one is killed in time,
with what it started."""

from __future__ import annotations

import os
import select
import signal
import time

import pytest

from as_nobody import as_nobody
from test_forked import _gone
from test_forking_python import _until_gone

pytestmark = pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)


@pytest.mark.parametrize(
    "call, status",
    [
        pytest.param(lambda: os.kill(os.getpid(), signal.SIGKILL), -9, id="killed"),
        pytest.param(lambda: os._exit(3), 3, id="exited"),
    ],
)
def test_a_child_that_ends_before_it_answers_fails_the_call_with_its_status(call, status):
    with pytest.raises(AssertionError, match=f"ended with status {status} before it said"):
        as_nobody(call)


def test_ids_that_cannot_be_taken_fail_the_call_saying_why():
    with pytest.raises(
        AssertionError, match=f"could not take the ids of uid 65534, gid {2**40}: OverflowError"
    ):
        as_nobody(lambda: None, gid=2**40)


def _hangs(w: int) -> None:
    """A call that starts a grandchild (in its process group), says both pids on ``w`` and
    sleeps an hour; ended by SIGALRM after 12 s where as_nobody kills nothing (the test then
    fails on the time, rather than waits the hour)."""
    grandchild = os.fork()
    if grandchild == 0:  # pragma: no cover - the grandchild
        time.sleep(3600)
        os._exit(0)
    signal.alarm(12)
    os.write(w, f"{os.getpid()} {grandchild}".encode())
    time.sleep(3600)


def test_a_hung_call_fails_at_its_deadline_and_is_killed_with_its_process_group():
    """It slept a minute, which waitpid waited out: it passed with nothing killed, and what the
    call started was not looked at."""
    r, w = os.pipe()
    grandchild = None
    try:
        start = time.monotonic()
        with pytest.raises(AssertionError, match=r"had not ended after 2 s \(killed\)"):
            as_nobody(lambda: _hangs(w), timeout=2)
        took = time.monotonic() - start
        assert select.select([r], [], [], 0)[0], "the call had not started in 2 s"
        child, grandchild = map(int, os.read(r, 64).split())
        assert took < 10, f"as_nobody returned after {took:.1f} s: its child was not killed"
        assert _gone(child)
        assert _until_gone(grandchild), f"the call's grandchild {grandchild} outlived it"
    finally:
        os.close(r)
        os.close(w)
        if grandchild is not None and not _gone(grandchild):
            os.kill(grandchild, signal.SIGKILL)
