"""loftup.stops: a stop raised in a finaliser, where Python drops it, is raised again at the
next check; one that came out is not, and nothing is kept outside a scope."""

from __future__ import annotations

import sys

import pytest

from loftup.stops import Scope, check, stop


def _dropped_with_a_stop_in_its_close() -> None:
    """A generator whose close raises a stop, finalised as it is dropped: Python hands the
    stop to sys.unraisablehook ("Exception ignored in") and goes on."""

    def steps():
        try:
            yield
        finally:
            stop(KeyboardInterrupt())

    started = steps()
    next(started)
    del started


def test_a_stop_a_finaliser_swallowed_is_raised_at_the_next_check_once():
    printed = []
    hook, sys.unraisablehook = sys.unraisablehook, printed.append
    try:
        with Scope():
            _dropped_with_a_stop_in_its_close()
            with pytest.raises(KeyboardInterrupt):
                check()
            check()  # raised once: it came out
            with pytest.raises(KeyboardInterrupt):
                stop(KeyboardInterrupt())  # came out as raised: not raised again
            check()
            _dropped_with_a_stop_in_its_close()
        check()  # the scope's end forgets the one it did not raise again
        assert printed == []  # none printed, inside the scope
        assert sys.unraisablehook == printed.append  # the hook put back
    finally:
        sys.unraisablehook = hook
