"""A Python that imports torch, numpy and PIL once and runs each piece of code it is sent in a
fork of itself, without the second or two a new interpreter takes to import torch.
tests/file_modes.py starts it where file modes apply (as root: under setpriv); its forks keep
that.

What a fork takes from the request, as a new Python would: its environment (``os.environ``),
umask, folder, stdin (/dev/null), stdout and stderr (files), ``sys.argv`` and ``sys.path[0]``,
a fresh ``__main__`` and its own exit status, in a process group of its own. What it does NOT
take: whatever this process's imports read once at import (torch, numpy, PIL and what they
import, tqdm among them): torch's thread count (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``),
tqdm's ``TQDM_*`` defaults, ``TORCH_*`` settings; tests/file_modes.py refuses a request whose
environment differs from this process's there (:data:`READ_AT_IMPORT`). Modules already
imported stay imported, with their state as here.

Run as ``python forking_python.py``: each line on stdin is a JSON request {"code", "env",
"umask", "cwd", "stdout", "stderr"} (the last two: files for the code's output); for each, two
lines answer on stdout: ``{"pid": PID}`` once the fork is started (its process group, to kill
on an interrupt), then ``{"status": STATUS}``, the exit status of the code run as ``python -c
CODE`` would run it. A fork that cannot be set up (its folder refused, say) says why on its
stderr file, with status 1; one whose stderr file cannot even be opened, on this process's
stderr. Only third-party modules that read no test's settings are imported here: loftup and
huggingface_hub read the environment when imported, so each fork imports them itself."""

import atexit
import json
import os
import sys
import threading
import traceback
import types
from contextlib import suppress

import numpy  # noqa: F401 - imported once, for every fork
import PIL.Image  # noqa: F401
import torch  # noqa: F401

#: Prefixes of the environment variables read by the imports above, once: a fork cannot take
#: other values of them from its request.
READ_AT_IMPORT = ("TQDM_", "OMP_", "MKL_", "TORCH_")


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


def _child(request: dict) -> None:
    """The fork: in a process group of its own, runs the request and ends, never back in the
    loop of :func:`serve`, whatever fails."""
    status = 1
    try:
        os.setpgid(0, 0)
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


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        with suppress(OSError):  # (as the fork does: whichever comes first)
            os.setpgid(pid, pid)
        _answer(pid=pid)
        _, status = os.waitpid(pid, 0)
        _answer(status=os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    serve()
