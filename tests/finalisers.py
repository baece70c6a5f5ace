"""Signals whose handler runs in a finaliser, where Python drops the exception it raises
(``Exception ignored in``): what loftup.stops keeps for the next check. For cases run each in
a process of its own (conftest's ``forked``)."""

from __future__ import annotations

import os
import signal


def signal_in_a_finaliser(signum: int = signal.SIGTERM) -> None:
    """A generator dropped whose close gets ``signum``: loftup's handler raises its stop in it
    (Terminated for SIGTERM), which Python swallows, as in a figure's or report's finaliser."""

    def closing():
        try:
            yield
        finally:
            os.kill(os.getpid(), signum)
            for _ in range(100):  # its handler's turn comes here, in the close
                pass

    started = closing()
    next(started)
    del started


def dropped_with(stopping) -> None:
    """A generator finalised as it is dropped, whose close calls ``stopping()``: what it
    raises (a stop) Python hands to sys.unraisablehook ("Exception ignored in") and goes on."""

    def steps():
        try:
            yield
        finally:
            stopping()

    started = steps()
    next(started)
    del started


def after_the_output(then):
    """A stand-in for loftup.cli.outcome.stdout_for_json (where the command line's _main opens
    a command's output) that calls ``then()`` as the output closes: after the command's last
    check, as a finaliser or the rest of a command's clean-up may run."""
    import contextlib

    from loftup.cli import outcome

    closing = outcome.stdout_for_json

    @contextlib.contextmanager
    def output(json_out):
        with closing(json_out):
            yield
        then()

    return output
