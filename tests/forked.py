"""Test cases run each in a process of its own, forked from one prepared Python (:class:`Forked`):
for a case whose signal may leave the process broken (raised at whatever bytecode runs next, a
library's lock may stay held), at the cost of a fork instead of a start of Python, torch and
pytest per case (about 8 s each). The prepared process only imports; a case is a plain
function of a test module, run with keyword arguments of JSON, failing by raising.

Run as a script, this file is that prepared process: ``python forked.py MODULE...`` imports the
modules, then for each line ``[module, function, kwargs, log, timeout]`` on stdin forks a child
that runs the case with its output in ``log``, and answers its exit status (-9: killed at the
timeout) on a line of stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from processes import REPO, src_env


class Forked:
    """The prepared process (started at once), for :meth:`run` of the cases of ``modules``."""

    def __init__(self, modules: list[str]) -> None:
        if not hasattr(os, "fork"):
            pytest.skip("no os.fork here: each case needs a process of its own")
        env = src_env()
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env["PYTHONPATH"]])
        self.process = subprocess.Popen(
            [sys.executable, __file__, *modules], cwd=REPO, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    def run(self, case, log: Path, timeout: float = 60, **kwargs) -> None:
        """Run ``case`` (a function of one of the modules) with ``kwargs`` in a child of its
        own, its output written to ``log``; fails with that output unless the case passes."""
        order = [case.__module__, case.__name__, kwargs, str(log), timeout]
        self.process.stdin.write(json.dumps(order) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, f"the prepared process ended (status {self.process.wait()})"
        status = json.loads(answer)
        said = log.read_text(errors="replace") if log.exists() else ""
        assert status == 0, f"{case.__name__} ended with status {status}:\n{said[-4000:]}"

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _serve(modules: list[str]) -> None:
    import importlib
    import threading
    import time

    for name in modules:  # what every case needs, imported once
        importlib.import_module(name)
    for line in sys.stdin:
        module, function, kwargs, log, timeout = json.loads(line)
        # a Python thread would be lost in the child, and the locks it held with it (torch's
        # own threads are its to mend in a child, as in a DataLoader's forked workers)
        if threading.active_count() > 1:
            raise RuntimeError(f"the prepared process has threads: {threading.enumerate()}")
        pid = os.fork()
        if pid == 0:
            _child(importlib.import_module(module), function, kwargs, log)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:  # hung (a lock left held): said as -9
                os.kill(pid, 9)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.02)
        print(json.dumps(os.waitstatus_to_exitcode(status)), flush=True)


def _child(module, function: str, kwargs: dict, log: str) -> None:
    """Run the case with stdout and stderr in ``log``; end at once (no clean-up of the
    prepared process's, which is not the child's)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    status = 1
    try:
        getattr(module, function)(**kwargs)
        status = 0
    except BaseException:  # noqa: BLE001 - the case's failure, said in its log
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(status)


if __name__ == "__main__":
    _serve(sys.argv[1:])
