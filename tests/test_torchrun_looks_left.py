"""A rank whose look at the meeting point is left under way (loftup.extract.looks): the point,
held by a process of its own as torchrun's agent holds it, stopped (its machine lost) while
RANK=1 waits there for RANK=0. Ctrl-C and SIGTERM (torchrun's stop) end it at once, and a rank
that said the point has not answered ends with that one line, whatever the point does as it
ends. Each rank is `loftup upsample`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from processes import src_env
from test_torchrun_join import ended
from test_torchrun_meeting import wait_until_counted_in
from test_torchrun_watch import agent_process, start  # noqa: F401 - a fixture

_RANK = """
import os, sys
from loftup.cli import main
from loftup.extract import meeting
meeting.SILENT_FOR = float(os.environ.get("SILENT_FOR", meeting.SILENT_FOR))
sys.exit(main(["upsample", os.environ["IMAGE"], "-o", os.environ["OUT"]]))
"""


@pytest.mark.parametrize(
    ("stop", "after", "status", "said"),
    [
        (signal.SIGINT, 1.0, 130, "interrupted"),
        # 4 s: slow; the way out at a stopped point, SIGINT's, in the default suite:
        # this test's [2-1.0-130-interrupted] case (SIGINT, 1 s after the point stopped)
        pytest.param(signal.SIGTERM, 1.0, 143, "terminated (SIGTERM)", marks=pytest.mark.slow),
        (signal.SIGINT, 0.1, 130, "interrupted"),  # (its look not seen unanswered yet)
    ],
)
def test_a_signal_at_a_meeting_point_that_stopped_ends_the_rank_at_once(
    agent_process,  # noqa: F811 - the fixture imported above
    tmp_path,
    stop,
    after,
    status,
    said,
):
    """The way out left the rank's claim with one more call to the point, queued behind the
    look that hung and timed as the meeting's are: the end waited SILENT_FOR + BEAT_EVERY s
    (6.5 s) for a point that could not answer. A point not answering is now left as it is, and
    the last call is given BEAT_EVERY s (twice) where the look has not yet been seen hung."""
    held, point = agent_process
    rank = start(1, point.port, tmp_path, _RANK)
    with ended(rank):
        wait_until_counted_in(point, 1, rank.poll)
        held.send_signal(signal.SIGSTOP)
        time.sleep(after)
        sent = time.monotonic()
        rank.send_signal(stop)
        _, err = rank.communicate(timeout=60)
        took = time.monotonic() - sent
    assert (rank.returncode, err) == (status, f"[rank 1] {said}\n"), err[-2000:]
    assert took < 3.5, took  # (at once: not the 6.5 s of a last call timed as the others)


# 4 s: slow; the same end a moment later, in the default suite: its lag 0.0 case
@pytest.mark.parametrize("lag", [0.0, pytest.param(0.05, marks=pytest.mark.slow)])
def test_a_rank_that_said_the_point_has_not_answered_ends_with_that_line(
    agent_process,  # noqa: F811 - the fixture imported above
    tmp_path,
    lag,
):
    """The rank said the point had not answered and returned its status, its look's worker
    still in torch's C++ at the stopped point: the point killed as the rank ended (torchrun
    ending the job) returned that call into a thread Python no longer ran, and the rank
    aborted (SIGABRT, "terminate called without an active exception") after its line."""
    held, point = agent_process
    rank = start(1, point.port, tmp_path, _RANK, SILENT_FOR="1")
    with ended(rank):
        wait_until_counted_in(point, 1, rank.poll)
        held.send_signal(signal.SIGSTOP)
        line = rank.stderr.readline()
        time.sleep(lag)
        held.kill()
        rest = rank.stderr.read()
        rank.wait(timeout=60)
    assert rank.returncode == 2, (line, rest[-2000:])
    assert "has not answered for" in line and rest == "", (line, rest[-2000:])


_CALLER = """
import sys, threading
from loftup.cli import main
from loftup.extract.looks import Looks
class Held:
    def get(self, key):
        threading.Event().wait()  # (a point that stopped)
Looks(("127.0.0.1", 1), Held()).start(lambda client: client.get("k"))
print("returned", main(["upsample", sys.argv[1], "-o", sys.argv[2]]), flush=True)
"""


def test_a_python_callers_own_look_left_under_way_is_left_to_it(tmp_path):
    """The command's end, which ends the process where a look of its own is left under way,
    ended a Python caller's process for the caller's own look."""
    done = subprocess.run(
        [sys.executable, "-c", _CALLER, str(tmp_path / "none.png"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
        env=src_env(),
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "returned 2\n"), done.stderr[-2000:]
