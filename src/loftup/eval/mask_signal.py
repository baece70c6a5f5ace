"""Ctrl-C (and SIGTERM, SIGHUP) held while ``loftup eval davis --save-masks DIR`` does what must
not be cut in two: putting the earlier masks back, the rename of a staging folder and its new
name remembered, and the end of a run whose masks are in place (:mod:`.mask_staging`,
:mod:`.mask_sweep`)."""

from __future__ import annotations

import contextlib
import signal

#: The signals held: Ctrl-C, and a job scheduler's cancel, time limit or preemption (SIGTERM;
#: the command line's handler raises :class:`loftup.errors.Terminated`), and a closed terminal.
HELD_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Held(list):
    """The signals that came while held (:func:`ctrl_c_held`), as ``(signum, frame)``;
    ``done``: the work is done, and one that came (or comes before the handler is put back)
    is forgotten."""

    done = False

    def __init__(self):
        super().__init__()
        self.handlers: dict = {}  # the handler each held signal had before

    def deliver(self) -> None:
        """Hand each signal held to the handler it had before (Python's SIGINT one raises
        KeyboardInterrupt; a handler of the user's decides by raising or not); one whose
        handler was the system's default stays held (its action, often the end of the
        process, is taken once the hold ends) and stops the body (KeyboardInterrupt)."""
        stop = False
        while self:
            signum, frame = self[0]
            before = self.handlers.get(signum)
            if not callable(before):  # SIG_DFL: taken at the hold's end
                stop = True
                break
            self.pop(0)
            before(signum, frame)
        if stop:
            raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_held():
    """Run the body with SIGINT, SIGTERM and SIGHUP only recorded (a handler of their own, not
    a retry: a signal on any line is held) where their handler would act: one ignored
    (SIG_IGN) stays ignored. Once the body ends, one that came is delivered to the handler
    there was (Python's SIGINT one: KeyboardInterrupt; SIG_DFL: the signal raised again with
    it), unless the body set the yielded :class:`Held`'s ``done``; the body may deliver them
    sooner, at a point where it can stop (:meth:`Held.deliver`). Outside the main thread,
    where no handler may be set (and signals reach the main thread alone), the body runs as
    it is."""
    came = Held()
    in_main = True
    try:
        for signum in HELD_SIGNALS:
            before = signal.getsignal(signum)
            if before is None or before == signal.SIG_IGN:  # (None: set from C, kept)
                continue
            signal.signal(signum, lambda signum, frame: came.append((signum, frame)))
            came.handlers[signum] = before
    except ValueError:  # not the main thread (nothing set: SIGINT is the first)
        in_main = False
    if not in_main:
        yield came
        return
    try:
        yield came
    finally:
        for signum, before in came.handlers.items():
            signal.signal(signum, before)
        while came and not came.done:
            signum, frame = came.pop(0)
            before = came.handlers[signum]
            if callable(before):
                before(signum, frame)
            else:
                signal.raise_signal(signum)
