"""SIGTERM during a training run: stop at once before and after the steps, after the current
step (with a checkpoint) while they run."""

from __future__ import annotations

import signal
import threading

from ..errors import Terminated, terminate


class StopOnSigterm:
    """SIGTERM during a training run (in the main thread). Before and after the steps it stops
    the run at once (:class:`Terminated`, like Ctrl-C); while they run (``in_steps``) it asks them
    to stop after the current one, with a checkpoint, so that a scheduler's cancel or
    preemption loses no work. DataLoader workers ignore SIGTERM
    (:func:`~loftup.errors.worker_ignores_sigterm`), so a signal sent to every process of the
    job (as Slurm does) leaves them feeding the step being finished. The previous handler is
    put back at the end."""

    def __init__(self) -> None:
        self.requested = False
        self.in_steps = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if not self.in_steps:
            terminate()
        self.requested = True

    def __enter__(self) -> StopOnSigterm:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._previous is None:
            return
        if exc_type is not None and issubclass(exc_type, Terminated):
            if self._previous is terminate:  # the command line's: it keeps ignoring a second
                return  # SIGTERM while the first one's clean-up runs, and restores its own
        signal.signal(signal.SIGTERM, self._previous)
