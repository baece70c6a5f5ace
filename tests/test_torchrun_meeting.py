"""`loftup upsample` started as one rank of a torchrun-style job whose peers do not come, run as
a user runs it (its own process, the job's environment variables): what it prints, and how
Ctrl-C during the meeting ends it; and a process that comes to a meeting all came to already."""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from processes import src_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_rank(rank: int, port: int, tmp_path: Path, meet_seconds: int) -> subprocess.Popen:
    """``loftup upsample`` as RANK=``rank`` of WORLD_SIZE=2, meeting at 127.0.0.1:``port``."""
    Image.new("RGB", (32, 32), (10, 200, 30)).save(tmp_path / "x.png")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("LOCAL_RANK", "TORCHELASTIC_USE_AGENT_STORE", "TORCH_CPP_LOG_LEVEL")
    }
    env.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               LOFTUP_DIST_MEET_TIMEOUT=str(meet_seconds),
               PYTHONPATH=src_env()["PYTHONPATH"])  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "loftup", "upsample", str(tmp_path / "x.png"), "-o",
         str(tmp_path / "out")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("rank", [0, 1])  # rank 0 holds the meeting point, 1 looks for it
def test_a_lone_rank_says_why_in_one_line_without_torchs_store_logs(rank, tmp_path):
    """Before our line, torch's C++ store printed its connection retries and their stack
    traces (41 lines for a lone rank 1) or its wait's time-outs (rank 0): the reason was at the
    bottom of a screen of noise."""
    port = free_port()
    proc = start_rank(rank, port, tmp_path, meet_seconds=2)
    _, err = proc.communicate(timeout=120)
    came = "only 1 of 2 came" if rank == 0 else "RANK=0, which holds the meeting point, never came"
    assert proc.returncode == 2
    assert err.splitlines() == [
        f"[rank {rank}] error: this process (RANK={rank} of WORLD_SIZE=2) waited 2 s "
        f"(LOFTUP_DIST_MEET_TIMEOUT) at 127.0.0.1:{port} for the others, and {came}; start "
        "every process with torchrun (or raise LOFTUP_DIST_MEET_TIMEOUT where some start late), "
        "or unset RANK and WORLD_SIZE to run one"
    ]


def client_of_rank_0s_point(port: int, rank_0: subprocess.Popen):
    """A store client of the meeting point ``rank_0`` holds at 127.0.0.1:``port``, once it
    listens."""
    import torch.distributed as dist

    while True:
        assert rank_0.poll() is None, rank_0.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            break
        except OSError:
            time.sleep(0.05)
    return dist.TCPStore("127.0.0.1", port, None, is_master=False,
                         timeout=datetime.timedelta(seconds=30))  # fmt: skip


def wait_until_counted_in(store, rank, what) -> None:
    """Until RANK=``rank`` has claimed its rank at the meeting point ``store`` (its first
    meeting, of a first start), or has ended (``what`` says why)."""
    while store.compare_set(f"loftup_meet/0/1/rank/{rank}", "", "") == b"":
        assert what() is None, "the rank ended before it came to the meeting"
        time.sleep(0.05)


@pytest.mark.parametrize("rank", [0, 1])
def test_ctrl_c_while_a_rank_waits_for_the_others_ends_it_at_once(rank, tmp_path):
    """The meeting's wait (LOFTUP_DIST_MEET_TIMEOUT, 10 minutes by default) was torch's store's,
    in C++, which let Ctrl-C wait until its end: a user who started one rank by mistake could
    not stop it. Here the rank waits at a meeting of 600 s, and SIGINT ends it as Ctrl-C ends
    any command (130, "interrupted"). Rank 1 meets at a point this test holds; rank 0 holds
    its own, which the test reads."""
    import torch.distributed as dist

    port = free_port()
    held = None
    if rank == 1:  # the point rank 0 would hold
        held = dist.TCPStore("127.0.0.1", port, None, is_master=True, wait_for_workers=False,
                             timeout=datetime.timedelta(seconds=30))  # fmt: skip
    proc = start_rank(rank, port, tmp_path, meet_seconds=600)
    try:
        if held is None:
            held = client_of_rank_0s_point(port, proc)
        wait_until_counted_in(held, rank, proc.poll)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # not the meeting's 600 s
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.splitlines() == [f"[rank {rank}] interrupted"]
    if rank == 1:  # it left its claim: another process may take RANK=1 now
        assert held.compare_set("loftup_meet/0/1/rank/1", "", "") == b""


def test_a_process_that_comes_after_all_came_is_refused_not_let_into_the_group(monkeypatch):
    """Two runs started by hand with one MASTER_PORT: the second run's rank 0 cannot hold the
    meeting point (said), but its rank 1 reached the first run's, counted itself in after both
    of that run had (3 of 2), found "all came" there, and joined the first run's group as a
    second rank 1 (gloo then waited on a peer that was not its own, up to a day). It is told,
    in one line, what happened; the first run's ranks met as before."""
    import threading

    from loftup.errors import LoftUpError
    from loftup.extract import meeting

    port = free_port()
    monkeypatch.setattr(meeting, "_HELD", [])
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    met = []
    threads = [
        threading.Thread(target=lambda r=r: met.append(meeting._meeting_point(r, 2, 20, "0/1")))
        for r in (0, 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(met) == 2
    with pytest.raises(LoftUpError) as e:
        meeting._meeting_point(1, 2, 20, "0/1")  # the other run's rank 1, at its first meeting
    assert str(e.value) == (
        f"this process (RANK=1 of WORLD_SIZE=2) came to 127.0.0.1:{port} after all 2 had come "
        "there: another run's processes meet at that port too (both started by hand with one "
        "MASTER_PORT), or one of this run's was started twice; give each run its own "
        "MASTER_PORT (torchrun --master-port PORT)"
    )


def test_a_rank_whose_wait_ran_out_and_that_comes_again_is_counted_once(monkeypatch):
    """A world of three, rank 0 waiting 20 s: rank 1's own wait (1 s) runs out, and it is
    started again; then rank 2 comes. Rank 1's first coming stayed counted: its second made
    the count whole without rank 2 (whose group then waited a day for rank 2's address), and
    rank 2 was refused as one too many. A process that leaves a meeting before all came takes
    itself off the count (on Ctrl-C too: the test above reads the count after it)."""
    import threading

    from loftup.errors import LoftUpError
    from loftup.extract import meeting

    monkeypatch.setattr(meeting, "_HELD", [])
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    met, said = {}, {}

    def come(rank, seconds):
        try:
            met[rank] = meeting._meeting_point(rank, 3, seconds, "0/1")
        except LoftUpError as e:
            said[rank] = str(e)

    rank_0 = threading.Thread(target=come, args=(0, 20))
    rank_0.start()
    come(1, 1)
    assert "and only 2 of 3 came; " in said.pop(1)  # rank 0 and itself, when its wait ran out
    others = [threading.Thread(target=come, args=(rank, 20)) for rank in (1, 2)]
    for t in others:
        t.start()
    for t in [rank_0, *others]:
        t.join(30)
    assert said == {} and sorted(met) == [0, 1, 2]


def test_a_program_at_the_port_that_drops_the_connection_is_one_line(tmp_path):
    """Rank 0 says at once that MASTER_PORT is in use here; the other ranks reach what holds
    it, which drops each connection of torch's store: they printed its retries (291 lines of
    C++ logs) for the whole meeting wait (10 minutes by default, Ctrl-C ignored), then our
    line. Here a listener that closes each connection it accepts, and the default wait."""
    import threading

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    squatter.settimeout(0.1)
    port = squatter.getsockname()[1]
    over = threading.Event()

    def drop():
        while not over.is_set():
            try:
                squatter.accept()[0].close()
            except TimeoutError:
                pass

    dropping = threading.Thread(target=drop)
    dropping.start()
    proc = start_rank(1, port, tmp_path, meet_seconds=600)
    try:
        _, err = proc.communicate(timeout=120)  # not the meeting's 600 s
    finally:
        proc.kill()
        over.set()
        dropping.join()
        squatter.close()
    assert proc.returncode == 2, err[-2000:]
    [line] = err.splitlines()
    assert line.startswith(
        f"[rank 1] error: this process (RANK=1) reached 127.0.0.1:{port}, but no meeting point "
        "answered there ("
    )
    assert line.endswith(
        f"): RANK=0 left it as this one came, or another program holds MASTER_PORT={port}; "
        "free it, or give this run's processes another MASTER_PORT (torchrun --master-port PORT)"
    )
