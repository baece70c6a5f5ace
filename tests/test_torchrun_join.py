"""From the meeting into the process group (loftup.extract.pulse): processes that all came to
the meeting, one of which then dies, hangs, or joins late. Each rank is its own process, as
under torchrun; rank 0 is `loftup upsample` itself where it can be."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from loftup.extract.join import (
    CONNECT,
    join_failed,
    join_wait,
    refused_by,
    set_collectives_timeout,
)
from loftup.extract.point import ANSWER
from loftup.extract.pulse import SILENT_FIRST, SILENT_FOR, Silence
from processes import src_env
from test_torchrun_meeting import client_of_rank_0s_point, free_port, start_rank

# these two see rank 0 wait in the group's join by the keys of its store (torch 2.4 has no
# TCPStore.list_keys; the behaviour is the same there, unseen)
sees_keys = pytest.mark.skipif(
    not hasattr(dist.TCPStore, "list_keys"), reason="this torch's TCPStore has no list_keys"
)

_RANK = """
import os, signal, sys, time, torch
from loftup.extract import meeting, torchrun
sys.argv[1:] = ["upsample", os.environ["IMAGE"], "-o", os.environ["OUT"]]  # (rank 0's command)
join, how = meeting.join_process_group, os.environ["HOW"]
def stand_in(*args, **kwargs):  # once all came
    if how == "killed":
        while meeting._HELD and not any(  # (RANK=0: once the other waits in the group's join)
            k.startswith("default_pg/0/1/") for k in meeting._HELD[0].list_keys()
        ):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ["LATE"]) if how == "late" else 600)  # ("hangs": alive, stuck)
    join(*args, **kwargs)
if how == "slowreach" and os.environ["RANK"] == os.environ.get("STAND_IN", "1"):
    from loftup.extract import point
    reach, looks = point.reach, []
    def slow_reach(*args, **kwargs):  # any look for the point after the meeting's first is as
        looks.append(1)  # slow as a resolver whose first nameserver is down, or a lost SYN
        time.sleep(float(os.environ["LATE"]) if len(looks) > 1 else 0)
        return reach(*args, **kwargs)
    point.reach = slow_reach
elif os.environ["RANK"] == os.environ.get("STAND_IN", "1"):
    meeting.join_process_group = stand_in
with torchrun.process_group(torch.device("cpu"), 2):
    print("sum", torchrun.summed([int(os.environ["RANK"]) + 1], 2)[0], flush=True)
"""


def stand_in(rank: int, port: int, tmp_path: Path, how: str, **env) -> subprocess.Popen:
    """RANK=``rank`` of WORLD_SIZE=2 at 127.0.0.1:``port`` with `loftup upsample`'s command
    line, which meets the others and then, as RANK=1 (or ``STAND_IN``), is "killed", "hangs" or
    joins "late"."""
    env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "PYTHONPATH": src_env()["PYTHONPATH"],
           "IMAGE": str(tmp_path / "x.png"), "OUT": str(tmp_path / "out"), "HOW": how,
           "LOFTUP_DIST_MEET_TIMEOUT": "600", **env}  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", _RANK], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def both_join_and_sum(ranks: list[subprocess.Popen]) -> None:
    outs = [p.communicate(timeout=120) for p in ranks]
    for p, (out, err) in zip(ranks, outs):
        assert p.returncode == 0, err[-2000:]
        assert out.splitlines() == ["sum 3"], err[-2000:]


@contextlib.contextmanager
def ended(*ranks: subprocess.Popen):
    """The ranks killed and reaped on the way out, whatever the test saw (their pipes closed;
    one the test already read to its end is left as it is)."""
    try:
        yield
    finally:
        for rank in ranks:
            rank.kill()
            if rank.returncode is None:
                rank.communicate()


# 10 s: slow; a rank killed after the meeting named, in the default suite:
# test_rank_0_killed_after_the_meeting_it_holds_is_named_at_once
@pytest.mark.slow
def test_a_rank_killed_after_the_meeting_is_named_by_the_others_within_seconds(tmp_path):
    """Rank 1 comes, and is killed (SIGKILL) before it joins the group: rank 0 waited in the
    group's rendezvous for all that was left of the meeting's wait (here 600 s; a day before
    the meeting had its own), then said in one line that one of them ended. It now hears rank
    1 go silent, and says so, naming it, SILENT_FOR seconds later."""
    port = free_port()
    rank_0 = start_rank(0, port, tmp_path, meet_seconds=600)
    rank_1 = stand_in(1, port, tmp_path, "killed")
    with ended(rank_0, rank_1):
        rank_1.communicate(timeout=120)
        _, err = rank_0.communicate(timeout=120)  # not the meeting's 600 s
    assert rank_1.returncode == -signal.SIGKILL
    assert rank_0.returncode == 2, err[-2000:]
    assert err.splitlines() == [  # (and not torch's store's lines of its time-out)
        f"[rank 0] error: this process (RANK=0 of WORLD_SIZE=2) met the others at 127.0.0.1:"
        f"{port}, but RANK=1 went silent (no sign of life for {SILENT_FOR:g} s) before joining "
        "the process group: killed (or its machine lost), or ended by an error of its own, "
        "which says why; start the run again"
    ]


@sees_keys
def test_rank_0_killed_after_the_meeting_it_holds_is_named_at_once(tmp_path):
    """Started by hand (no torchrun's agent), RANK=0 holds the meeting point; killed once all
    came, it takes the point with it: rank 1's store, waiting there for rank 0's address, said
    so with its C++ stack trace (40 lines), then our line, which said it waited the rest of the
    meeting's wait (600 s) and named no one. The connection rank 1 keeps to the point tells it
    first (mostly: a look under way as RANK=0 goes still fails in the store, with its trace)."""
    port = free_port()
    rank_0 = stand_in(0, port, tmp_path, "killed", STAND_IN="0")
    rank_1 = start_rank(1, port, tmp_path, meet_seconds=600)
    with ended(rank_0, rank_1):
        _, err = rank_1.communicate(timeout=120)
    assert rank_0.returncode == -signal.SIGKILL
    assert rank_1.returncode == 2, err[-2000:]
    # (where a look at the store was under way as RANK=0 went, the store's trace is above it)
    assert err.splitlines()[-1] == (
        f"[rank 1] error: this process (RANK=1 of WORLD_SIZE=2) met the others at 127.0.0.1:"
        f"{port}, but RANK=0, which holds the meeting point, ended before all joined the "
        "process group (killed, or an error of its own, which says why); start the run again"
    )


@sees_keys
def test_ctrl_c_while_a_rank_waits_to_join_the_group_ends_it_at_once(tmp_path):
    """All came, and rank 1 hangs (alive) before it joins: rank 0 waits in the group's
    rendezvous, where SIGINT waited for the rest of the meeting's wait (here 600 s; at least
    10 s) in torch's store. It ends rank 0 as Ctrl-C ends any command (130, "interrupted")."""
    port = free_port()
    rank_0 = start_rank(0, port, tmp_path, meet_seconds=600)
    rank_1 = stand_in(1, port, tmp_path, "hangs")
    with ended(rank_0, rank_1):
        point = client_of_rank_0s_point(port, rank_0)
        # rank 0 has put its address for the group (under the meeting's prefix): it waits there
        while not any(k.startswith("default_pg/0/1/") for k in point.list_keys()):
            assert rank_0.poll() is None and rank_1.poll() is None, rank_0.communicate()
            time.sleep(0.05)
        rank_0.send_signal(signal.SIGINT)
        _, err = rank_0.communicate(timeout=60)  # not the meeting's 600 s
    assert rank_0.returncode == 130, err
    assert err.splitlines() == ["[rank 0] interrupted"]


# 13 s: slow; a late live rank not taken for dead, in the default suite:
# test_a_live_rank_slow_to_reach_the_meeting_point_again_is_not_taken_for_dead
@pytest.mark.slow
def test_a_live_rank_that_joins_later_than_the_silence_is_waited_for(tmp_path):
    """Rank 1 comes, then joins the group SILENT_FOR + 3 s later (a slow import, a loaded
    machine): it beats while it is late, so rank 0 waits for it, and both join and sum."""
    port = free_port()
    ranks = [stand_in(r, port, tmp_path, "late", LATE=str(SILENT_FOR + 3)) for r in (0, 1)]
    both_join_and_sum(ranks)


# 15 s: slow; a rank the others wait for in vain said in one line, in the default suite:
# test_torchrun_timeout.py::test_a_process_the_others_never_join_says_so_in_one_line_...
@pytest.mark.slow
def test_a_live_rank_that_never_joins_ends_the_others_wait_in_one_line(tmp_path):
    """Rank 1 comes, then hangs (alive, beating) before it joins: rank 0 waits what is left
    of the meeting's wait (here 5 s; at least 10 s) and says so in one line; torch's store
    printed its own time-out above it."""
    port = free_port()
    rank_0 = start_rank(0, port, tmp_path, meet_seconds=5)
    rank_1 = stand_in(1, port, tmp_path, "hangs")
    with ended(rank_0, rank_1):
        _, err = rank_0.communicate(timeout=120)
    assert rank_0.returncode == 2, err[-2000:]
    assert err.splitlines() == [
        f"[rank 0] error: this process (RANK=0 of WORLD_SIZE=2) met the others at 127.0.0.1:"
        f"{port}, but not all of them joined the process group within 10 s (one alive but "
        "stuck before it joins?); start the run again"
    ]


def test_a_live_rank_slow_to_reach_the_meeting_point_again_is_not_taken_for_dead(tmp_path):
    """Rank 1 closed its connection to the meeting point once all came and reached it again to
    join, each try allowed point.ANSWER (5 s) for a name look-up and a connect, and it beat
    only after: where that took SILENT_FOR + 1 s, rank 0 said RANK=1 "went silent" and ended a
    healthy run. The connection is kept from the meeting, and the first beat comes at once."""
    port = free_port()
    ranks = [stand_in(r, port, tmp_path, "slowreach", LATE=str(SILENT_FOR + 1)) for r in (0, 1)]
    both_join_and_sum(ranks)


def test_a_rank_that_never_beat_is_given_longer_than_one_that_stopped():
    """Each rank is timed from this one's first look: one that had not beaten yet (still
    reaching the meeting point, a store call under way) was taken for gone SILENT_FOR s later,
    as one whose beat stopped; it now has SILENT_FOR + point.ANSWER."""
    store = dist.HashStore()
    silence = Silence(store, "m", 0, 3)
    store.set("m/pulse/1", "1")  # rank 1 beats (then stops); rank 2 has not beaten yet
    assert silence.gone(now=0.0) == []
    assert silence.gone(now=SILENT_FOR + 0.1) == [1]
    assert SILENT_FIRST >= SILENT_FOR + ANSWER
    assert silence.gone(now=SILENT_FIRST - 1) == [1]
    assert silence.gone(now=SILENT_FIRST + 0.1) == [1, 2]  # (a look each BEAT_EVERY)


_MET = "this process (RANK=0 of WORLD_SIZE=2) met the others at 127.0.0.1:1, but"


def test_a_failed_join_says_what_it_waited_and_tells_a_refusal_from_no_answer():
    """gloo's connects failing said "within 599 s" after 6 s (the meeting's wait, not the
    time spent), and "one ended after it came" alike for a refused connection and a timeout."""
    refused = "Gloo connectFullMesh failed with [pair.cc:152] timed out connecting: SO_ERROR: "
    refused += "Connection refused, remote=[127.0.0.1]:2"
    assert str(join_failed(RuntimeError(refused), _MET, 6.2)) == (
        f"{_MET} another process of the group refused (or dropped) this one's connection after "
        f"6 s ({refused}): it ended after it came (its own error says why, or it was killed); "
        "start the run again"
    )
    unanswered = "Gloo connectFullMesh failed with [pair.h:311] Connect timeout [none]"
    assert str(join_failed(RuntimeError(unanswered), _MET, 25.3)) == (
        f"{_MET} not all of them joined the process group: this one's connects to them went "
        f"unanswered for 25 s ({unanswered}): one ended after it came (its own error says why, "
        "or it was killed), or hangs; start the run again"
    )


def _gloos(family: int, host: str, port: int) -> bytes:
    """An address as gloo puts it at the store (a sockaddr among other bytes)."""
    sockaddr = family.to_bytes(2, sys.byteorder) + port.to_bytes(2, "big")
    if family == socket.AF_INET6:
        sockaddr += bytes(4)  # (its flow info)
    return b"\x01\x00" + sockaddr + socket.inet_pton(family, host) + bytes(8) + b"\x05"


@pytest.mark.parametrize(
    "family, host", [(socket.AF_INET, "10.0.0.7"), (socket.AF_INET6, "fe80::7")]
)
def test_a_refused_connection_names_the_rank_whose_address_refused_it(family, host):
    """A rank whose connect was refused said "another process of the group refused", where
    each rank's address at the store says which: the one at gloo's remote=[HOST]:PORT."""
    addresses = {r: _gloos(family, host, 40000 + r) for r in (1, 2, 3)}
    addresses[4] = _gloos(family, "127.0.0.1" if family == socket.AF_INET else "::1", 40002)
    refused = f"Gloo connectFullMesh failed with [pair.cc:152] Connection refused, remote=[{host}]:"
    assert refused_by(refused + "40002", addresses) == 2
    as_read = int.from_bytes((40003).to_bytes(2, "big"), sys.byteorder)  # (as gloo prints it)
    assert refused_by(f"{refused}{as_read}$1", addresses) == 3
    assert refused_by(refused + "40009", addresses) is None  # (no rank's: none named)
    assert refused_by("Connection refused", addresses) is None
    said = str(join_failed(RuntimeError(refused + "40002"), _MET, 3.2, ended=2))
    assert said == (
        f"{_MET} RANK=2 ended before all joined the process group: it refused (or dropped) this "
        f"one's connection after 3 s ({refused}40002); it was killed, or its own error says why; "
        "start the run again"
    )


def test_gloos_connects_wait_seconds_not_the_meetings_minutes():
    """A rank killed as the others connected to it held them in gloo's C++ (Ctrl-C ignored)
    for several times what was left of the meeting's wait: gloo tries each connect again."""
    assert join_wait("gloo", 590, 86400) == datetime.timedelta(seconds=CONNECT)
    assert CONNECT <= 10
    assert join_wait("nccl", 590, 86400) == datetime.timedelta(seconds=590)


@pytest.fixture
def detail():
    """TORCH_DISTRIBUTED_DEBUG=DETAIL for the test (torch reads it at import)."""
    was = dist.get_debug_level()
    dist.set_debug_level(dist.DebugLevel.DETAIL)
    yield
    dist.set_debug_level(was)


def test_under_torch_distributed_debug_detail_the_collectives_keep_their_wait(detail):
    """DETAIL wraps the group, where torch's _set_pg_timeout only warned ("Set timeout is now
    only supported for either nccl or gloo") and set nothing: upsample's last sum waited the
    join's seconds, not a day. The wrapper's inner group is set; its helper group checks each
    collective with the join's time-out, so the join is given the collectives' there."""
    assert join_wait("gloo", 590, 86400) == datetime.timedelta(seconds=86400)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=5))  # fmt: skip
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            set_collectives_timeout(86400)
        gloo = dist.distributed_c10d._get_default_group()._get_backend(torch.device("cpu"))
        assert gloo.wrapped_pg.options._timeout == datetime.timedelta(seconds=86400)
    finally:
        dist.destroy_process_group()
