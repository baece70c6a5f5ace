"""A training run's signal handlers (loftup.train.stopping.StopOnSignals) with loftup.stops:
a stop a finaliser swallowed after the steps, and the handlers a run puts back as it ends,
for the command line and for a Python caller."""

from __future__ import annotations

import contextlib
import signal

import pytest

from finalisers import dropped_with
from loftup.errors import Terminated, terminate
from loftup.stops import Scope, check


def test_a_stop_swallowed_after_a_runs_steps_comes_out_of_its_end_from_python(printed):
    """train() called from Python (no command line around it): a SIGTERM whose handler ran in
    a finaliser after the steps (the loader's __del__, the export) was kept by the run's scope
    and forgotten as it closed, and train() returned as if nothing had come; it now comes out
    of the run's end, its handlers put back as they were."""
    from loftup.train.stopping import StopOnSignals

    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with pytest.raises(Terminated):
            with StopOnSignals(announce=False) as stopping:
                with stopping.steps():
                    pass
                dropped_with(lambda: stopping._handle(signal.SIGTERM, None))
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert printed == []
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_hang_up_kept_by_the_command_leaves_a_callers_sighup_as_it_was(printed):
    """A SIGHUP swallowed during a run and raised again at a later check set SIGHUP ignored,
    as its handler does for the clean-up, even where the run had already put back the caller's
    (its default): a Python caller (a notebook, a script) then ignored hang-ups for good."""
    from loftup.train.stopping import HungUp, StopOnSignals

    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with Scope():
            stopping = StopOnSignals(announce=False)
            stopping.__enter__()
            dropped_with(lambda: stopping._handle(signal.SIGHUP, None))
            stopping._put_back(None, None)  # the run's own end, as if it had not looked
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
            with pytest.raises(HungUp):
                check()
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
            stopping._scope.__exit__()
    finally:
        signal.signal(signal.SIGHUP, previous)


def _callers_sighup(signum, frame):
    """A SIGHUP handler of the caller's own (not loftup's)."""


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name
)
@pytest.mark.parametrize(
    "caller, sigterm, sighup",
    [
        ("command", terminate, signal.SIG_DFL),
        ("command", terminate, _callers_sighup),
        ("python", signal.SIG_DFL, signal.SIG_DFL),
        ("python", terminate, _callers_sighup),
    ],
    ids=["command", "command-own-sighup", "python", "python-terminate"],
)
def test_a_run_a_stop_ended_leaves_sigterm_and_sighup_ignored_for_the_commands_clean_up(
    signum, caller, sigterm, sighup
):
    """A run of the command line's (it owns the process) that a stop ended: SIGTERM stayed
    ignored after a SIGTERM stop only, and SIGHUP was put back to its default after any, so a
    second signal as the command went on with its clean-up (the DataLoader's shutdown, the
    process group's) ended it. Now both stay ignored, SIGHUP where the run took it (a handler
    of the caller's stays). Called from Python each handler is put back, loftup's terminate
    too: a caller that installed it was taken for the command line, and was left ignoring
    SIGTERM and SIGHUP for good, its own SIGHUP handler replaced."""
    from loftup.stops import interrupt, owning_the_process
    from loftup.train.stopping import StopOnSignals

    ours = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    before = {s: signal.getsignal(s) for s in ours}
    given = {signal.SIGTERM: sigterm, signal.SIGHUP: sighup, signal.SIGINT: interrupt}
    owner = owning_the_process() if caller == "command" else contextlib.nullcontext()
    try:
        for s, handler in given.items():
            signal.signal(s, handler)
        with owner, pytest.raises((KeyboardInterrupt, SystemExit)):  # (HungUp a SystemExit)
            with StopOnSignals(announce=False) as run, run.steps():
                run.stop(signum)
        after = {s: signal.getsignal(s) for s in ours}
        if caller == "command":  # (a Ctrl-C still stops at once)
            given[signal.SIGTERM] = signal.SIG_IGN
            if sighup == signal.SIG_DFL:
                given[signal.SIGHUP] = signal.SIG_IGN
        assert after == given
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
