"""Ctrl-C held while ``loftup eval davis --save-masks DIR`` does what must not be cut in two:
putting the earlier masks back, the rename of a staging folder and its new name remembered,
and the end of a run whose masks are in place (:mod:`.mask_staging`, :mod:`.mask_sweep`)."""

from __future__ import annotations

import contextlib
import signal


class Held(list):
    """The Ctrl-Cs that came while held (:func:`ctrl_c_held`); ``done``: the work is done,
    and one that came (or comes before the handler is put back) is forgotten."""

    done = False


@contextlib.contextmanager
def ctrl_c_held():
    """Run the body with SIGINT only recorded (a handler of its own, not a retry: a Ctrl-C on
    any line is held); once it ends, one that came is delivered to the handler there was
    (Python's: KeyboardInterrupt), unless the body set the yielded :class:`Held`'s ``done``.
    Outside the main thread, where no handler may be set (and SIGINT reaches the main thread
    alone), the body runs as it is."""
    came = Held()
    try:
        before = signal.signal(signal.SIGINT, lambda signum, frame: came.append(frame))
    except ValueError:  # not the main thread
        yield came
        return
    try:
        yield came
    finally:
        signal.signal(signal.SIGINT, before)
        if came and not came.done and callable(before):
            before(signal.SIGINT, came[0])
        elif came and not came.done and before == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)
