"""Test cases run each in a process of its own, forked from one prepared Python (:class:`Forked`):
for a case whose signal may leave the process broken (raised at whatever bytecode runs next, a
library's lock may stay held), at the cost of a fork instead of a start of Python, torch and
pytest per case (about 8 s each). The prepared process only imports; a case is a plain
function of a test module, run with keyword arguments of JSON, failing by raising; a test
module's asserts are rewritten as pytest rewrites them (a failure shows the values).

Run as a script, this file is that prepared process: ``python forked.py MODULE...`` imports the
modules, then for each line ``[module, function, kwargs, log, timeout]`` on stdin forks a child,
in a process group of its own, that runs the case with its output in ``log``, and answers
``[exit status, timed out]`` on a line of stdout (a child that outlives the timeout is killed
with its group: whatever it started too)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from contextlib import suppress
from pathlib import Path

import pytest

from processes import REPO, src_env


def installed(*names: str) -> list[str]:
    """Those of the modules ``names`` that are installed (for a ``PREPARED`` list: triton
    comes with CUDA's torch alone)."""
    import importlib.util

    return [name for name in names if importlib.util.find_spec(name) is not None]


class Forked:
    """The prepared process (started at once), for :meth:`run` of the cases of ``modules``."""

    def __init__(self, modules: list[str]) -> None:
        if not hasattr(os, "fork"):
            pytest.skip("no os.fork here: each case needs a process of its own")
        self.modules = modules
        self.stderr = tempfile.TemporaryFile()  # what the prepared process says (an import failed)
        self.process = subprocess.Popen(
            [sys.executable, __file__, *modules], cwd=REPO, env=src_env(REPO / "tests"),
            text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
        )  # fmt: skip

    def run(self, case, log: Path, timeout: float = 60, **kwargs) -> None:
        """Run ``case`` (a function of one of the modules) with ``kwargs`` in a child of its
        own, its output written to ``log``; fails with that output unless the case passes."""
        order = [case.__module__, case.__name__, kwargs, str(log), timeout]
        # a child that fails before its log is open says why on the prepared process's stderr
        before = os.fstat(self.stderr.fileno()).st_size
        try:
            self.process.stdin.write(json.dumps(order) + "\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
        except BrokenPipeError:  # ended before it read the order
            answer = ""
        assert answer, self._ended()
        status, timed_out = json.loads(answer)
        said = log.read_text(errors="replace") if log.exists() else f"(no log: {log} not made)"
        how = (
            f"timed out after {timeout} s (killed)" if timed_out else f"ended with status {status}"
        )
        assert status == 0, f"{case.__name__} {how}:\n{said[-4000:]}{self._said_since(before)}"

    def _said_since(self, before: int) -> str:
        """What the prepared process's stderr took since its size was ``before`` (read where it
        is, without moving the offset that the process writes at), headed; "" where nothing."""
        fd = self.stderr.fileno()
        said = os.pread(fd, os.fstat(fd).st_size - before, before).decode(errors="replace")
        return f"\nthe prepared process's stderr:\n{said[-4000:]}" if said else ""

    def _ended(self) -> str:
        """Why the prepared process answers no more: its status, and what it said."""
        status = self.process.wait(timeout=60)
        self.stderr.seek(0)
        said = self.stderr.read().decode(errors="replace")[-4000:]
        return f"the prepared process (of {self.modules}) ended with status {status}:\n{said}"

    def close(self) -> None:
        with suppress(BrokenPipeError):  # (an order it never read, flushed again)
            self.process.stdin.close()
        self.process.wait(timeout=60)
        self.process.stdout.close()
        self.stderr.close()


def _import(name: str):
    """The module ``name``, a test module (``test_*``) with its asserts rewritten as pytest
    rewrites them (a plain import leaves a failure a bare ``AssertionError``)."""
    import ast
    import importlib
    import importlib.util

    from _pytest.assertion.rewrite import rewrite_asserts

    if name in sys.modules or not name.rpartition(".")[2].startswith("test_"):
        return importlib.import_module(name)
    spec = importlib.util.find_spec(name)
    source = Path(spec.origin).read_bytes()
    tree = ast.parse(source, filename=spec.origin)
    rewrite_asserts(tree, source, spec.origin)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        exec(compile(tree, spec.origin, "exec", dont_inherit=True), module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _serve(modules: list[str]) -> None:
    import threading

    for name in modules:  # what every case needs, imported once
        _import(name)
    for line in sys.stdin:
        module, function, kwargs, log, timeout = json.loads(line)
        # a Python thread would be lost in the child, and the locks it held with it (torch's
        # own threads are its to mend in a child, as in a DataLoader's forked workers)
        if threading.active_count() > 1:
            raise RuntimeError(f"the prepared process has threads: {threading.enumerate()}")
        pid = os.fork()
        if pid == 0:
            _child(module, function, kwargs, log)
        with suppress(OSError):  # (as the child does: whichever comes first)
            os.setpgid(pid, pid)
        status, timed_out = _wait(pid, timeout)
        print(json.dumps([os.waitstatus_to_exitcode(status), timed_out]), flush=True)


def _wait(pid: int, timeout: float) -> tuple[int, bool]:
    """The child ``pid``'s wait status, and whether it was killed, with its process group (what
    it started), for outliving ``timeout`` (hung: a lock left held); killed so too when this
    process is stopped (Ctrl-C) as it waits."""
    import time

    deadline = time.monotonic() + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status, False
            if time.monotonic() > deadline:
                _kill_group(pid)
                return os.waitpid(pid, 0)[1], True
            time.sleep(0.02)
    except BaseException:
        _kill_group(pid)
        raise


def _kill_group(pid: int) -> None:
    with suppress(OSError):  # (gone already)
        os.killpg(pid, signal.SIGKILL)
    with suppress(OSError):  # (a child not yet in its group)
        os.kill(pid, signal.SIGKILL)


def _child(module: str, function: str, kwargs: dict, log: str) -> None:
    """Run the case, in a process group of its own, with stdout and stderr in ``log``; end at
    once, whatever fails (no clean-up of the prepared process's, which is not the child's, and
    never back in its loop)."""
    status = 1
    try:
        os.setpgid(0, 0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        getattr(_import(module), function)(**kwargs)
        status = 0
    except BaseException:  # noqa: BLE001 - the case's failure, said in its log
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):  # (one the case closed: its end is not a failure)
                stream.flush()
        os._exit(status)


if __name__ == "__main__":
    _serve(sys.argv[1:])
