"""The ``loftup`` command line: parse arguments, call the library, print.

Every command is a function of the parsed arguments that returns an exit status; ``main(argv)``
is what tests call in-process, ``run()`` is the console script. Errors meant for the user
(:class:`loftup.LoftUpError`) are printed as one line and exit with status 2.

One module per command (or group): ``checkpoints`` (info, download), ``bench``, ``upsample``,
``train``, ``evaluate`` (eval), ``demo``, ``experiment`` and ``world``, each adding its parser
and running it; ``common`` holds what they share (argument types, ``--json`` output).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
import time
import warnings

from ..errors import LoftUpError, Terminated, printable, terminate
from ..listing import permission_denied
from ..stops import Scope, check, interrupt
from .bench import add_bench
from .checkpoints import add_download, add_info
from .common import _SETTINGS, end_if_a_look_is_left, owning_the_process, stdout_for_json
from .demo import add_demo
from .evaluate import add_eval
from .experiment import add_experiment
from .refusals import _bad_hub_id, _homeless_path
from .train import add_train
from .upsample import add_upsample
from .world import add_world

COMMANDS = [
    add_info,
    add_download,
    add_bench,
    add_upsample,
    add_train,
    add_eval,
    add_demo,
    add_experiment,
    add_world,
]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="loftup",
        description="Sharp, pixel-resolution features from vision foundation models with LoftUp: "
        "upsample, train, evaluate, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"loftup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


#: Errors of the file system that the user's paths or disk cause, and the user can fix: a file
#: where a folder goes (or the reverse), no permission, a read-only or full disk, a path whose
#: folder does not exist and cannot be made (``-o /proc/x``; ENOENT: the line names the path,
#: so one that is a bug of ours, a package file gone missing say, is still found from it), a
#: name too long for the file system, or a loop of links.
_USER_OS_ERRORS = {
    errno.ENOENT,
    errno.EEXIST,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENAMETOOLONG,
    errno.ELOOP,
}


#: What to lower when a command runs out of memory.
_MEMORY_FIX = {
    "train": "a smaller batch_size, stage1.image_size or stage2.load_size (a run that wrote a "
    "checkpoint goes on from it with --resume)",
    "upsample": "a smaller --size, --backbone-size or --batch-size",
    "eval": "a smaller --batch-size (then --probe-batch-size, which changes the probe's training)",
    "bench": "smaller --sizes or --batch",
    "experiment": "--quick, or a smaller --batch-size",
    "demo": "a smaller --size or --batch-size",
    "world": "a smaller --size (scenes, probe), --count (probe) or --batch-size (backbone)",
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # KEY=VALUE overrides after options (`experiment NAME --out X optim.lr=1e-3`): argparse
        # gives a command's positionals one stretch of the line (after NAME, or before the
        # first option); what follows is an override too, in the order written
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    started = time.monotonic()  # (the command's own looks: end_if_a_look_is_left)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
    hang_up = signal.getsignal(signal.SIGHUP) if main_thread else None  # (a stop may ignore it)
    # Ctrl-C raised as Python's handler raises it, and kept as SIGTERM is: one a finaliser
    # swallows ends the command all the same (loftup.stops); a SIGINT ignored stays so
    ctrl_c = main_thread and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if ctrl_c:
        signal.signal(signal.SIGINT, interrupt)
    # a warning is one line, as errors are (not the source path and line of whoever warned),
    # on a line of its own when a progress bar is on screen
    showwarning, warnings.showwarning = warnings.showwarning, _show_warning
    late: list[KeyboardInterrupt] = []
    try:
        # the command's process-wide settings (--threads, --max-image-pixels) and warning
        # filters last as long as it does; the settings are undone first (the pixel limit's
        # own catch_warnings puts back the filters as the command had them), then main's
        # catch_warnings the caller's
        with warnings.catch_warnings(), contextlib.ExitStack() as settings:
            _SETTINGS.append(settings)
            if main_thread:  # (signal handlers run in the main thread only)
                settings.enter_context(Scope())
                # a stop a finaliser swallowed after _main's last check (as the --json output
                # closed, the settings were undone) raised again there, kept for its status
                settings.callback(_last_check, late)
            if main_thread:  # (the process is the command's: it may end it, extract.watch)
                settings.enter_context(owning_the_process())
            try:
                status = _main(args)
            finally:
                _SETTINGS.pop()
    finally:
        warnings.showwarning = showwarning
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
            if hang_up is not None:
                signal.signal(signal.SIGHUP, hang_up)
        if ctrl_c:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if late and status not in (129, 130, 143):  # (one said already)
        status = _stopped(late[0])
    if main_thread:  # (the process is the command's)
        end_if_a_look_is_left(status, started)
    return status


def _last_check(late: list) -> None:
    """:func:`check` as the command's scope closes: a stop it raises kept in ``late`` (a
    HungUp, a SystemExit, ends the command as it does)."""
    try:
        check()
    except (KeyboardInterrupt, SystemExit) as e:  # Terminated too; HungUp a SystemExit
        if isinstance(e, SystemExit) and not _hung_up(e):
            raise
        late.append(e)


def _hung_up(e: BaseException) -> bool:
    """Whether ``e`` is training's HungUp (SIGHUP: loftup.train.stopping, loaded where it was
    raised)."""
    stopping = sys.modules.get("loftup.train.stopping")
    return stopping is not None and isinstance(e, stopping.HungUp)


def _stopped(e: BaseException) -> int:
    """Say what stopped the command (SIGTERM, Ctrl-C; a SIGHUP is not said: no terminal is
    left to read it); its exit status."""
    if isinstance(e, SystemExit):  # HungUp
        return 129
    if isinstance(e, Terminated):
        _say("terminated (SIGTERM)")
        return 143
    _say("interrupted")
    return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print ``message`` as ``warning: ...`` on one line. Through tqdm, which takes the bars
    that are drawn off the line, writes it and draws them again below it (Python's own
    printing would append it to the bar's line, and the bar's next update would overwrite it)."""
    from tqdm import tqdm

    try:
        tqdm.write(f"warning: {' '.join(str(message).split())}", file=file or sys.stderr)
    except (OSError, ValueError):  # a closed stderr: lost, as Python's own printing loses it
        pass


def _main(args) -> int:
    try:
        if isinstance(getattr(args, "device", None), str):  # one this machine has, before any work
            from ..api import resolve_device

            resolve_device(args.device)
        json_out = getattr(args, "json", None)
        if isinstance(json_out, str) and json_out != "-":  # said now, not after the work is done
            from ..paths import check_file_output

            # a folder, under a file, or in a read-only folder
            check_file_output(json_out, "--json", example="out.json")
        with stdout_for_json(json_out):
            status = int(args.func(args) or 0)
            check()  # a stop a finaliser swallowed (the command went on): its status
            return status
    except LoftUpError as e:  # a path in it may hold an escape, a newline: shown, not obeyed
        _say(f"error: {printable(str(e))}")
        return 2
    except BrokenPipeError:
        # whoever read stdout stopped (`loftup info --json - | head`): end quietly, as the
        # shell's tools do (status 128 + SIGPIPE), and let nothing flush there on the way out
        _drop_stdout()
        return 141
    except OSError as e:
        if e.errno not in _USER_OS_ERRORS:
            raise
        # a path the user gave that cannot be written (or read): its name and why, no traceback;
        # in a folder this user may not search (pathlib's is_file on 3.11): that folder, the fix
        why = (
            e.filename and e.errno in (errno.EACCES, errno.EPERM) and permission_denied(e.filename)
        )
        where = f"{e.filename}: " if e.filename else ""
        _say(f"error: {where}{why or e.strerror or e}")
        return 2
    except (KeyboardInterrupt, SystemExit) as e:  # Terminated too; HungUp a SystemExit
        if isinstance(e, SystemExit) and not _hung_up(e):
            raise
        return _stopped(e)
    except Exception as e:
        from ..errors import memory_shortfall, missing_dependency, out_of_memory

        missing = missing_dependency(e)
        if missing:
            _say(f"error: {missing}")
            return 2
        homeless = _homeless_path(args, e)
        if homeless:
            _say(f"error: {homeless}")
            return 2
        if _bad_hub_id(e):
            said = " ".join(str(e).split()).rstrip(".")
            _say(f"error: no hub id ORG/NAME: {said} (nor a file or folder here); check the "
                 "name or the path")  # fmt: skip
            return 2
        if not out_of_memory(e):
            raise
        fix = _MEMORY_FIX.get(args.command, "smaller inputs")
        if getattr(args, "task", None) == "davis":  # no probe to train: no --probe-batch-size
            fix = "a smaller --batch-size"
        _say(f"error: out of memory in loftup {args.command}: {memory_shortfall(e)}; try {fix}")
        return 2


def _drop_stdout() -> None:
    """Point stdout at the null device: the text still buffered for a closed pipe would fail
    again, with a traceback, when Python flushes it at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture): nothing to do
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _say(line: str) -> None:
    """``line`` on stderr, on a line of its own: the progress bars a failed command left open
    are closed first (else the error lands on the end of the bar's line). Under torchrun it
    starts with the process's rank: each says what ended it (one rank's error may be the cause
    of the others'), and the reader can tell which said what."""
    from tqdm import tqdm

    world = os.environ.get("WORLD_SIZE", "").strip()  # not a number: the error may say so
    if world.isdigit() and int(world) > 1 and "RANK" in os.environ:
        line = f"[rank {os.environ['RANK']}] {line}"

    for bar in list(getattr(tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot be closed must not hide the error
            pass
    try:  # one write, newline included: under torchrun the ranks' lines do not interleave
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except OSError:  # stderr gone (its reader, `2>&1 | tee log`, ended by the same Ctrl-C):
        pass  # the exit status still says what happened


def run() -> None:
    # a path whose bytes are no UTF-8 (-o $'out\xfe'), said on a stream that refuses what it
    # cannot encode (PYTHONIOENCODING=utf-8:strict), ended a finished run in a traceback
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    sys.exit(main())
