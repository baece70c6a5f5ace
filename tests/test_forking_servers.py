"""tests/forking_servers.py's servers and threads: calls from threads at once get their own
answers, a server outlives the thread it was started from, and one that ended unseen is
started again, once."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import termios
import threading
import time
from pathlib import Path

import forking_servers
import test_forking_python
from forking_servers import _forked, _server

env, own_servers = test_forking_python.env, test_forking_python.own_servers  # (fixtures)


def test_a_server_started_from_a_thread_outlives_that_thread(env, own_servers):
    """The kernel ended it (its PR_SET_PDEATHSIG) as the thread that started it ended, and the
    next call found it ended: a server is started from a thread that lasts."""
    for server in list(forking_servers._SERVERS.values()):  # (this call's is started anew)
        forking_servers._end(server, [])
    done = {}

    def call() -> None:
        done["ran"] = _forked("print('in a thread')", env)[:2]
        done["thread"] = threading.get_native_id()

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert done["ran"] == (0, "in a thread\n")
    (server,) = forking_servers._SERVERS.values()
    ended = Path(f"/proc/{os.getpid()}/task/{done['thread']}")
    deadline = time.monotonic() + 30  # (until the kernel has ended the thread too)
    while ended.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _forked("print('ran')", env)[:2] == (0, "ran\n")
    assert list(forking_servers._SERVERS.values()) == [server], "its server was started again"
    assert server.poll() is None


def test_calls_from_threads_at_once_each_get_their_own_answers(env):
    """Each read whichever answer came first: a fast call took the slow one's {"pid"} or
    {"status"} for its own and failed (KeyError: 'status') or said the other's output."""
    assert _forked("pass", env)[0] == 0  # (its server started from the main thread)
    done = {}

    def call(name: str, code: str) -> None:
        done[name] = _forked(code, env)[:2]

    codes = {"slow": "import time; time.sleep(1); print('slow')"}
    codes.update({f"fast{n}": f"print('fast{n}')" for n in range(4)})
    threads = [threading.Thread(target=call, args=item) for item in codes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert done == {name: (0, f"{name}\n") for name in codes}


def test_a_server_that_ends_as_a_call_is_sent_is_started_again_once(env, own_servers):
    """One that had ended unseen (its poll() still None: killed as its thread ended) failed the
    call with its stderr, empty: the call is sent to a new one. This one is stopped, given a
    line it ends on, and let go once the call's request is behind that line."""
    server = _server(env)
    os.kill(server.pid, signal.SIGSTOP)
    server.stdin.write(b"not a request\n")
    server.stdin.flush()

    def go_on() -> None:  # once the call's request is in the pipe too
        deadline = time.monotonic() + 60
        while _in_pipe(server.stdin) <= len(b"not a request\n") and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(server.pid, signal.SIGCONT)

    threading.Thread(target=go_on, daemon=True).start()
    assert _forked("print('ran')", env)[:2] == (0, "ran\n")
    assert server.returncode == 1 and server not in forking_servers._SERVERS.values()


def _in_pipe(pipe) -> int:
    """How many bytes written to ``pipe`` its reader has not read (FIONREAD, either end)."""
    return struct.unpack("i", fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0" * 4))[0]
