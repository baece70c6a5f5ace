"""loftup.stops: a stop raised in a finaliser, where Python drops it, is raised again at the
next check; one that came out is not, and nothing is kept outside a scope."""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading

import pytest
import torch

from finalisers import dropped_with
from loftup.errors import Terminated, terminate
from loftup.stops import Scope, check, done, stop


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


class Halt(Exception):
    """A stop of the tests' own: one that escaped a test fails it, where a KeyboardInterrupt
    would end the session."""


def test_a_stop_raised_again_in_a_finaliser_after_another_came_out_is_kept(printed):
    """check() inside a finaliser raises the first stop there, where it is swallowed again,
    after a second stop came out: once taken for an unknown exception, printed and lost."""
    with Scope():
        dropped_with(lambda: stop(Halt("first")))
        with pytest.raises(Halt, match="second"):
            stop(Halt("second"))
        dropped_with(check)
        with pytest.raises(Halt, match="first"):
            check()
    assert printed == []


def test_scopes_closed_out_of_order_or_twice_put_the_hook_back():
    """The hook the outermost scope replaced is put back as the last one closes, whichever it
    is (the inner one closed last raised AttributeError and left the hook swapped)."""
    hook = sys.unraisablehook
    outer, inner = Scope(), Scope()
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)
    outer.__exit__(None, None, None)  # twice: counted once
    assert sys.unraisablehook is not hook  # the inner one still open
    inner.__exit__(None, None, None)
    assert sys.unraisablehook is hook


def test_a_stop_swallowed_once_the_work_is_done_is_forgotten_until_its_scope_closes(printed):
    """``done()`` (eval davis's masks in place): a stop swallowed before or after it is not
    raised again, nor printed, to the end of the scope it was called in; an outer scope's
    work goes on as before, keeping them."""
    with Scope():
        with Scope():
            dropped_with(lambda: stop(Halt("before")))
            done()
            dropped_with(lambda: stop(Halt("after")))
            check()
        dropped_with(lambda: stop(Halt("outer")))
        with pytest.raises(Halt, match="outer"):
            check()
    assert printed == []


def test_a_sigterm_a_finaliser_swallowed_has_its_handler_put_back():
    """terminate() ignores a second SIGTERM for the clean-up; swallowed, no clean-up runs, so
    its handler is put back (a second SIGTERM stops the work at once, where it was ignored
    until the next check), and the Terminated is raised at the check."""
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        with Scope():
            dropped_with(terminate)
            assert signal.getsignal(signal.SIGTERM) is terminate
            with pytest.raises(Terminated):
                check()
            # raised again, its clean-up begins: a second SIGTERM ignored, as terminate() left
            # it (it stayed on terminate: a launcher's second cut the clean-up short)
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
            dropped_with(check)  # nothing kept: nothing raised, nothing changed
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_sigterm_swallowed_once_the_work_is_done_has_its_handler_put_back(printed):
    """Forgotten, as done() says, the work going on: SIGTERM was left ignored (terminate's
    own doing) for the rest of the command, a second one ignored too."""
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        with Scope():
            done()
            dropped_with(terminate)
            assert signal.getsignal(signal.SIGTERM) is terminate
            check()  # forgotten
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert printed == []


def test_a_check_in_another_thread_leaves_the_stop_to_the_main_threads(printed):
    """A worker thread's check (a loop run in a thread) took the stop, raised it in the
    thread, where it ended the thread alone, and the main thread's work went on."""
    raised = []

    def checking():
        try:
            check()
        except BaseException as e:  # noqa: BLE001 - whatever it raised, the test says
            raised.append(e)

    with Scope():
        dropped_with(lambda: stop(Halt("swallowed")))
        thread = threading.Thread(target=checking)
        thread.start()
        thread.join()
        assert raised == []
        with pytest.raises(Halt, match="swallowed"):
            check()
    assert printed == []


def test_done_marks_the_scope_it_was_called_in_whichever_closes_first(printed):
    """Its scope closed after the one around it: the outer one's closing forgot that the
    inner one's work was done (a depth, reset), and a stop swallowed then was raised."""
    outer, inner = Scope(), Scope()
    outer.__enter__()
    inner.__enter__()
    try:
        done()
        outer.__exit__(None, None, None)
        dropped_with(lambda: stop(Halt("forgotten")))
        check()
    finally:
        inner.__exit__(None, None, None)
        outer.__exit__(None, None, None)
    assert printed == []


def test_a_stop_swallowed_after_davis_masks_moved_in_is_raised_at_the_next_check(tmp_path, printed):
    """The command line's scope alone, as eval davis --save-masks runs in it: publish's done()
    marked it, and every stop a finaliser swallowed for the rest of the command (the report,
    the --json output, an experiment's next evaluation) was forgotten; done() now marks the
    scope of the move alone."""
    pytest.importorskip("fcntl")
    from loftup.eval.mask_staging import MaskStaging

    masks = tmp_path / "masks"
    with Scope():
        staging = MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"])
        (staging.path / "bear" / "00000.png").write_bytes(b"a mask")
        staging.publish({})
        assert (masks / "bear" / "00000.png").exists()  # in place: the move's work done
        dropped_with(lambda: stop(Halt("after")))
        with pytest.raises(Halt, match="after"):
            check()
    assert printed == []


def test_a_stop_swallowed_while_a_probe_is_fitted_stops_it_at_the_next_batch():
    """The probe's training (eval seg, depth, normals; fit_*_probe) checks before each batch:
    it went on to the last epoch, then the run wrote its scores."""
    from loftup.eval.probe import SEG_PROBE, train_probe

    steps = []

    def loss(out, y):
        steps.append(1)
        if len(steps) == 2:
            dropped_with(lambda: stop(Halt()))
        return torch.nn.functional.mse_loss(out, y)

    def batches(epoch):
        for _ in range(4):
            yield torch.rand(2, 4, 2, 2), torch.rand(2, 3, 2, 2)

    config = dataclasses.replace(SEG_PROBE, epochs=5, batch_size=2)
    with Scope(), pytest.raises(Halt):
        train_probe(torch.nn.Conv2d(4, 3, 1), batches, loss, config, 4, progress=False)
    assert len(steps) == 2  # of 20


def test_a_stop_swallowed_in_a_benchmark_round_stops_it_at_the_next():
    from loftup.bench import time_alternating

    calls = []

    def timed():
        calls.append(1)
        if len(calls) == 2:
            dropped_with(lambda: stop(Halt()))

    with Scope(), pytest.raises(Halt):
        time_alternating({"a": timed}, warmup=1, repeats=10)
    assert len(calls) == 2  # of 11


def test_a_ctrl_c_of_pythons_own_handler_a_finaliser_swallowed_is_raised_at_the_next_check(
    printed,
):
    """Inside a scope (a library caller's own), Python's SIGINT handler (default_int_handler,
    not the command line's) raises a KeyboardInterrupt that stop() did not mark: swallowed by
    a finaliser, it was printed and lost, and the work (a benchmark's rounds) went on."""

    with Scope():
        dropped_with(lambda: signal.default_int_handler(signal.SIGINT, None))
        with pytest.raises(KeyboardInterrupt):
            check()
    assert printed == []
