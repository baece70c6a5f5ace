"""Code run in a fresh Python process, for tests of what one process alone shows (an
environment read at import, the command line as a user starts it, a torchrun rank's threads),
with this checkout's source first on its path."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

#: The checkout the tests run from.
REPO = Path(__file__).resolve().parents[1]


def src_env(*more: Path) -> dict[str, str]:
    """This process's environment with our source first on PYTHONPATH, then the folders
    ``more`` (tests/ for its helpers), then what it held there (as tests/test_min_versions.py
    runs the suite with an older torch on it)."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO / "src"), *map(str, more), os.environ.get("PYTHONPATH")])
        ),
    }


def run_cli(args: list[str], env: dict | None = None, cwd=None, timeout: int = 600):
    """Run ``python -m loftup ARGS`` in a fresh process (for offline/env-dependent behaviour)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "loftup", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_python(code: str, env: dict | None = None, timeout: int = 600):
    """Run a Python snippet in a fresh process with the given environment overrides."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=timeout
    )


def run_scripts(scripts: dict[str, str], env: dict | None = None, timeout: int = 600) -> dict:
    """Each of ``scripts`` ({name: Python code}) run in turn in one fresh process, as
    :func:`run_python` runs one, each in a namespace of its own: {name: its ``returncode``
    (its SystemExit's status; 1 and the traceback on stderr for another exception; 0 if it
    ends), ``stdout`` and ``stderr``}, told apart by markers written to both streams between
    them. For several checks that each need a process of their own (an environment read at
    import, no pytest capture) but not a start of their own: each start imports torch and
    loftup again, seconds of CPU."""
    runner = (
        "import sys, traceback\n"
        f"scripts = {scripts!r}\n"
        "for name, code in scripts.items():\n"
        "    for f in (sys.stdout, sys.stderr):\n"
        "        f.write(f'<<<{name}>>>'); f.flush()\n"
        "    try:\n"
        "        exec(compile(code, f'<{name}>', 'exec'), {'__name__': '__main__'})\n"
        "        status = 0\n"
        "    except SystemExit as e:  # as the interpreter takes it at exit\n"
        "        status = e.code if isinstance(e.code, int) else int(e.code is not None)\n"
        "        if e.code is not None and not isinstance(e.code, int):\n"
        "            print(e.code, file=sys.stderr)\n"
        "    except BaseException:\n"
        "        traceback.print_exc()\n"
        "        status = 1\n"
        "    for f in (sys.stdout, sys.stderr):\n"
        "        f.write(f'<<<end {name}: {status}>>>'); f.flush()\n"
    )
    done = run_python(runner, env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    out = {}
    for name in scripts:
        (stdout, status), (stderr, _) = (
            text.split(f"<<<{name}>>>", 1)[1].split("<<<end ")[0:2]
            for text in (done.stdout, done.stderr)
        )
        returncode = int(status.split(">>>", 1)[0].rsplit(": ", 1)[1])
        out[name] = SimpleNamespace(returncode=returncode, stdout=stdout, stderr=stderr)
    return out


def cli_script(args: list[str]) -> str:
    """Code running ``loftup ARGS`` as ``python -m loftup`` does, for :func:`run_scripts`."""
    return f"import sys; from loftup.cli import main; sys.exit(main({list(args)!r}))\n"


def pip_install_into(
    target: Path, pins: list[str], timeout: int = 600, with_dependencies: bool = False
) -> Path:
    """``pins`` installed from the package registry into the folder ``target`` (without their
    dependencies, unless ``with_dependencies``: name each one), for a test that runs code
    against those releases; the test is skipped, with the reason, where the registry cannot be
    reached."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target)]
    if not with_dependencies:
        pip.append("--no-deps")
    try:
        got = subprocess.run([*pip, *pins], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.skip(f"the package registry did not answer within {timeout} s")
    if got.returncode != 0:
        pytest.skip(f"the package registry cannot be reached: {got.stderr.strip()[-200:]}")
    return target


#: Code defining ``gloo_threads()``: how many of the process group's own gloo threads this
#: process still runs (Linux), for a torchrun process to say once it has left its process group:
#: a group that outlives ``destroy_process_group`` keeps them into the interpreter's teardown,
#: where one that needs the GIL aborts the process (see loftup.extract.torchrun._HOLDING_THE_GROUP).
#: They are its workers (``pt_gloo_runloop``, two), which the group's destructor joins before
#: destroy_process_group returns: counted at once, with no wait, as a group kept alive keeps both.
#: gloo's other thread, its TCP transport's event loop (``gloo_tcp_loop``), belongs to the
#: transport device, which anything holding one of the group's gloo contexts (a collective's work)
#: keeps: it is named after the count, not counted. (All of them counted, with no wait, one gloo
#: thread alone, not a kept group's set, was once seen just after destroy_process_group: rank 0,
#: about 1 run in 8 of a loaded CI.)
GLOO_THREADS = """
import os

def gloo_threads():
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # a thread that has just ended
            pass
    others = sorted(n for n in names if "gloo" in n and n != "pt_gloo_runloop")
    return f"{names.count('pt_gloo_runloop')}" + (f" (and {', '.join(others)})" if others else "")
"""


def gloo_left(stderr: str) -> list[int]:
    """The gloo thread counts the ranks said (``gloo threads left: N``), in order: parsed, as
    two ranks' lines may interleave on one stderr (one's newline after the other's text)."""
    return [int(n) for n in re.findall(r"gloo threads left: (\d+)", stderr)]


def forked_ranks(script: str, args: list[str], cwd) -> tuple[dict[str, list[str]], str, int]:
    """``python -c script *args`` in ``cwd``, a script that forks itself into ranks 0 and 1 of
    a gloo group (MASTER_ADDR and MASTER_PORT given, a free port) and starts each line it
    prints with its rank: what each rank said (its lines less the rank), stdout and stderr's
    end, and its status; killed, with its fork, after 120 s (a rank that hangs)."""
    import signal
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(src_env(REPO / "tests"), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # unbuffered, print writes a line's text and its newline apart: another rank's line came
    # between them ("1 done0 terminated"), and both were misread; buffered, one write a line
    env.pop("PYTHONUNBUFFERED", None)
    ranks = subprocess.Popen([sys.executable, "-c", script, *args], env=env, cwd=cwd,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)  # fmt: skip
    try:
        out, err = ranks.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # (a rank that hangs: both killed)
        os.killpg(ranks.pid, signal.SIGKILL)
        out, err = ranks.communicate()
    said = {rank: [line[2:] for line in out.splitlines() if line[:1] == rank] for rank in "01"}
    return said, f"{out}\n{err[-2000:]}", ranks.returncode


def run_torchrun(cmd: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    """``cmd`` (``python -m torch.distributed.run ...``) run to its end, its output captured:
    past ``timeout`` seconds torchrun and its ranks are killed together (its session) and the
    run is returned as it ended (status -9, its stderr), with the agent's ``pid``. subprocess.run's timeout kills the
    agent alone: a rank that hung (waiting in a collective for a peer gone) outlived the test
    for good, and a Popen's with-block waited on the agent for ever."""
    import signal
    import uuid

    # torch 2.4's agent starts each rank in a session of its own: killing torchrun's missed a
    # rank stuck in its group's end, which held the output pipes, and the test waited for ever
    # (rank 1 of a --resume rank 0 refused, under torch 2.4.1). Each is found by this mark.
    mark = f"LOFTUP_TEST_TORCHRUN={uuid.uuid4().hex}".encode()
    env = {**env, "LOFTUP_TEST_TORCHRUN": mark.split(b"=")[1].decode()}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip

    def kill_all() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if mark in f.read().split(b"\0"):
                        os.kill(int(pid), signal.SIGKILL)

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_all()
        out, err = proc.communicate()
        err += f"\n(torchrun ran past {timeout} s: killed with its ranks)"
    kill_all()  # a rank torchrun left behind (torch 2.4's, stuck in its group's end)
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    done.pid = proc.pid  # (torchrun's: the ranks' parent)
    return done
