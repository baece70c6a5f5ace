"""The signals a training run stops on and the stop each raises: SIGTERM
:class:`~loftup.errors.Terminated` (status 143), SIGHUP :class:`HungUp` (129), Ctrl-C a
``KeyboardInterrupt`` (130); :func:`signal_of` names the signal of a stop, and
:data:`PRECEDENCE` which one every rank stops on where the ranks got different ones (how
they are caught: :mod:`.stopping`)."""

from __future__ import annotations

import signal

from ..errors import Terminated

#: which signal a run stopped on every rank names where the ranks got different ones
PRECEDENCE = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class HungUp(SystemExit):
    """SIGHUP: the terminal the run was started from is gone (an ssh connection dropped, its
    window closed). The command exits with status 129 (128 + 1, as a shell reports a process
    SIGHUP ended) and says nothing on the way out: no one is left to read it, and a write to a
    hung-up terminal fails."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGHUP)


def signal_of(e: BaseException) -> int:
    """The signal whose stop ``e`` is: SIGTERM for :class:`Terminated`, SIGHUP for
    :class:`HungUp`, else Ctrl-C (a ``KeyboardInterrupt``)."""
    if isinstance(e, Terminated):
        return signal.SIGTERM
    return signal.SIGHUP if isinstance(e, HungUp) else signal.SIGINT
