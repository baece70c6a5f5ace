"""The torchrun meeting's record (loftup.extract.claims), in one process: threads as ranks, and
the store's own calls interleaved where a race must be forced. Each test is a way in which
processes that were not all of one run, or not all alive, were let into its group."""

from __future__ import annotations

import datetime
import socket
import sys
import threading

import pytest

from loftup.errors import LoftUpError
from loftup.extract import claims, meeting
from test_torchrun_meeting import free_port


@pytest.fixture
def port(monkeypatch):
    """A free MASTER_PORT on 127.0.0.1, rank 0's point let go after the test."""
    monkeypatch.setattr(meeting, "_HELD", [])
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(value := free_port()))
    return value


def come(said: dict, rank: int, world: int, seconds: float) -> threading.Thread:
    """RANK=``rank`` of ``world`` at the first meeting, in a thread: ``said[rank]`` is "met" or
    its error's line."""

    def run():
        try:
            meeting._meeting_point(rank, world, seconds, "0/1")
            said[rank] = "met"
        except LoftUpError as e:
            said[rank] = str(e)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def rank_0s_point(port: int):
    """A client of rank 0's point once rank 0 has recorded its run there."""
    import torch.distributed as dist

    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            break
        except OSError:
            threading.Event().wait(0.05)
    look = dist.TCPStore("127.0.0.1", port, None, is_master=False,
                         timeout=datetime.timedelta(seconds=10))  # fmt: skip
    while claims.peek(look, "loftup_meet/0/1/run") == "":
        threading.Event().wait(0.05)
    return look


def test_a_rank_of_another_command_is_refused_at_once_not_counted_in(port, monkeypatch):
    """Run A's rank 0 waits for its rank 1 (forgotten); run B, started by hand on the same
    port, has its rank 0 refused (port in use) and its rank 1 reached A's point, was counted
    in, and joined A's group: both runs ended with exit status 0, each with half its files."""
    said = {}
    rank_0 = come(said, 0, 2, 60)  # run A, `loftup upsample inA -o outA`
    rank_0s_point(port)
    monkeypatch.setattr(sys, "argv", [*sys.argv, "inB"])  # run B's command
    come(said, 1, 2, 20).join(30)
    assert said[1] == (
        f"this process (RANK=1 of WORLD_SIZE=2) came to 127.0.0.1:{port} where processes "
        "started with another command meet (another run's, started by hand with the same "
        "MASTER_PORT, or one of this run's started with other arguments): give each run its own "
        "MASTER_PORT (torchrun --master-port PORT), and start every process of a run with the "
        "same command"
    )
    rank_0.join(30)  # A's rank 0 is told at once (it waited out its meeting to say "1 of 2")
    assert not rank_0.is_alive() and said[0] == (
        f"this process (RANK=0 of WORLD_SIZE=2) came to 127.0.0.1:{port} and a process came "
        "there with another command or WORLD_SIZE and was refused (one of this run's started "
        "with other arguments or another WORLD_SIZE, or another run's started by hand with the "
        "same MASTER_PORT); give each run its own MASTER_PORT (torchrun --master-port PORT), and "
        "start every process of a run with the same command"
    )


class CommandChangesAsTheRunIsRecorded:
    """The store with sys.argv changed just as the call that records the run returns: the
    moment the test above changes it, run B's command, while run A's rank 0 comes."""

    def __init__(self, store, change):
        self.store, self.change = store, change

    def compare_set(self, key, expected, desired):
        value = self.store.compare_set(key, expected, desired)
        if key.endswith("/run"):
            self.change()
        return value

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_process_is_compared_with_the_run_it_recorded(monkeypatch):
    """The run was read from the command twice, to record it and to compare the recorded one
    with it: where the command changed in between (the test above, 1 run in 10-20 on a loaded
    machine), RANK=0 refused its own run and closed the point (run B's rank 1 then waited its
    whole meeting to say RANK=0 never came)."""
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", free_port(), None, is_master=True,
                          wait_for_workers=False, timeout=datetime.timedelta(seconds=10))  # fmt: skip
    run_b = [*sys.argv, "inB"]
    recorded = CommandChangesAsTheRunIsRecorded(
        store, lambda: monkeypatch.setattr(sys, "argv", run_b)
    )
    assert meeting._come(recorded, "loftup_meet/0/1", 0, 2, 0.0, None) == ("timeout", 1)
    assert not store.check(["loftup_meet/0/1/refused"])  # (no one was told of a refusal)


def test_a_launchers_local_rank_argument_is_no_other_command(monkeypatch):
    """torch.distributed.launch (and DeepSpeed's launcher) give each process its own
    --local-rank=N: a script calling loftup.extract under it had its second rank refused as
    another run's. torchrun's agent names its run (TORCHELASTIC_RUN_ID) too, but for "none", its
    default, which told no run from another."""
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(sys, "argv", ["user.py", "--local-rank=0", "out"])
    first = claims.identity(2)
    for argv in (["user.py", "--local-rank=1", "out"], ["user.py", "--local_rank", "1", "out"]):
        monkeypatch.setattr(sys, "argv", argv)
        assert claims.identity(2) == first
    monkeypatch.setattr(sys, "argv", ["user.py", "--local-rank=1", "other"])
    assert claims.identity(2) != first  # another command still is one
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's default (no --rdzv-id)
    assert claims.identity(2) != first  # tells no run from another: the command still does
    monkeypatch.setattr(sys, "argv", ["user.py", "--local-rank=1", "out"])
    assert claims.identity(2) == first
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job7")
    assert claims.identity(2) == f"{first} run=job7"


@pytest.mark.parametrize("first, second", [(2, 3), (3, 2)])
def test_a_world_size_that_differs_from_rank_0s_is_named_at_once(first, second, port):
    """Ranks of one run with different WORLD_SIZEs (a job script's typo): with rank 0's 2 and
    rank 1's 3, rank 1 waited for a rank 2; with 3 and 2, rank 1 counted in as the second of 2
    and rank 0 waited for a third. Each waited out the meeting, saying only how many came."""
    said = {}
    rank_0 = come(said, 0, first, 3)
    rank_0s_point(port)
    come(said, 1, second, 20).join(30)
    assert said[1].startswith(
        f"this process (RANK=1 of WORLD_SIZE={second}) came to 127.0.0.1:{port} where the "
        f"processes that came first have WORLD_SIZE={first}: start every process of a run with "
        "one WORLD_SIZE, and give each run"
    )
    rank_0.join(30)


def test_a_restarted_rank_takes_the_claim_of_the_one_killed_while_it_waited(port):
    """World 3: rank 1 killed while it waited (SIGHUP, SIGKILL: no Python `finally`), started
    again; then rank 2 comes. A count of arrivals counted rank 1 twice: 3 of 3 without rank 2,
    which was refused as one too many, and ranks 0 and 1 waited a day in the group for it."""

    said = {}
    rank_0 = come(said, 0, 3, 20)
    killed = rank_0s_point(port)
    assert claims.claim(killed, "loftup_meet/0/1", 1, "host:123:dead")  # then never left
    again = come(said, 1, 3, 20)  # started again
    come(said, 2, 3, 20).join(30)
    again.join(30)
    rank_0.join(30)
    assert said == {0: "met", 1: "met", 2: "met"}


class Interleaved:
    """The store as RANK=0 sees it, with ``then()`` run right after its lock on RANK=1's claim
    (or, ``before`` it, right before): the moment in which RANK=1's wait runs out."""

    def __init__(self, store, then, before=False):
        self.store, self.then, self.before = store, then, before

    def compare_set(self, key, expected, desired):
        on_rank_1 = key.endswith("/rank/1") and desired.startswith(claims.LOCK)
        if on_rank_1 and self.before:
            self.then()
        value = self.store.compare_set(key, expected, desired)
        if on_rank_1 and not self.before:
            self.then()
        return value

    def __getattr__(self, name):
        return getattr(self.store, name)


@pytest.mark.parametrize("leaves_first", [False, True])
def test_a_rank_whose_wait_runs_out_as_rank_0_closes_the_meeting_is_in_or_out_not_both(
    leaves_first,
):
    """World 2: rank 1's wait runs out just as rank 0 sees both claims. With a count, rank 1
    took itself off after rank 0 had said "all came": rank 1 said "only 2 of 2 came" and left,
    and rank 0 went on into the group and waited a day for it. Now rank 1 either leaves before
    rank 0 locks its claim (rank 0 lets go of its own lock, and waits on) or finds its claim
    locked and stays (both meet)."""
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", free_port(), None, is_master=True,
                          wait_for_workers=False, timeout=datetime.timedelta(seconds=10))  # fmt: skip
    key, left = "loftup_meet/0/1", []
    assert claims.claim(store, key, 0, "r0") and claims.claim(store, key, 1, "r1")
    rank_0 = Interleaved(
        store, lambda: left.append(claims.leave(store, key, 1, "r1")), leaves_first
    )
    assert claims.close_if_all_came(rank_0, key, 2) == 2
    assert left == [leaves_first]
    if leaves_first:
        assert not store.check([f"{key}/all"])
        assert claims.claims(store, key, 2) == ["r0", ""]  # rank 0 waits on, unlocked
        assert claims.claim(store, key, 1, "r1 again")  # so a rank 1 that comes is counted
    else:
        assert claims.wait_for_all(store, key, 1, 2, "r1", 0.0, lambda: False, False) == "all"
        assert claims.wait_for_all(store, key, 0, 2, "r0", 0.0, lambda: False, True) == "all"


def test_a_rank_started_twice_is_told_that_another_took_its_place(port):
    """Two live processes as RANK=1 of one run (the same command typed in two terminals): a
    count took both, and the group had two of rank 1. The one that came first is told that
    another came as its rank; the run meets with the other; one more after that is refused."""

    said, twice = {}, {}
    rank_0 = come(said, 0, 3, 20)
    look = rank_0s_point(port)
    first = come(twice, 1, 3, 20)
    while claims.peek(look, "loftup_meet/0/1/rank/1") == "":
        threading.Event().wait(0.05)
    second = come(said, 1, 3, 20)
    first.join(30)
    assert twice[1].startswith(
        f"this process (RANK=1 of WORLD_SIZE=3) came to 127.0.0.1:{port} and another process "
        "came there as RANK=1 while this one waited"
    )
    come(said, 2, 3, 20).join(30)
    second.join(30)
    rank_0.join(30)
    assert said == {0: "met", 1: "met", 2: "met"}
    come(twice, 2, 3, 20).join(30)
    assert "after all 3 had come there" in twice[2]


@pytest.mark.parametrize("host", ["192.0.2.1", "nonexistent.invalid"])
def test_rank_0_with_a_master_addr_that_is_not_its_machine_is_told_at_once(host, monkeypatch):
    """Rank 0 holds the meeting point at MASTER_ADDR: with an address of another machine (or
    none), it waited, printed torch's 45 lines, and said RANK=0 never came."""
    monkeypatch.setattr(meeting, "_HELD", [])
    monkeypatch.setenv("MASTER_ADDR", host)
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    with pytest.raises(LoftUpError) as e:
        meeting._meeting_point(0, 2, 600, "0/1")
    assert str(e.value).startswith(
        "MASTER_ADDR must name this machine (RANK=0's), which holds the meeting point: "
        f"MASTER_ADDR={host} is "
    )


def test_a_rank_with_a_master_addr_that_resolves_to_nothing_is_told_at_once(monkeypatch):
    """It looked for the name for the whole meeting wait (10 minutes) before saying so."""
    monkeypatch.setenv("MASTER_ADDR", "nonexistent.invalid")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    with pytest.raises(LoftUpError) as e:
        meeting._meeting_point(1, 2, 600, "0/1")
    assert str(e.value).startswith(
        "this process (RANK=1 of WORLD_SIZE=2) cannot meet the others: "
        "MASTER_ADDR=nonexistent.invalid is no address here ("
    )


class CtrlCAsTheClaimReturns:
    """The store with Ctrl-C arriving just as its call that claims RANK=1 returns."""

    def __init__(self, store):
        self.store = store

    def compare_set(self, key, expected, desired):
        value = self.store.compare_set(key, expected, desired)
        if key.endswith("/rank/1") and desired not in ("", expected):
            raise KeyboardInterrupt
        return value

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_ctrl_c_as_the_claim_returns_leaves_no_claim_behind():
    """SIGINT landing as the count's add returned left the count one too high (the `finally`
    did not know it had been counted): a ghost that made a later meeting whole without a rank."""
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", free_port(), None, is_master=True,
                          wait_for_workers=False, timeout=datetime.timedelta(seconds=10))  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        meeting._come(CtrlCAsTheClaimReturns(store), "loftup_meet/0/1", 1, 3, 1e18, None)
    assert claims.peek(store, "loftup_meet/0/1/rank/1") == ""
