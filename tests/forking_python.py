"""A Python that imports torch, numpy and PIL once and runs each piece of code it is sent in a
fork of itself: a fresh process for each (its own environment, folder, files, exit status),
without the second or two a new interpreter takes to import torch. tests/file_modes.py starts it
where file modes apply (as root: under setpriv); its forks keep that.

Run as ``python forking_python.py``: each line on stdin is a JSON request {"code", "env",
"cwd", "stdout", "stderr"} (the last two: files for the code's output); each answer on stdout
is the exit status of the code run as ``python -c CODE`` would run it, on a line of its own.
Only third-party modules that read no test's settings are imported here: loftup and
huggingface_hub read the environment when imported, so each fork imports them itself."""

import atexit
import json
import os
import sys
import threading
import traceback
import types

import numpy  # noqa: F401 - imported once, for every fork
import PIL.Image  # noqa: F401
import torch  # noqa: F401


def _redirect(fd: int, path: str, flags: int) -> None:
    opened = os.open(path, flags, 0o600)
    os.dup2(opened, fd)
    os.close(opened)


def run(request: dict) -> int:
    """In the fork: ``request["code"]`` run as ``python -c`` runs it; its exit status."""
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    _redirect(0, os.devnull, os.O_RDONLY)
    _redirect(1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    _redirect(2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    sys.argv, sys.path[0] = ["-c"], ""  # as python -c: the current folder first
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    try:
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


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            status = run(request)
            # as at the interpreter's exit (its threads joined, atexit run, output flushed),
            # without tearing down the modules every fork has: a second each
            threading._shutdown()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(f"{os.waitstatus_to_exitcode(status)}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
