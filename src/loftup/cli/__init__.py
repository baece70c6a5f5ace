"""The ``loftup`` command line: parse arguments, call the library, print.

Every command is a function of the parsed arguments that returns an exit status; ``main(argv)``
is what tests call in-process, ``run()`` is the console script. Errors meant for the user
(:class:`loftup.LoftUpError`) are printed as one line and exit with status 2.

One module per command (or group): ``checkpoints`` (info, download), ``bench``, ``upsample``,
``train``, ``evaluate`` (eval), ``demo``, ``experiment`` and ``world``, each adding its parser
and running it; ``common`` holds what they share (argument types, ``--json`` output), and
``outcome`` how a command's end is said (its errors, a stop, a warning: one line each).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
import warnings

from ..errors import printable, terminate
from ..stops import Scope, check, interrupt, only_clean_up_left
from .bench import add_bench
from .checkpoints import add_download, add_info
from .common import _SETTINGS, end_if_a_look_is_left, owning_the_process
from .demo import add_demo
from .evaluate import add_eval
from .experiment import add_experiment
from .outcome import _hung_up, _main, _show_warning, _stopped, forget_the_work
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


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its commands' too), whose error line quotes what the user typed
    (``unrecognized arguments: ...``, a value an argument's type refused) escaped where it is
    not printable (:func:`~loftup.errors.printable`), as loftup's own errors do."""

    def error(self, message: str):
        super().error(printable(message))


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
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


#: the exit statuses of a stop (SIGHUP, Ctrl-C, SIGTERM: 128 + the signal's number)
_STOPPED = (129, 130, 143)


def main(argv: list[str] | None = None, *, _console_script: bool = False) -> int:
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit status.
    ``_console_script``: the process ends as this returns (:func:`run`), so after a stop, or
    once a torchrun job's complete run left only its clean-up (:func:`~loftup.stops.clean_up_only`),
    SIGTERM and SIGHUP stay ignored (to the interpreter's exit) rather than put back."""
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
    status = None
    try:
        status = _command(args, main_thread)
    finally:
        warnings.showwarning = showwarning
        if main_thread and _console_script and (status in _STOPPED or only_clean_up_left()):
            # a second SIGTERM (a launcher's) or SIGHUP after a stop is ignored to the
            # process's end, as during the command: the interpreter's exit (the DataLoader
            # workers' shutdown) is not cut short (put back here, then ignored again by run,
            # a SIGTERM in between killed the process after it said its stop); so is one to
            # a rank of a complete torchrun job (it would fail the job)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        elif main_thread:
            signal.signal(signal.SIGTERM, previous)
            if hang_up is not None:
                signal.signal(signal.SIGHUP, hang_up)
        if ctrl_c:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if main_thread:  # (the process is the command's)
        end_if_a_look_is_left(status, started)
    return status


def _command(args, main_thread: bool) -> int:
    """Run the command ``args`` in its scope (its process-wide settings, its warning filters,
    a stop's last check); returns its exit status, a stop's where one ended it."""
    late: list[KeyboardInterrupt] = []
    status = None
    forget_the_work()  # (an earlier command's)
    try:
        # the command's process-wide settings (--threads, --max-image-pixels) and warning
        # filters last as long as it does; the settings are undone first (the pixel limit's
        # own catch_warnings puts back the filters as the command had them), then main's
        # catch_warnings the caller's
        with contextlib.ExitStack() as settings:
            _SETTINGS.append(settings)
            if main_thread:  # (signal handlers run in the main thread only)
                settings.enter_context(Scope())
                # a stop a finaliser swallowed after _main's last check (as the --json output
                # closed, the settings were undone, the caller's warning filters put back)
                # raised again there, kept for its status
                settings.callback(_last_check, late)
            settings.enter_context(warnings.catch_warnings())
            if main_thread:  # (the process is the command's: it may end it, extract.watch)
                settings.enter_context(owning_the_process())
            try:
                status = _main(args)
            finally:
                _SETTINGS.pop()
    except (KeyboardInterrupt, SystemExit) as e:  # a stop as the command's scope closed
        if isinstance(e, SystemExit) and not _hung_up(e):  # (Terminated a KeyboardInterrupt)
            raise
        if status not in _STOPPED:  # (one said already)
            status = _stopped(e)
    if late and status not in _STOPPED:  # (one said already)
        status = _stopped(late[0])
    forget_the_work()
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


def run() -> None:
    # a path whose bytes are no UTF-8 (-o $'out\xfe'), said on a stream that refuses what it
    # cannot encode (PYTHONIOENCODING=utf-8:strict), ended a finished run in a traceback
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    sys.exit(main(_console_script=True))
