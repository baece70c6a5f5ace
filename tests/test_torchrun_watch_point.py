"""The watch over gloo's connects (loftup.extract.watch) when the meeting point stops (its
machine lost: the connection stays open, unanswered), and the watch's end, which gives back the
signals it took. The ranks and the point are test_torchrun_watch.py's."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from loftup.extract.pulse import BEAT_EVERY
from processes import src_env
from test_torchrun_join import ended, sees_keys
from test_torchrun_watch import (  # noqa: F401 - a fixture
    agent_process,
    said_last,
    start,
    waiting_for_the_killed,
)


@sees_keys
# no signal: slow (11 s); a stopped point named in seconds is in the default suite by its Ctrl-C
# case and by test_torchrun_looks.py
@pytest.mark.parametrize("sent", [pytest.param(None, marks=pytest.mark.slow), signal.SIGINT])
def test_a_meeting_point_that_stops_answering_ends_the_join_in_seconds(
    sent,
    agent_process,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    """The point's machine lost (its process stopped: the connection stays open) while the
    survivor is in gloo's connect (600 s a try here): the watch's looks, on the shared store
    client (the meeting's 600 s), hung, and with them the end of the block, Ctrl-C included.
    It now names the point that does not answer, SILENT_FOR s on; Ctrl-C, sent once a look
    hangs, ends it at once."""
    held, point = agent_process
    port = point.port
    ranks = [start(r, port, tmp_path, CONNECT="600") for r in (0, 1)]
    with ended(*ranks):
        waits = waiting_for_the_killed(point, ranks)
        assert ranks[waits].stdout.readline() == "connecting\n"
        held.send_signal(signal.SIGSTOP)
        if sent is not None:  # (once a look has found the point stopped, and hangs)
            time.sleep(3 * BEAT_EVERY)
            ranks[waits].send_signal(sent)
        _, err = ranks[waits].communicate(timeout=60)  # (not 600 s)
    if sent is not None:
        assert (ranks[waits].returncode, err.splitlines()) == (130, [f"[rank {waits}] interrupted"])
        return
    assert ranks[waits].returncode == 2, err[-2000:]
    said_last(
        err, waits, port,
        rf"the meeting point at 127\.0\.0\.1:{port} has not answered for \d+ s before all "
        r"joined the process group \(its machine lost or stopped, or the network to it cut\); "
        "start the run again",
    )  # fmt: skip


_BLOCK = """
import asyncio, datetime, os, signal, sys, time
import torch.distributed as dist
from loftup.cli.common import owning_the_process
from loftup.extract import pulse, watch
port, held, case = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
store = dist.TCPStore("127.0.0.1", port, None, is_master=False,
                      timeout=datetime.timedelta(seconds=30))
group = pulse.Rendezvous(store, "k", 0, 2, time.monotonic() + 600, "met", None)
this = os.getpid()
if case == "ctrl-c":
    with owning_the_process():
        w = watch.Watch(group, ("127.0.0.1", port), "k", 0, 2)
        try:
            with w:
                os.kill(held, signal.SIGSTOP)  # the point stopped: the watch's look hangs
                time.sleep(3 * pulse.BEAT_EVERY)
                def interrupted(timeout=None):  # Ctrl-C as the end waits for the watch's thread
                    os.kill(this, signal.SIGINT)
                    time.sleep(60)
                w.thread.join = interrupted
        except KeyboardInterrupt:
            print("wakeup fd", signal.set_wakeup_fd(-1), "sockets", w.wake.fileno(),
                  w.woken.fileno())
else:
    got = []
    async def main():
        loop = asyncio.get_running_loop()
        for number in (signal.SIGUSR1, signal.SIGUSR2):
            loop.add_signal_handler(number, got.append, number.name)
        with owning_the_process(), watch.Watch(group, ("127.0.0.1", port), "k", 0, 2):
            os.kill(this, signal.SIGUSR1)
            time.sleep(3 * pulse.BEAT_EVERY)
            os.kill(this, signal.SIGUSR2)  # as the block ends
        await asyncio.sleep(0.5)
        print("asyncio took", *sorted(got))
    asyncio.run(main())
"""


@pytest.mark.parametrize(
    "case, said",
    [("ctrl-c", "wakeup fd -1 sockets -1 -1"), ("asyncio", "asyncio took SIGUSR1 SIGUSR2")],
)
def test_the_watchs_end_gives_the_signals_back(
    case,
    said,
    agent_process,  # noqa: F811 - the fixture imported above
):
    """Ctrl-C while the block's end waits for the watch's thread (it waited for a look that
    hangs, the point stopped, up to LOOK_WAIT s; that is the looks' worker's now) left the
    watch's socket as the wakeup fd (signals then went nowhere; a socket closed later, its fd
    number reused, got them); a signal as the block ends reaches asyncio's wakeup fd (the one
    set before), as one in the block does."""
    held, point = agent_process
    env = src_env()
    run = subprocess.run(
        [sys.executable, "-c", _BLOCK, str(point.port), str(held.pid), case], env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.stdout.splitlines() == [said], run.stdout + run.stderr[-2000:]
    assert run.returncode == 0, run.stderr[-2000:]
