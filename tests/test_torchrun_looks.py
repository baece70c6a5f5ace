"""The looks at the meeting point (loftup.extract.point's client, its one factory) that are not
the meeting's own: the watch's (loftup.extract.watch) and those of the main thread before
gloo connects (loftup.extract.looks); and the threads and clients all looks are made on."""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from loftup.extract import looks, point, pulse, watch
from loftup.extract.looks import Looks, Timed
from test_torchrun_join import ended, sees_keys
from test_torchrun_meeting import free_port, wait_until_counted_in
from test_torchrun_watch import agent_process, said_last, start  # noqa: F401 - a fixture


@pytest.mark.parametrize("use_libuv", ["0", "1"])
def test_the_watchs_own_client_honours_use_libuv_as_the_meetings_does(use_libuv, monkeypatch):
    """The watch made its client beside the meeting's, without USE_LIBUV (torch's way back to
    its older store, where libuv's misbehaves): its looks went through libuv all the same."""
    monkeypatch.setenv("USE_LIBUV", use_libuv)
    made, client = [], point.client
    monkeypatch.setattr(point, "client", lambda *args: made.append(client(*args)) or made[-1])
    port = free_port()
    held = dist.TCPStore("127.0.0.1", port, None, is_master=True, wait_for_workers=False,
                         timeout=datetime.timedelta(seconds=30))  # fmt: skip
    group = pulse.Rendezvous(held, "k", 0, 2, time.monotonic() + 60, "met", None)
    with watch.Watch(group, ("127.0.0.1", port), "k", 0, 2) as w:
        while not w.silence.heard:  # (its first look, BEAT_EVERY s on)
            time.sleep(0.05)
    assert [c.libuvBackend for c in made] == [use_libuv == "1"]


_RANK_1_HANGS = """
import os, sys, time
from loftup.cli import main
from loftup.extract import meeting, pulse, watch
pulse.SILENT_FOR = meeting.SILENT_FOR = watch.SILENT_FOR = 2.0  # (5 s in use; the test's time)
if os.environ["RANK"] == "1":  # it came, and hangs before the group's join (alive, beating)
    meeting.join_process_group = lambda *args, **kwargs: time.sleep(600)
sys.exit(main(["upsample", os.environ["IMAGE"], "-o", os.environ["OUT"]]))
"""


@sees_keys
def test_a_meeting_point_that_stops_while_a_rank_waits_for_the_others_address_is_named(
    agent_process,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    """All came; RANK=0 has put its address for the group and looks, from its main thread, for
    RANK=1's, when the point's machine is lost (its process stopped: the connection stays
    open). The look, a store call on the meeting's client, waited as long as the point stayed
    stopped (whatever the client's time-out), silent, and the watch left it to the look. The
    looks now have a client of their own and are timed: the point is named SILENT_FOR s on."""
    held, point = agent_process
    port = point.port
    ranks = [start(r, port, tmp_path, _RANK_1_HANGS) for r in (0, 1)]
    with ended(*ranks):
        while not any(k.startswith("default_pg/0/1/") for k in point.list_keys()):
            assert ranks[0].poll() is None, ranks[0].communicate()
            time.sleep(0.05)
        held.send_signal(signal.SIGSTOP)
        _, err = ranks[0].communicate(timeout=60)  # (not as long as the point stays stopped)
    assert ranks[0].returncode == 2, err[-2000:]
    said_last(
        err, 0, port,
        rf"the meeting point at 127\.0\.0\.1:{port} has not answered for \d+ s before all "
        r"joined the process group \(its machine lost or stopped, or the network to it cut\); "
        "start the run again",
    )  # fmt: skip
    assert len(err.splitlines()) == 1, err[-2000:]


_RANK = """
import os, sys
from loftup.cli import main
from loftup.extract import meeting, pulse, watch
pulse.SILENT_FOR = meeting.SILENT_FOR = watch.SILENT_FOR = 2.0  # (5 s in use; the test's time)
sys.exit(main(["upsample", os.environ["IMAGE"], "-o", os.environ["OUT"]]))
"""


def test_a_meeting_point_that_stops_while_a_rank_waits_for_the_others_to_come_is_named(
    agent_process,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    """RANK=1 has claimed its rank and waits for RANK=0 when the point's machine is lost (its
    process stopped): the meeting's look, a store call, waited as long as the point stayed
    stopped (whatever the client's time-out), silent, and Ctrl-C was ignored. It is timed
    now, and the point named SILENT_FOR s on."""
    held, point = agent_process
    port = point.port
    rank = start(1, port, tmp_path, _RANK)
    with ended(rank):
        wait_until_counted_in(point, 1, rank.poll)
        held.send_signal(signal.SIGSTOP)
        _, err = rank.communicate(timeout=60)  # (not as long as the point stays stopped)
    assert rank.returncode == 2, err[-2000:]
    assert re.fullmatch(
        rf"\[rank 1\] error: this process \(RANK=1 of WORLD_SIZE=2\) came to 127\.0\.0\.1:{port}, "
        r"but the meeting point there has not answered for \d+ s \(its machine lost or stopped, "
        r"or the network to it cut\); start the run again\n",
        err,
    ), err[-2000:]


@pytest.fixture
def point_here():
    """A meeting point held in this process, at a free port: (its store, (host, port))."""
    port = free_port()
    held = dist.TCPStore("127.0.0.1", port, None, is_master=True, wait_for_workers=False,
                         timeout=datetime.timedelta(seconds=30))  # fmt: skip
    yield held, ("127.0.0.1", port)
    del held


def _workers() -> int:
    return sum(t.name == "loftup-looks" for t in threading.enumerate())


def _until(done, what: str) -> None:
    """Wait until ``done()`` (10 s at most: then ``what`` did not happen)."""
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _no_workers() -> None:
    """Until the workers of earlier looks (a test's before this one) have idled out."""
    _until(lambda: _workers() == 0, "a worker did not idle out")


def test_looks_one_after_another_are_made_by_one_thread_on_one_client(point_here):
    """Each look started a thread of its own: about five a second while a rank waited for the
    others' addresses, twenty a second at the meeting."""
    _, where = point_here
    many = Looks(where)
    made = []
    for _ in range(5):
        look = many.start(lambda client: made.append((threading.current_thread(), client)))
        assert look.wait(10, 0.05) is None and look.answered()
    assert len({id(thread) for thread, _ in made}) == 1, made  # (kept: idents are reused)
    assert len({id(client) for _, client in made}) == 1, made


def test_a_look_that_hangs_holds_those_after_it_without_another_thread(point_here):
    """A look that hangs (the point stopped) left its thread, and the next look started
    another: the looks handed after it now wait behind it, timed from when they were handed."""
    _, where = point_here
    _no_workers()  # (one idling out meanwhile was counted in before, and out after)
    before, free, order = _workers(), threading.Event(), []
    many = Looks(where)
    hung = many.start(lambda client: free.wait(30) and order.append("hung"))
    held = [many.start(lambda client, n=n: order.append(n)) for n in range(3)]
    assert held[-1].wait(0.2, 0.05) is not None  # (unanswered: silent 0.2 s, seen 0.05 s apart)
    assert _workers() - before == 1 and not hung.done.is_set()
    free.set()
    assert held[-1].wait(10, 0.05) is None
    assert order == ["hung", 0, 1, 2]


class _Calls:
    """A store whose ``get`` says which thread made it."""

    def get(self, key):
        return threading.current_thread()


def test_the_meetings_timed_calls_are_made_by_one_thread():
    """Each of the meeting's calls to a point another process holds started a thread of its own
    (about twenty a second while a rank waited for the others to come)."""
    timed = Timed(_Calls(), ("127.0.0.1", 1), "this process", 5, 0.5)
    threads = [timed.get("k") for _ in range(5)]  # (kept: a thread's ident is reused)
    assert len({id(thread) for thread in threads}) == 1, threads


def _connections_to(port: int) -> int:
    """This process's TCP connections to ``port`` (as a client)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            mine.add(os.readlink(f"/proc/self/fd/{fd}").removeprefix("socket:[").rstrip("]"))
    found = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()  # remote address; state (01: established); inode
            if fields[9] in mine and int(fields[2].rpartition(":")[2], 16) == port:
                found += fields[3] == "01"
    return found


def test_the_watch_looks_on_the_client_of_the_main_threads_looks(point_here):
    """A rank kept three store clients of the point while it joined the group: the meeting's,
    its main thread's looks' and the watch's. The watch's looks are now made on the main
    thread's looks' client."""
    held, where = point_here
    store = point.client(*where, 30)
    held.set("k/address/1", "here")
    before = _connections_to(where[1])
    group = pulse.Rendezvous(store, "k", 0, 2, time.monotonic() + 60, "met", None, where)
    with watch.Watch(group, where, "k", 0, 2) as w:
        group.wait(["k/address/1"])  # (the main thread's look, on the looks' client)
        while not w.silence.heard:  # (the watch's first look, BEAT_EVERY s on)
            time.sleep(0.05)
        assert _connections_to(where[1]) - before == 1


def test_a_worker_that_idles_out_closes_the_client_the_rendezvous_looked_on(
    point_here, monkeypatch
):
    """The rendezvous kept its looks' client (in its Silence) after their worker idled out:
    the connection stayed open, one more each time the worker started again."""
    monkeypatch.setattr(looks, "IDLE", 0.05)
    held, where = point_here
    store = point.client(*where, 30)
    _no_workers()
    before = _connections_to(where[1])
    group = pulse.Rendezvous(store, "k", 0, 2, time.monotonic() + 60, "met", None, where)
    threading.Timer(0.5, held.set, ("k/address/1", "here")).start()
    group.wait(["k/address/1"])  # (its looks, the first ones not finding it)
    _no_workers()
    assert _connections_to(where[1]) == before


def test_a_worker_that_idles_out_closes_the_client_the_watch_looked_on(point_here, monkeypatch):
    """The watch kept its looks' client (in its Silence) after their worker idled out."""
    monkeypatch.setattr(looks, "IDLE", 0.05)
    held, where = point_here
    _no_workers()
    before = _connections_to(where[1])
    group = pulse.Rendezvous(held, "k", 0, 2, time.monotonic() + 60, "met", None)
    with watch.Watch(group, where, "k", 0, 2) as w:
        _until(lambda: w.silence.heard, "the watch made no look")
    _no_workers()
    assert _connections_to(where[1]) == before
