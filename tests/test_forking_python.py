"""tests/forking_servers.py's _forked, behind file_modes.where_modes_apply (a fork of
tests/forking_python.py): the fork takes the caller's umask and the settings Python and torch
read as they start (its PYTHONPATH among them), says why its setup failed, fails a call that
outlives its deadline, and leaves no process behind when the caller is interrupted or its server
ends (tests/test_forking_servers.py: the calls from threads, a server started again)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import tqdm

import forking_servers
import loftup
from file_modes import _unusable, fork_env, where_modes_apply
from forking_servers import _forked, _server
from test_forked import _gone


@pytest.fixture
def env():
    why = _unusable()
    if why is not None:
        pytest.skip(why)
    return fork_env()


@pytest.fixture(scope="module")
def own_servers():
    """Servers of these tests' own, for those that kill theirs: the session's are left to the
    next test file (a restart each, a second or two, saved)."""
    kept = forking_servers._SERVERS
    forking_servers._SERVERS = {}
    try:
        yield
    finally:
        for server in list(forking_servers._SERVERS.values()):
            forking_servers._end(server, [])
        forking_servers._SERVERS = kept
        # the spawner's thread ended too (left running, it has Python 3.12 warn of each later
        # os.fork of this process: as_nobody's); its servers were these tests' own
        while forking_servers._SPAWNER:
            forking_servers._SPAWNER.pop().shutdown()


def test_the_fork_takes_the_callers_umask(env):
    """It had the server's (022), so a file the code made was not made as the caller's."""
    assert _forked("pass", env)[0] == 0  # the server started with this process's umask
    had = os.umask(0)
    mask = 0o077 if had != 0o077 else 0o027  # not the server's
    os.umask(mask)
    try:
        status, out, err = _forked("import os; print(oct(os.umask(0)))", env)
    finally:
        os.umask(had)
    assert (status, out.strip()) == (0, oct(mask)), err


def _other(name: str, *values: str) -> str:
    """The first of ``values`` that is not ``name``'s value here."""
    return next(v for v in values if os.environ.get(name) != v)


def test_a_call_finds_the_modules_of_the_callers_pythonpath(tmp_path, monkeypatch):
    """Each fork ran with the first server's PYTHONPATH: loftup's source and the tests' helpers
    alone (test_min_versions.py's older releases, first on its PYTHONPATH, were not on it: the
    newest installed ran). Now loftup's source comes first, then the helpers, then those."""
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "fork_probe.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(extra))
    result = where_modes_apply(
        "import fork_probe, loftup; result = [fork_probe.__file__, loftup.__file__]"
    )
    assert result == [str(extra / "fork_probe.py"), loftup.__file__]


def test_the_fork_runs_with_the_callers_settings_read_at_start(env):
    """Python's settings read as it starts (its warnings, locale) were the server's, and those
    its imports read (torch's threads, tqdm's defaults) were refused where they differed: now
    a server is started for each set of them."""
    assert _forked("pass", env)[0] == 0  # (a server of this process's settings started first)
    threads = "1" if torch.get_num_threads() != 1 else "2"  # (torch takes no more than the cores)
    locale = _other("LC_ALL", "C", "C.UTF-8")
    settings = {"OMP_NUM_THREADS": threads, "LC_ALL": locale, "PYTHONUTF8": "0",
                "TQDM_MININTERVAL": _other("TQDM_MININTERVAL", "7.5", "8.5"),
                "PYTHONWARNINGS": _other("PYTHONWARNINGS", "ignore::FutureWarning", "default")}  # fmt: skip
    code = """import io, json, locale, sys, torch, tqdm
print(json.dumps([torch.get_num_threads(), tqdm.tqdm(file=io.StringIO()).mininterval,
                  sys.warnoptions, locale.getpreferredencoding(False)]))"""
    status, out, err = _forked(code, {**env, **settings})
    assert status == 0, err
    threads = min(int(threads), len(os.sched_getaffinity(0)))
    encoding = "UTF-8" if "UTF-8" in locale else "ANSI_X3.4-1968"
    warnings = [settings["PYTHONWARNINGS"]]
    mininterval = (  # tqdm reads TQDM_* from 4.66 on; before, the fork has this one's default
        float(settings["TQDM_MININTERVAL"])
        if tuple(map(int, tqdm.__version__.split(".")[:2])) >= (4, 66)
        else tqdm.tqdm(file=io.StringIO()).mininterval
    )
    assert json.loads(out) == [threads, mininterval, warnings, encoding]


def test_a_folder_the_fork_may_not_enter_is_said_on_its_stderr(env, tmp_path, monkeypatch):
    """The chdir ran before the output was redirected (and outside the try): its traceback went
    to the server's stderr, and the caller failed on a stdout file never made."""
    inner = tmp_path / "locked" / "inner"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    inner.parent.chmod(0)
    try:
        status, _, err = _forked("print('ran')", env)
    finally:
        inner.parent.chmod(0o755)
    assert status == 1
    assert "PermissionError" in err and str(inner) in err, err


def test_a_call_past_its_deadline_fails_naming_its_code_and_leaves_no_process(env, own_servers):
    """It was waited for without end, and a caller stopped then left the fork running. The
    deadline is the code's: its server's start (importing torch) is not counted in it."""
    server = _server(env)
    code = "import subprocess; subprocess.Popen(['sleep', '3600']); import time; time.sleep(3600)"
    with pytest.raises(AssertionError, match=r"not ended after 0.5 s \(process \d+, killed") as e:
        _forked(code, env, timeout=0.5)
    assert code in str(e.value)
    fork = int(str(e.value).split("(process ")[1].split(",")[0])
    assert _until_gone(*_group(fork)), f"left of the fork {fork}'s process group"
    assert server.poll() is not None and server not in forking_servers._SERVERS.values()


def _group(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` still running (not zombies)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


class _Interrupted(Exception):
    pass


def test_an_interrupted_call_kills_the_fork_it_started(env, tmp_path, own_servers):
    """The server was killed and its fork left running, reparented to init."""
    pid_file = tmp_path / "pid"

    def interrupt(*_) -> None:
        raise _Interrupted

    def when_started() -> None:  # the interrupt, once the fork is running
        _started(pid_file)
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        threading.Thread(target=when_started, daemon=True).start()
        with pytest.raises(_Interrupted):
            _forked(_sleeper(pid_file), env)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    pid = int(pid_file.read_text())
    assert _until_gone(pid), f"the fork {pid} outlived the interrupted call"
    assert _forked("print('ran')", env)[:2] == (0, "ran\n")  # a new server serves


def _until_gone(*pids: int) -> bool:
    """Whether each of ``pids`` has ended within 30 s (SIGKILL is delivered at once; a loaded
    machine)."""
    deadline = time.monotonic() + 30
    while not all(map(_gone, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return all(map(_gone, pids))


def _sleeper(pid_file: Path) -> str:
    """Code that writes its pid to ``pid_file`` and sleeps a minute."""
    return f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"


def _started(pid_file: Path) -> int:
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return int(pid_file.read_text())


def test_a_fork_ends_with_its_server(env, tmp_path, own_servers):
    """A fork whose pid its caller had not read yet (stopped by a Ctrl-C then, the server
    killed) lived on, given to init: now the kernel kills it as its server ends."""
    server, pid_file = _server(env), tmp_path / "pid"
    request = {"code": _sleeper(pid_file), "env": env, "umask": 0o22, "cwd": str(tmp_path),
               "stdout": str(tmp_path / "out"), "stderr": str(tmp_path / "err")}  # fmt: skip
    server.stdin.write(json.dumps(request).encode() + b"\n")
    server.stdin.flush()
    fork = _started(pid_file)
    forking_servers._end(server, [])  # killed, its answers unread
    assert _until_gone(fork), f"the fork {fork} outlived its server"
    assert not Path(server.folder).exists(), "the killed server's folder was left"


# 3 s: slow (a Python that imports torch); the same kill by the kernel in the default suite:
# test_a_fork_ends_with_its_server (of the fork, as its server ends)
@pytest.mark.slow
def test_the_server_ends_with_its_caller_and_ends_the_forks_group(env, tmp_path):
    """A caller killed as its server's fork ran left them running until the fork ended, and
    what the fork's code started after that. The folder of the calls' output files goes with
    the server (a tempfile.TemporaryDirectory of the caller's was left in /tmp)."""
    pid_file = tmp_path / "pid"
    code = (f"import subprocess, time; started = subprocess.Popen(['sleep', '60']); "
            f"open({str(pid_file)!r}, 'w').write(str(started.pid)); time.sleep(60)")  # fmt: skip
    caller = f"""
import json, os, subprocess, sys, time
server = subprocess.Popen([sys.executable, {str(forking_servers.SCRIPT)!r}, str(os.getpid())],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)  # (not the caller's: held)
folder = json.loads(server.stdout.readline())["ready"]
request = {{"code": {code!r}, "env": dict(os.environ), "umask": 0o22, "cwd": "/",
           "stdout": folder + "/stdout", "stderr": folder + "/stderr"}}
server.stdin.write(json.dumps(request) + "\\n")
server.stdin.flush()
print(server.pid, json.loads(server.stdout.readline())["pid"], folder, flush=True)
while not os.path.exists({str(pid_file)!r}) or not open({str(pid_file)!r}).read():
    time.sleep(0.02)
os._exit(0)
"""
    ran = subprocess.run([sys.executable, "-c", caller], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    server, fork, folder = ran.stdout.split()
    pids = {"server": int(server), "fork": int(fork), "started": int(pid_file.read_text())}
    assert _until_gone(*pids.values()), {k: p for k, p in pids.items() if not _gone(p)}
    assert not Path(folder).exists(), "the server's folder (the calls' output) was left"
