"""A Python that imports torch, numpy and PIL once and runs each piece of code it is sent in a
fork of itself, without the second or two a new interpreter takes to import torch.
tests/file_modes.py starts it where file modes apply (as root: under setpriv); its forks keep
that.

What a fork takes from the request, as a new Python would: its environment (``os.environ``),
umask, folder, stdin (/dev/null), stdout and stderr (files), ``sys.argv`` and ``sys.path[0]``,
a fresh ``__main__`` and its own exit status, in a process group of its own. What it keeps of
this process's: what Python reads once as it starts (``PYTHON*``: its path, warnings, flags;
the locale, ``LC_*``, ``LANG``) and what its imports (torch, numpy, PIL and what they import,
tqdm among them) read once at import (``OMP_NUM_THREADS``, ``TQDM_*``, ...): the settings of
:data:`READ_AT_START`, which tests/file_modes.py starts a server with, one for each set of them
that its requests have. Modules already imported stay imported, with their state as here.

Run as ``python forking_python.py [PARENT]``: once imported, it answers ``{"ready": FOLDER}``
on stdout, a folder of its own for the calls' output files, removed as it ends. Then each line
on stdin is a JSON request {"code", "env", "umask", "cwd", "stdout", "stderr"} (the last two:
files for the code's output); for each, two lines answer on stdout: ``{"pid": PID}`` once the fork is started (its process
group, to kill on an interrupt), then ``{"status": STATUS}``, the exit status of the code run
as ``python -c CODE`` would run it. A fork that cannot be set up (its folder refused, say) says
why on its stderr file, with status 1; one whose stderr file cannot even be opened, on this
process's stderr. Only third-party modules that read no test's settings are imported here:
loftup and huggingface_hub read the environment when imported, so each fork imports them
itself. Nothing outlives its maker: the fork is killed (SIGKILL, by the kernel) when this
process ends, and this process ends (SIGTERM, by the kernel) when PARENT, the process that
started it, ends; stopped so or by a Ctrl-C as it waits for a fork, it kills the fork's
process group first (what the code started too)."""

import atexit
import ctypes
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
import types
from contextlib import suppress

import numpy  # noqa: F401 - imported once, for every fork
import PIL.Image  # noqa: F401
import torch  # noqa: F401

#: Prefixes of the environment variables read once, as Python starts (its path, warnings,
#: flags, locale) or as the imports above run (torch's threads, OpenMP's and BLAS's, tqdm's
#: defaults, glibc's malloc): a fork keeps this process's; a server is started for each set.
READ_AT_START = ("PYTHON", "LC_", "LANG", "LD_", "MALLOC_", "TORCH", "PYTORCH_", "OMP_", "GOMP_",
                 "KMP_", "MKL_", "OPENBLAS_", "NPY_", "NUMPY_", "TQDM_")  # fmt: skip


def die_with(parent: int, signum: int = signal.SIGKILL) -> None:
    """Have the kernel send this process ``signum`` when its parent ``parent`` ends (the thread
    that started it, strictly), or end now where it has ended already."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signum, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # ended before: this process was handed to another
        os._exit(1)


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _kill_group(pid: int) -> None:
    with suppress(OSError):  # (ended already)
        os.killpg(pid, signal.SIGKILL)
    with suppress(OSError):  # (not yet in its group)
        os.kill(pid, signal.SIGKILL)


def _redirect(fd: int, path: str, flags: int) -> None:
    opened = os.open(path, flags, 0o600)
    os.dup2(opened, fd)
    os.close(opened)


def run(request: dict) -> int:
    """In the fork: ``request["code"]`` run as ``python -c`` runs it; its exit status. Its
    output is redirected first, so that a failure to set the rest up is said there."""
    try:
        _redirect(1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        _redirect(2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        _redirect(0, os.devnull, os.O_RDONLY)
        sys.argv, sys.path[0] = ["-c"], ""  # as python -c: the current folder first
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        exec(compile(request["code"], "<string>", "exec"), main.__dict__)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - said as python -c says it
        traceback.print_exc()
        return 1
    return 0


def _child(request: dict, server: int) -> None:
    """The fork: in a process group of its own, killed when the ``server`` ends, runs the
    request and ends, never back in the loop of :func:`serve`, whatever fails."""
    status = 1
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (as in a new Python)
        die_with(server)
        status = run(request)
        # as at the interpreter's exit (its threads joined, atexit run, output flushed),
        # without tearing down the modules every fork has: a second each
        threading._shutdown()
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - on whichever stderr is open
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):
                stream.flush()
        os._exit(status)


def _answer(**answer) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def serve(parent: int | None) -> None:
    if parent is not None:  # a SIGTERM as it ends, which ends the fork's group too
        signal.signal(signal.SIGTERM, _terminated)
        die_with(parent, signal.SIGTERM)
    # for the calls' output files: removed as this process ends (by a SIGTERM too; killed, by
    # its caller), not left by a caller killed as a call ran
    folder = tempfile.mkdtemp(prefix="forking-python-")
    try:
        _answer(ready=folder)  # (its imports done)
        _serve()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(request, server)
        try:
            with suppress(OSError):  # (as the fork does: whichever comes first)
                os.setpgid(pid, pid)
            _answer(pid=pid)
            _, status = os.waitpid(pid, 0)
        except BaseException:  # Ctrl-C, its caller's end: the fork and what it started killed
            _kill_group(pid)
            raise
        _answer(status=os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else None)
