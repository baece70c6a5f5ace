"""The forking Pythons (tests/forking_python.py) that tests/file_modes.py runs code in, where
file modes apply: started (as root: under setpriv, without the two capabilities that let root
past a file's mode), kept, one for each set of the settings that Python and torch read as they
start, and sent the calls (:func:`_forked`), one at a time whatever the thread."""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

#: setpriv's options that drop root's way past file modes (read, write and search)
_DROP = [
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


def _command() -> list[str]:
    """The command that starts a Python for which modes apply (root: under setpriv)."""
    if os.geteuid() != 0:
        return [sys.executable]
    return ["setpriv", *_DROP, sys.executable]


#: the forking Pythons, one for each set of the settings read at start (:func:`_start_up`) of
#: the calls, each started at its first; in the order of their last use, :data:`_KEPT` at most
_SERVERS: dict[tuple, subprocess.Popen] = {}
_KEPT = 2
SCRIPT = Path(__file__).with_name("forking_python.py")
#: seconds a server may take to start (its imports: torch), apart from a call's own deadline
START_UP = 120
#: held for a call, from its server's start to its last answer: another thread's call would
#: read this one's answers
_LOCK = threading.RLock()
#: the thread that starts a server for a call made from a thread other than the main one: the
#: kernel ends a server (its PR_SET_PDEATHSIG) as the thread that started it ends, and this one
#: lasts as long as the process
_SPAWNER: list[ThreadPoolExecutor] = []


class _Ended(AssertionError):
    """The server ended (its stdout closed) before it answered."""


def _start_up(env: dict) -> tuple:
    """The settings of ``env`` that Python reads as it starts, or the forking Python's imports
    read once (torch's threads, tqdm's defaults): a fork keeps its server's."""
    from forking_python import READ_AT_START

    return tuple(sorted((k, v) for k, v in env.items() if k.startswith(READ_AT_START)))


def _spawn(env: dict, log) -> subprocess.Popen:
    """A server started with ``env`` from the main thread, or from :data:`_SPAWNER`'s."""
    args = [*_command(), str(SCRIPT), str(os.getpid())]
    kwargs = {"env": env, "stderr": log, "stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(args, **kwargs)
    if not _SPAWNER:
        _SPAWNER.append(ThreadPoolExecutor(1, thread_name_prefix="forking-python-spawner"))
    return _SPAWNER[0].submit(subprocess.Popen, args, **kwargs).result()


def _server(env: dict) -> subprocess.Popen:
    """The forking Python started with ``env``'s settings read at start, started now (and
    waited for, :data:`START_UP` s at most) if none is running."""
    key = _start_up(env)
    with _LOCK:
        server = _SERVERS.pop(key, None)
        if server is not None and server.poll() is not None:  # ended (killed): files closed
            _end(server, [])
            server = None
        if server is None:
            while len(_SERVERS) >= _KEPT:  # the one used longest ago ends (idle: nothing lost)
                _end(next(iter(_SERVERS.values())), [])
            log = tempfile.TemporaryFile()  # its stderr: what a fork that cannot open its own said
            server = _spawn(env, log)  # (it dies with this process)
            server.log, server.unread, server.folder = log, b"", None
            try:
                ready = _answer(server, time.monotonic() + START_UP)
            except _Ended as e:
                _end(server, [])
                raise AssertionError(str(e)) from None  # (not a call's: not started again)
            if ready is None:
                _end(server, [])
                raise AssertionError(f"the forking Python ({SCRIPT}) had not started (imported "
                                     f"torch) after {START_UP} s: a machine too loaded?")  # fmt: skip
            server.folder = ready["ready"]  # its calls' files, removed as it ends
        _SERVERS[key] = server
        return server


def _answer(server: subprocess.Popen, deadline: float) -> dict | None:
    """The server's next answer, or None where none has come by ``deadline`` (of
    time.monotonic()). Its stdout is read here, not through a buffer that select cannot see."""
    fd = server.stdout.fileno()
    while b"\n" not in server.unread:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise _Ended(_ended(server))
        server.unread += chunk
    line, _, server.unread = server.unread.partition(b"\n")
    return json.loads(line)


def _ended(server: subprocess.Popen) -> str:
    """Why ``server`` answers no more: its exit status and the end of its stderr."""
    with suppress(subprocess.TimeoutExpired):
        server.wait(timeout=10)
    server.log.seek(0)
    said = server.log.read().decode(errors="replace")[-4000:]
    return (f"the forking Python ({SCRIPT}) ended (status {server.returncode}); its "
            f"stderr:\n{said}")  # fmt: skip


@atexit.register
def _end_all() -> None:
    """The servers still running as this Python ends, each ended (and its folder removed) here:
    left to die with it, each was reported as a process "still running" at its exit."""
    for server in list(_SERVERS.values()):
        _end(server, [])


def _end(server: subprocess.Popen, answers: list) -> None:
    """Kill the fork of ``answers`` ({"pid"} first, where it came) with its process group, and
    ``server`` (its answer would be taken for the next request's; a fork started after its
    last answer was read dies with it), and remove its folder."""
    if answers:
        with suppress(OSError):  # (ended already)
            os.killpg(answers[0]["pid"], signal.SIGKILL)
    for key in [k for k, s in _SERVERS.items() if s is server]:
        del _SERVERS[key]
    server.kill()
    server.wait()
    for file in (server.stdin, server.stdout, server.log):
        with suppress(OSError):  # (a request left unsent: a broken pipe)
            file.close()
    if server.folder is not None:  # (killed: it could not remove it)
        shutil.rmtree(server.folder, ignore_errors=True)


def _exchange(server: subprocess.Popen, request: dict, timeout: float) -> list[dict]:
    """Send ``request``; its answers: {"pid"} (:data:`START_UP` s at most, for a loaded
    machine's fork), then {"status"} within ``timeout`` s of the first (fewer: the code had not
    ended). Interrupted, the fork is killed with its group, and the server too."""
    answers = []
    try:
        try:
            server.stdin.write(json.dumps(request).encode() + b"\n")
            server.stdin.flush()
        except BrokenPipeError:
            raise _Ended(_ended(server)) from None
        if (pid := _answer(server, time.monotonic() + START_UP)) is not None:
            answers.append(pid)
            if (status := _answer(server, time.monotonic() + timeout)) is not None:
                answers.append(status)
    except _Ended as e:
        if answers:  # ended as the code ran: not started again (its fork killed)
            _end(server, answers)
            raise AssertionError(str(e)) from None
        raise
    except BaseException:
        _end(server, answers)
        raise
    return answers


def _forked(script: str, env: dict, timeout: float = 60) -> tuple[int, str, str]:
    """``python -c script`` where modes apply, in ``env``, this process's umask and the current
    folder: (exit status, stdout, stderr). Run in a fork of a Python started for the session
    (tests/forking_python.py), which has imported torch already, a second or two sooner than a
    new Python: one for each set of the settings that Python and torch read once (env's
    PYTHONPATH, OMP_NUM_THREADS, ...); one that ended before it started the fork is started
    again, once. Interrupted (Ctrl-C), or not ended in ``timeout`` seconds (failed, naming the
    script), the fork is killed with its process group, and the server too."""
    umask = os.umask(0)
    os.umask(umask)
    with _LOCK:  # (one call at a time)
        for attempt in range(2):
            server = _server(env)
            out, err = Path(server.folder, "stdout"), Path(server.folder, "stderr")
            for file in (out, err):
                file.unlink(missing_ok=True)
            request = {"code": script, "env": dict(env), "umask": umask, "cwd": os.getcwd(),
                       "stdout": str(out), "stderr": str(err)}  # fmt: skip
            try:
                answers = _exchange(server, request, timeout)
                break
            except _Ended:
                _end(server, [])
                if attempt:
                    raise
        said = err.read_text(errors="replace") if err.exists() else ""
        if len(answers) < 2:
            _end(server, answers)
            fork = f"process {answers[0]['pid']}" if answers else "not started"
            raise AssertionError(
                f"the code run where modes apply had not ended after {timeout} s ({fork}, "
                f"killed with its process group):\n{script[:2000]}\nits stderr:\n{said[-4000:]}"
            )
        if not err.exists():
            server.log.seek(0)
            said = server.log.read().decode(errors="replace")
        return answers[1]["status"], out.read_text(errors="replace") if out.exists() else "", said
