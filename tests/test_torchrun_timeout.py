"""How long a process of a torchrun job waits for the others: LOFTUP_DIST_TIMEOUT, for
`loftup train` and `loftup upsample` alike, each with its own default."""

import contextlib
import re

import pytest
import torch

from loftup.errors import UsageError
from loftup.extract import meeting, torchrun
from loftup.extract.join import CONNECT
from processes import src_env
from test_torchrun_meeting import free_port


@pytest.fixture(autouse=True)
def _meeting_points_let_go(monkeypatch):
    """The meeting points rank 0 holds for the process's life are let go after each test."""
    monkeypatch.setattr(meeting, "_HELD", [])


@pytest.fixture
def joined(monkeypatch):
    """The keyword arguments ``init_distributed`` joins the group with (none joined here)."""
    import torch.distributed as dist

    calls = []
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # where torchrun's processes meet
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(meeting, "_meeting_point", lambda *a: dist.HashStore())  # no network
    # nor the watch's looks at MASTER_PORT, where none listens: their worker's connect failed
    # 2 s on, its C++ log in a later test's stderr
    monkeypatch.setattr(meeting, "Watch", lambda *args: contextlib.nullcontext())
    monkeypatch.setattr(meeting, "join_process_group", lambda b, **kw: calls.append(kw))
    return calls


def test_upsample_waits_a_day_or_loftup_dist_timeout(joined, monkeypatch):
    """upsample's shards end at different times before the last barrier: a day by default;
    LOFTUP_DIST_TIMEOUT, the training's variable, was not read (a hung rank held a job a day)."""
    monkeypatch.delenv("LOFTUP_DIST_TIMEOUT", raising=False)
    torchrun.init_distributed(torch.device("cpu"))
    monkeypatch.setenv("LOFTUP_DIST_TIMEOUT", " 90 ")
    torchrun.init_distributed(torch.device("cpu"))
    waits = [kw["store"].underlying_store.timeout.total_seconds() for kw in joined]
    assert waits == [86400, 90]  # the store's, once the group is joined
    # the group's own join waits seconds (gloo's connects, a try), not the collectives' day (a
    # process killed after it came: a day, Ctrl-C ignored, then torch's 45-line traceback)
    assert [kw["timeout"].total_seconds() for kw in joined] == [CONNECT] * 2


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "soon"])
def test_a_bad_loftup_dist_timeout_is_refused_before_upsample_joins_the_group(
    value, joined, monkeypatch
):
    monkeypatch.setenv("LOFTUP_DIST_TIMEOUT", value)
    with pytest.raises(UsageError) as e:
        torchrun.init_distributed(torch.device("cpu"))
    assert str(e.value) == (
        f"LOFTUP_DIST_TIMEOUT={value} is not a number of seconds > 0; set it to how long a "
        "process of a torchrun job may wait for the others (default 86400), or unset it"
    )
    assert joined == []


def test_upsample_that_waited_out_the_time_out_says_so_not_that_another_ended(monkeypatch):
    """With the wait now settable, a barrier that timed out (gloo's words) was told as 'another
    process of this run has ended ... its error says why': there was no such error."""
    from loftup.errors import LoftUpError

    monkeypatch.setenv("LOFTUP_DIST_TIMEOUT", "60")
    gloo = "[../gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 60000ms for recv"
    with pytest.raises(LoftUpError) as e, torchrun._with_the_others():
        raise RuntimeError(gloo)
    assert str(e.value) == (
        "no word from another process of this run for 60 s (LOFTUP_DIST_TIMEOUT): one of them "
        "hangs or is still working on its share; where that is expected, set "
        "LOFTUP_DIST_TIMEOUT=SECONDS"
    )
    with pytest.raises(LoftUpError, match="another process of this run has ended"):
        with torchrun._with_the_others():
            raise RuntimeError("Connection closed by peer [127.0.0.1]:1234")


def test_rank_and_world_size_without_torchrun_are_one_line_before_the_group(joined, monkeypatch):
    """RANK and WORLD_SIZE exported by a job script for another launcher ran `loftup upsample`
    into torch's traceback ("environment variable MASTER_ADDR expected, but not set")."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR")
    monkeypatch.delenv("MASTER_PORT")
    with pytest.raises(UsageError) as e:
        torchrun.init_distributed(torch.device("cpu"))
    assert str(e.value) == (
        "RANK and WORLD_SIZE are set (WORLD_SIZE=2) but MASTER_ADDR and MASTER_PORT not, so "
        "this process cannot meet the others; start the processes with torchrun, or unset RANK "
        "and WORLD_SIZE to run one process"
    )
    assert joined == []


@pytest.mark.parametrize("rank", ["0", "1"])  # rank 0 holds the meeting point, 1 calls it
def test_a_process_the_others_never_join_says_so_in_one_line_after_the_meeting_wait(
    monkeypatch, rank
):
    """RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT exported for another launcher, one process
    started: it waited the collectives' whole time-out (a day by default for upsample: the
    group's time-out covered the meeting too) and ended in torch's 44-line store traceback.
    The meeting has its own wait, LOFTUP_DIST_MEET_TIMEOUT, here 2 s while the collectives may
    wait 20; a free port, so nothing else answers."""
    import time

    from loftup.errors import LoftUpError

    port = free_port()
    env = {"RANK": rank, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for key, value in {
        **env,
        "LOFTUP_DIST_MEET_TIMEOUT": "2",
        "LOFTUP_DIST_TIMEOUT": "20",
    }.items():
        monkeypatch.setenv(key, value)
    start = time.monotonic()
    with pytest.raises(LoftUpError) as e:
        torchrun.init_distributed(torch.device("cpu"))
    assert time.monotonic() - start < 15  # the meeting's wait, not the collectives'
    came = (
        "only 1 of 2 came" if rank == "0" else "RANK=0, which holds the meeting point, never came"
    )
    assert str(e.value) == (
        f"this process (RANK={rank} of WORLD_SIZE=2) waited 2 s (LOFTUP_DIST_MEET_TIMEOUT) at "
        f"127.0.0.1:{port} for the others, and {came}; start every process with torchrun (or "
        "raise LOFTUP_DIST_MEET_TIMEOUT where some start late), or unset RANK and WORLD_SIZE to "
        "run one"
    )


def test_processes_that_came_wait_for_the_one_that_did_not_then_say_how_many_came(
    monkeypatch, capfd
):
    """Two processes of a world of three: rank 0 counts who came; rank 1, which reached rank 0,
    waited with it (the meeting is a count of arrivals, not only a connection to rank 0). Our
    lines alone: rank 1's store, told rank 0 had left, printed its C++ stack trace first."""
    import threading

    from loftup.errors import LoftUpError

    port = free_port()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    said = {}

    def come(rank):
        try:
            meeting._meeting_point(rank, 3, 3 if rank == 0 else 6, meeting=1)
        except LoftUpError as e:
            said[rank] = str(e)

    threads = [threading.Thread(target=come, args=(rank,)) for rank in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert said[0].startswith(
        "this process (RANK=0 of WORLD_SIZE=3) waited 3 s (LOFTUP_DIST_MEET_TIMEOUT) at "
        f"127.0.0.1:{port} for the others, and only 2 of 3 came; "
    ), said
    # rank 1 waits longer: rank 0, closing the meeting point, ends its wait
    assert said[1].startswith(
        f"this process (RANK=1 of WORLD_SIZE=3) came to 127.0.0.1:{port}, but RANK=0 left it "
        "before all came (its LOFTUP_DIST_MEET_TIMEOUT wait over, or stopped); start every process"
    ), said
    assert capfd.readouterr().err == ""


def test_the_meeting_wait_is_read_and_checked_before_the_others_are_met(joined, monkeypatch):
    monkeypatch.setenv("LOFTUP_DIST_MEET_TIMEOUT", "soon")
    with pytest.raises(UsageError) as e:
        torchrun.init_distributed(torch.device("cpu"))
    assert str(e.value) == (
        "LOFTUP_DIST_MEET_TIMEOUT=soon is not a number of seconds > 0; set it to how long a "
        "process of a torchrun job may wait for the others to come (default 600), or unset it"
    )
    assert joined == []


def test_training_meets_the_others_as_upsample_does(monkeypatch):
    """`loftup train` joined the group itself: the same exports ran it into torch's traceback."""
    from loftup.train.distributed import setup

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(UsageError, match="^RANK and WORLD_SIZE are set .WORLD_SIZE=2. but MASTER"):
        setup("cpu")


def test_training_waits_the_meeting_time_not_the_collectives_for_peers_that_never_come(
    monkeypatch,
):
    """`loftup train` joins through the same meeting: a lone rank of two ends after
    LOFTUP_DIST_MEET_TIMEOUT (here 2 s), not after the collectives' 30 minutes (here 20 s)."""
    import time

    from loftup.errors import LoftUpError
    from loftup.train.distributed import setup

    port = free_port()
    env = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "LOFTUP_DIST_MEET_TIMEOUT": "2", "LOFTUP_DIST_TIMEOUT": "20"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    start = time.monotonic()
    with pytest.raises(LoftUpError, match=r"waited 2 s \(LOFTUP_DIST_MEET_TIMEOUT\) at 127"):
        setup("cpu")
    assert time.monotonic() - start < 15


@pytest.mark.parametrize(
    "env, said",
    [
        ({"RANK": "x"}, "RANK=x is not an integer >= 0 and below WORLD_SIZE=2"),
        ({"RANK": "2"}, "RANK=2 is not an integer >= 0 and below WORLD_SIZE=2"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE=two is not an integer >= 1"),
        ({"LOCAL_RANK": "-1"}, "LOCAL_RANK=-1 is not an integer >= 0"),
        ({"MASTER_PORT": "http"}, "MASTER_PORT=http is not an integer >= 1 and below 65536"),
        ({"MASTER_PORT": "0"}, "MASTER_PORT=0 is not an integer >= 1 and below 65536"),
    ],
)
def test_torchruns_variables_that_are_no_such_number_are_one_line(env, said, tmp_path, capsys):
    """A job script's RANK=$SLURM_PROCID with the variable unset, or a typo: int()'s
    traceback (under `loftup upsample` and `loftup train`), and the error line itself failed
    on a WORLD_SIZE that is no number; a rank beyond the world waited for a meeting that could
    never be complete. Each is said, by both commands, before any work."""
    from loftup.cli import main
    from loftup.train.distributed import env_world, setup

    base = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29500"}  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**base, **env}.items():
            mp.setenv(key, value)
        fix = "; start the processes with torchrun (which sets it), or unset RANK and WORLD_SIZE"
        with pytest.raises(UsageError, match=f"^{re.escape(said + fix)}"):
            env_world() if "MASTER_PORT" not in env else setup("cpu")
        status = main(["upsample", str(tmp_path / "x.png"), "-o", str(tmp_path / "out")])
    assert status == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith(f"error: {said}{fix} to run one process")
    )


@pytest.mark.parametrize("use_libuv", ["0", "1"])
def test_a_meeting_port_in_use_is_one_line_naming_it(monkeypatch, use_libuv):
    """Two runs on one node with torchrun's default port (or a manual launch's): rank 0 of the
    second could not hold the meeting point, and ended in torch's store traceback (EADDRINUSE;
    the older server, USE_LIBUV=0, says "errno: 98 - Address already in use")."""
    import socket

    from loftup.errors import LoftUpError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "LOFTUP_DIST_MEET_TIMEOUT": "5",
               "USE_LIBUV": use_libuv}  # fmt: skip
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(LoftUpError) as e:
            torchrun.init_distributed(torch.device("cpu"))
    assert str(e.value) == (
        f"MASTER_PORT={port} is in use here (another run's?), so this process (RANK=0) cannot "
        f"hold the meeting point at 127.0.0.1:{port}; give this run's processes another "
        "MASTER_PORT (torchrun --master-port PORT, or --standalone on one node)"
    )


def test_a_second_meeting_at_a_store_that_outlived_the_first_waits_for_all_again(monkeypatch):
    """Under torchrun the processes meet at its agent's store, which outlives their meetings: a
    script that joins a group twice (upsample_folder on two folders) found the first meeting's
    "all came" there, and its second meeting was none."""
    import datetime
    import threading

    import torch.distributed as dist

    from loftup.errors import LoftUpError

    port = free_port()
    agent = dist.TCPStore("127.0.0.1", port, None, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=30))  # fmt: skip
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "TORCHELASTIC_USE_AGENT_STORE": "True"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    met = []
    threads = [
        threading.Thread(target=lambda r=r: met.append(meeting._meeting_point(r, 2, 10, 1)))
        for r in (0, 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(met) == 2  # both came, as clients of the agent's store
    with pytest.raises(LoftUpError, match="and only 1 of 2 came; "):
        meeting._meeting_point(0, 2, 1, 2)  # rank 1 does not come this time
    del agent


def test_rank_0_failing_a_later_meeting_closes_it_and_those_who_came_are_told_at_once(
    monkeypatch,
):
    """Rank 0 keeps the point it met at open for its later meetings; where one of those fails
    (here a rank does not come back, and rank 0 waits 1 s), the point still closes as rank 0
    gives up, so that a rank that came (and would wait 20 s) is told rank 0 left, at once."""
    import threading
    import time

    from loftup.errors import LoftUpError

    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    threads = [
        threading.Thread(target=meeting._meeting_point, args=(r, 3, 10, 1)) for r in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(meeting._HELD) == 1  # the first meeting passed, and rank 0 keeps its point
    said = {}

    def come(rank, seconds):
        try:
            meeting._meeting_point(rank, 3, seconds, 2)
        except LoftUpError as e:  # kept, as a caller that goes on may keep it (its traceback
            said[rank] = (str(e), time.monotonic() - start, e)  # holds the failed meeting)

    start = time.monotonic()
    threads = [threading.Thread(target=come, args=a) for a in ((0, 1), (1, 20))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert meeting._HELD == [] and said[0][0].endswith(WHY) and "only 2 of 3 came" in said[0][0]
    left = "but RANK=0 left it before all came (its LOFTUP_DIST_MEET_TIMEOUT wait over, or"
    assert left in said[1][0], said
    assert said[1][1] < 10, said


WHY = ("start every process with torchrun (or raise LOFTUP_DIST_MEET_TIMEOUT where some start "
       "late), or unset RANK and WORLD_SIZE to run one")  # fmt: skip


@pytest.mark.parametrize("use_libuv", ["0", "1"])
def test_the_meeting_point_honours_use_libuv_as_torchs_own_does(use_libuv, monkeypatch):
    """USE_LIBUV=0 (torch's way back to its older store server, where libuv's misbehaves) was
    ignored once the store was made here rather than by torch's env:// rendezvous."""
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
                       "USE_LIBUV": use_libuv}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    store = meeting._meeting_point(0, 1, 5, 1)
    assert store.libuvBackend is (use_libuv == "1")


_TWO_GROUPS = """
import os, sys, time, torch, torch.distributed as dist
from loftup.extract import meeting as mt, torchrun as tr
rank, joins = int(os.environ["RANK"]), []
destroy, join = dist.destroy_process_group, mt.join_process_group
def slow_destroy():  # rank 1 comes to the next meeting while rank 0 still leaves this group
    if rank == 0:
        time.sleep(3)
    destroy()
def slow_join(*args, **kwargs):  # rank 1 joins the second group first
    joins.append(1)
    if rank == 0 and len(joins) == 2:
        time.sleep(2)
    join(*args, **kwargs)
dist.destroy_process_group, mt.join_process_group = slow_destroy, slow_join
for meeting in (1, 2):
    with tr.process_group(torch.device("cpu"), 2):
        print("meeting", meeting, "sum", tr.summed([rank + 1], 2)[0], flush=True)
"""


# 13 s: slow; processes that join groups one after another are in the default suite:
# test_upsample_torchrun.py (each rank runs four commands in one torchrun job)
@pytest.mark.slow
def test_processes_started_by_hand_join_two_groups_one_after_the_other(tmp_path):
    """Two processes started with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (no torchrun)
    that join a group twice (upsample_folder on two folders), rank 0 slower to leave the first
    and to join the second: rank 1 counted itself in at the first meeting point as rank 0 closed
    it, and was told rank 0 had left; and gloo read the first group's addresses from the store
    (rank 0's old one: connection refused). Both meetings now pass, with the sum of the two."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": src_env()["PYTHONPATH"],
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
           "LOFTUP_DIST_MEET_TIMEOUT": "60", "LOFTUP_DIST_TIMEOUT": "60"}  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TWO_GROUPS],
            env={**env, "RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert out.split("\n")[:2] == ["meeting 1 sum 3", "meeting 2 sum 3"], (out, err[-2000:])
