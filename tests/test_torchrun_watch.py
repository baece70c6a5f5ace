"""torch's C++ part of the gloo group's join, watched (loftup.extract.watch): a rank killed just
as the others connect to it, and Ctrl-C there. gloo picks one side of each pair to connect and
the other to wait for it, by their ports: the one that waits for a rank killed waited about
25 s (5 tries of join.CONNECT s), Ctrl-C ignored; the one that connects was refused at once.
Here both ranks stop themselves once each has put its address at the store; the test, which
holds the meeting point as torchrun's agent does, then kills the one the other waits for, and
lets the other go on. Each rank is `loftup upsample`."""

from __future__ import annotations

import datetime
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist
from PIL import Image

from loftup.extract.pulse import SILENT_FOR
from processes import src_env
from test_torchrun_join import ended, sees_keys
from test_torchrun_meeting import free_port

_RANK = """
import os, signal, sys, threading, time
from loftup.cli import main
from loftup.extract import join, pulse
join.CONNECT = float(os.environ.get("CONNECT", join.CONNECT))
put = pulse.Rendezvous.set
def put_and_stop(self, key, value):  # this rank's address for the group, then stopped
    put(self, key, value)
    if key.startswith("default_pg/"):
        os.kill(os.getpid(), signal.SIGSTOP)
pulse.Rendezvous.set = put_and_stop
get, addresses = pulse.Rendezvous.get, []
def in_cpp(main=threading.main_thread().ident):  # said once got() has returned into gloo
    frame = sys._current_frames()[main]
    while frame is not None:
        if frame.f_code is got.__code__:
            return False
        frame = frame.f_back
    return True
def connecting():
    while not in_cpp():
        time.sleep(0.001)
    print("connecting", flush=True)
def got(self, key):  # both ranks' addresses read: on to gloo's connects, in C++
    value = get(self, key)
    addresses.append(key)
    if len([k for k in addresses if k.startswith("default_pg/")]) == 2:
        threading.Thread(target=connecting).start()
    return value
pulse.Rendezvous.get = got
sys.exit(main(["upsample", os.environ["IMAGE"], "-o", os.environ["OUT"]]))
"""


#: a user's own script under torchrun, which calls the Python API and cleans up after itself
_LIBRARY = _RANK.replace(
    'sys.exit(main(["upsample", os.environ["IMAGE"], "-o", os.environ["OUT"]]))',
    """import atexit
atexit.register(lambda: print("atexit ran", flush=True))
from loftup.extract import upsample_folder
try:
    upsample_folder([os.environ["IMAGE"]], os.environ["OUT"])
except BaseException as e:
    print("caught", type(e).__name__, str(e), flush=True)
finally:
    print("finally ran", flush=True)
""",
)
assert _LIBRARY != _RANK


def start(rank: int, port: int, tmp_path: Path, code: str = _RANK, **env) -> subprocess.Popen:
    """`loftup upsample` as RANK=``rank`` of WORLD_SIZE=2 at 127.0.0.1:``port``, which stops
    itself (SIGSTOP) once it has put its address for the group at the meeting point."""
    Image.new("RGB", (32, 32), (10, 200, 30)).save(tmp_path / "x.png")
    env = {**{k: v for k, v in os.environ.items() if k != "TORCH_CPP_LOG_LEVEL"},
           "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "PYTHONPATH": src_env()["PYTHONPATH"],
           "IMAGE": str(tmp_path / "x.png"), "OUT": str(tmp_path / f"out{rank}"),
           "LOFTUP_DIST_MEET_TIMEOUT": "600", "TORCHELASTIC_USE_AGENT_STORE": "True",
           **env}  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.fixture
def agent():
    """The meeting point at a free port, held here, as torchrun's agent holds it (a rank
    killed takes none with it)."""
    store = dist.TCPStore("127.0.0.1", free_port(), None, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=30))  # fmt: skip
    yield store
    del store


@pytest.fixture
def agent_process():
    """The meeting point held by a process of its own (to be stopped, as a lost machine is),
    and a client of it here."""
    port = free_port()
    held = subprocess.Popen([sys.executable, "-c", _POINT, str(port)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    with ended(held):
        assert held.stdout.readline() == "up\n"
        client = dist.TCPStore("127.0.0.1", port, None, is_master=False,
                               timeout=datetime.timedelta(seconds=30))  # fmt: skip
        yield held, client


_POINT = """
import datetime, sys, time, torch.distributed as dist
point = dist.TCPStore("127.0.0.1", int(sys.argv[1]), None, is_master=True, wait_for_workers=False,
                      timeout=datetime.timedelta(seconds=30))
print("up", flush=True)
time.sleep(3600)
"""


def waiting_for_the_killed(point, ranks: list[subprocess.Popen], connects=False) -> int:
    """Once both ``ranks`` have put their addresses and stopped: the rank whose side of the
    pair waits for the other to connect (gloo's Device::isInitiator: the lower port, as the
    machine reads the bytes of its sockaddr_in), or the one that ``connects``, let go on; the
    other, killed (SIGKILL)."""
    for rank in ranks:
        _, status = os.waitpid(rank.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), status
    keys = sorted(k for k in point.list_keys() if k.startswith("default_pg/0/1/"))
    ports = []
    for key in keys:  # the address of RANK=r's listener, as AF_INET, 127.0.0.1
        found = re.search(rb"\x02\x00(..)\x7f\x00\x00\x01", point.get(key), re.DOTALL)
        ports.append(int.from_bytes(found.group(1), sys.byteorder))
    assert len(ports) == 2 and ports[0] != ports[1], keys
    waits = 0 if (ports[0] < ports[1]) != connects else 1
    ranks[1 - waits].send_signal(signal.SIGKILL)
    ranks[1 - waits].wait()
    ranks[waits].send_signal(signal.SIGCONT)
    return waits


def said_last(err: str, rank: int, port: int, but: str) -> None:
    """That the last line of ``err`` is RANK=``rank``'s error at the point at ``port``, its
    "but" part matching ``but`` (a regular expression)."""
    assert re.fullmatch(
        rf"\[rank {rank}\] error: this process \(RANK={rank} of WORLD_SIZE=2\) met the others at "
        rf"127\.0\.0\.1:{port}, but {but}",
        err.splitlines()[-1] if err else "",
    ), err[-2000:]


@sees_keys
# 10 s: slow; the pair's other side, refused by the killed rank, named in the default suite:
# test_a_rank_refused_by_the_killed_one_names_it_in_its_last_line
@pytest.mark.slow
def test_a_rank_killed_as_the_other_connects_is_named_within_seconds(agent, tmp_path):
    """The survivor waited in gloo's connect for 25 s, then said its connects went unanswered
    (below gloo's own line); it now hears the killed rank go silent SILENT_FOR s after its last
    beat, and says so, naming it."""
    port = agent.port
    ranks = [start(r, port, tmp_path) for r in (0, 1)]
    with ended(*ranks):
        waits = waiting_for_the_killed(agent, ranks)
        _, err = ranks[waits].communicate(timeout=120)
    assert ranks[waits].returncode == 2, err[-2000:]
    assert err.splitlines() == [
        f"[rank {waits}] error: this process (RANK={waits} of WORLD_SIZE=2) met the others at "
        f"127.0.0.1:{port}, but RANK={1 - waits} went silent (no sign of life for "
        f"{SILENT_FOR:g} s) before joining the process group: killed (or its machine lost), or "
        "ended by an error of its own, which says why; start the run again"
    ]


@sees_keys
@pytest.mark.parametrize(
    "sent, status, said",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
)
def test_ctrl_c_while_gloo_connects_ends_the_rank_at_once(sent, status, said, agent, tmp_path):
    """The survivor in gloo's connect (here 600 s a try, so that the test tells): SIGINT (and
    SIGTERM, torchrun's stop of the others once one has died) waited for the connect to give
    up. It ends it at once, as it ends any command."""
    ranks = [start(r, agent.port, tmp_path, CONNECT="600") for r in (0, 1)]
    with ended(*ranks):
        waits = waiting_for_the_killed(agent, ranks)
        assert ranks[waits].stdout.readline() == "connecting\n"
        ranks[waits].send_signal(sent)
        _, err = ranks[waits].communicate(timeout=60)  # (not 600 s)
    assert ranks[waits].returncode == status, err
    assert err.splitlines() == [f"[rank {waits}] {said}"]


@sees_keys
def test_a_rank_refused_by_the_killed_one_names_it_in_its_last_line(agent, tmp_path):
    """The side of the pair that connects to a rank killed is refused at once (gloo's own lines
    of each try above), said in our line, last, which said "another process of the group
    refused": the killed rank, named by the address gloo refused at (each rank's is at the
    store). The time said runs from before this rank stopped itself: the test's kill of the
    other is in it."""
    ranks = [start(r, agent.port, tmp_path) for r in (0, 1)]
    with ended(*ranks):
        connects = waiting_for_the_killed(agent, ranks, connects=True)
        _, err = ranks[connects].communicate(timeout=120)
    assert ranks[connects].returncode == 2, err[-2000:]
    said_last(
        err, connects, agent.port,
        rf"RANK={1 - connects} ended before all joined the process group: it refused \(or "
        r"dropped\) this one's connection after \d+ s \(Gloo connectFullMesh failed with "
        r".*Connection refused.*\); it was killed, or its own error says why; start the run "
        "again",
    )  # fmt: skip


@sees_keys
# 18 s: slow; the library caller's path (raise, not os._exit); a silent rank named by the CLI's
# watch in the default suite (test_a_rank_refused_by_the_killed_one_names_it_in_its_last_line)
@pytest.mark.slow
def test_called_from_python_the_join_raises_naming_the_rank_gone_silent(agent, tmp_path):
    """upsample_folder in a user's script: the watch ended the process with os._exit, past the
    script's except, finally and atexit. The process is the caller's: gloo's connects give up
    (3 tries of 3 s here), and the LoftUpError names the rank the watch saw go silent."""
    ranks = [start(r, agent.port, tmp_path, _LIBRARY, CONNECT="3") for r in (0, 1)]
    with ended(*ranks):
        waits = waiting_for_the_killed(agent, ranks)
        out, err = ranks[waits].communicate(timeout=120)
    assert ranks[waits].returncode == 0, err[-2000:]
    lines = out.splitlines()
    assert lines[0] == "connecting" and lines[-2:] == ["finally ran", "atexit ran"], out
    assert lines[1].startswith(
        f"caught LoftUpError this process (RANK={waits} of WORLD_SIZE=2) met the others at "
        f"127.0.0.1:{agent.port}, but RANK={1 - waits} went silent (no sign of life for "
        f"{SILENT_FOR:g} s) before joining the process group"
    ), out
    assert "gloo's connects then gave up after" in lines[1], out
