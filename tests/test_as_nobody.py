"""tests/as_nobody.py's as_nobody, the call made as another user in a forked child: a child
that ends before it answers, or cannot take the ids, fails the call saying so (it answered
"", which a test comparing refusals could take for one), and a hung one is killed in time."""

from __future__ import annotations

import os
import signal
import time

import pytest

from as_nobody import as_nobody
from test_forked import _gone

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


def test_a_hung_call_fails_at_its_deadline_and_is_killed():
    r, w = os.pipe()
    try:
        with pytest.raises(AssertionError, match=r"had not ended after 0.5 s \(killed\)"):
            as_nobody(lambda: (os.write(w, str(os.getpid()).encode()), time.sleep(60)), timeout=0.5)
        os.set_blocking(r, False)
        pid = int(os.read(r, 32))  # (written at once: it had half a second)
    finally:
        os.close(r)
        os.close(w)
    assert _gone(pid)
