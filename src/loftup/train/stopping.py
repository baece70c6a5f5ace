"""SIGTERM and Ctrl-C (SIGINT) during a training run: stop at once before and after the steps,
after the current step (with a checkpoint) while they run; a second Ctrl-C stops at once."""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager

from ..errors import Terminated, terminate

#: how each signal is named in what the run says
NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C (SIGINT)"}


class StopOnSignals:
    """SIGTERM (a scheduler's cancel, time limit or preemption) and SIGINT (Ctrl-C) during a
    training run (in the main thread). Before and after the steps either stops the run at once
    (:class:`Terminated`, :class:`KeyboardInterrupt`); while they run (inside :meth:`steps`,
    which ends however the steps end, by an error too) the first asks them to stop after the
    current one, with a checkpoint (:attr:`requested`: which signal; the loop then calls
    :meth:`stop`), so that no work is lost. A Ctrl-C after that
    stops at once, without waiting for the step (a later SIGTERM is ignored: launchers send it
    twice). ``announce``: say at the first signal that the run is stopping and how to stop it
    at once (rank 0 only, under torchrun).

    DataLoader workers ignore both signals (:func:`~loftup.train.loader.worker_ignores_stops`),
    so a signal sent to every process of the job (as Slurm does, and the terminal does with
    Ctrl-C) leaves them feeding the step being finished. SIGINT is left alone where it was
    ignored (a job started with ``nohup`` or in the background of a script). The previous
    handlers are put back at the end."""

    def __init__(self, announce: bool = True) -> None:
        self.requested: int | None = None
        self.in_steps = False
        self.announce = announce
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and (not self.in_steps or self.requested is not None):
            raise KeyboardInterrupt
        if not self.in_steps:
            terminate()
        if self.requested is not None:
            return
        self.requested = signum
        if self.announce:
            again = " (Ctrl-C again: stop at once, without one)" if signum == signal.SIGINT else ""
            _say(f"{NAMES[signum]}: stopping after this step, with a checkpoint{again}")

    @contextmanager
    def steps(self):
        """While the steps run: a signal asks them to stop after the current one."""
        self.in_steps = True
        try:
            yield self
        finally:
            self.in_steps = False

    def stop(self, by_sigterm: bool) -> None:
        """End the run, whose steps stopped at a signal (on any rank: ``by_sigterm``, SIGTERM on
        one of them): :class:`Terminated` as SIGTERM ends a command (status 143), else
        :class:`KeyboardInterrupt` as Ctrl-C does (130)."""
        self.in_steps = False
        if by_sigterm:
            terminate()
        raise KeyboardInterrupt

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
        if signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, None):  # None: not Python's
            self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        previous = self._previous.pop(signal.SIGINT, None)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        previous = self._previous.pop(signal.SIGTERM, None)
        if previous is None:
            return
        if exc_type is not None and issubclass(exc_type, Terminated):
            if previous is terminate:  # the command line's: it keeps ignoring a second
                return  # SIGTERM while the first one's clean-up runs, and restores its own
        signal.signal(signal.SIGTERM, previous)


def _say(line: str) -> None:
    """``line`` on stderr from a signal handler, under any progress bar's line: through
    ``sys.stderr`` (a notebook's shows it), or straight to the descriptor where the handler
    interrupted a write to ``sys.stderr``'s buffer, which refuses another."""
    try:
        print(f"\n{line}", file=sys.stderr, flush=True)
    except RuntimeError:  # "reentrant call inside <_io.BufferedWriter name='<stderr>'>"
        try:
            os.write(2, f"\n{line}\n".encode())
        except OSError:
            pass
    except (OSError, ValueError, AttributeError):  # a closed or missing stderr: no one to tell
        pass
