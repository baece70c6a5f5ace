"""tests/file_modes.py's _forked (a fork of tests/forking_python.py): the fork takes the
caller's umask, refuses settings its server's imports read once, says why its setup failed, and
is killed with the server when the caller is interrupted."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from file_modes import _PYTHONPATH, _forked, _unusable
from test_forked import _gone


@pytest.fixture
def env():
    why = _unusable()
    if why is not None:
        pytest.skip(why)
    return {**os.environ, "PYTHONPATH": _PYTHONPATH}


def test_the_fork_takes_the_callers_umask(env):
    """It had the server's (022), so a file the code made was not made as the caller's."""
    assert _forked("pass", env)[0] == 0  # the server started with this process's umask
    had = os.umask(0o077)
    try:
        status, out, err = _forked("import os; print(oct(os.umask(0)))", env)
    finally:
        os.umask(had)
    assert (status, out.strip()) == (0, "0o77"), err


@pytest.mark.parametrize("setting", ["TQDM_DISABLE", "OMP_NUM_THREADS"])
def test_a_setting_read_at_import_is_refused_where_it_differs(env, setting):
    """torch and tqdm read these at the server's import: a fork ran with the server's value."""
    with pytest.raises(AssertionError, match=f"cannot take these settings.*{setting}.*subprocess"):
        _forked("print('ran')", {**env, setting: "1"})


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


class _Interrupted(Exception):
    pass


def test_an_interrupted_call_kills_the_fork_it_started(env, tmp_path):
    """The server was killed and its fork left running, reparented to init."""
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"

    def interrupt(*_) -> None:
        raise _Interrupted

    def when_started() -> None:  # the interrupt, once the fork is running
        while not pid_file.exists() or not pid_file.read_text():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        threading.Thread(target=when_started, daemon=True).start()
        with pytest.raises(_Interrupted):
            _forked(code, env)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 30  # (SIGKILL is delivered at once; a loaded machine)
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid), f"the fork {pid} outlived the interrupted call"
    assert _forked("print('ran')", env)[:2] == (0, "ran\n")  # a new server serves
