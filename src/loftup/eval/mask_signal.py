"""Ctrl-C held while ``loftup eval davis --save-masks DIR`` does what must not be cut in two:
putting the earlier masks back, the rename of a staging folder and its new name remembered,
and the end of a run whose masks are in place (:mod:`.mask_staging`, :mod:`.mask_sweep`)."""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def ctrl_c_held(*, drop: bool = False):
    """Run the body with SIGINT only recorded (a handler of its own, not a retry: a Ctrl-C on
    any line is held); once it ends, one that came is delivered to the handler there was
    (Python's: KeyboardInterrupt), or, with ``drop``, forgotten (the run's work is done).
    Yields a list that holds an entry once a Ctrl-C came. Outside the main thread, where no
    handler may be set (and SIGINT reaches the main thread alone), the body runs as it is."""
    came: list = []
    try:
        before = signal.signal(signal.SIGINT, lambda signum, frame: came.append(frame))
    except ValueError:  # not the main thread
        yield came
        return
    try:
        yield came
    finally:
        signal.signal(signal.SIGINT, before)
        if came and not drop and callable(before):
            before(signal.SIGINT, came[0])
        elif came and not drop and before == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)
