"""Signals at the moments loftup.stops guards, each case in a process of its own (conftest's
``forked``): a Ctrl-C in the close of a generator a probe's prediction asked its device of,
one as a training run's handlers are being set, a second SIGTERM as the clean-up of a
first one, swallowed and raised again, runs, and a SIGTERM or SIGHUP as the command's clean-up
after a run's stop runs."""

from __future__ import annotations

import os
import signal
import sys

import pytest
import torch

from finalisers import after_the_output, signal_in_a_finaliser

#: what the cases import, once for every case: conftest's ``forked``
PREPARED = ["loftup.eval.probe", "loftup.world.probe", "loftup.train.stopping", "loftup.cli"]


def _ctrl_c_as_parameters_closes(hook_of: str):
    """A profile hook that sends SIGINT as a ``parameters()`` generator asked for its first
    (under a function named ``hook_of``) is resumed: closed, where a stop is lost unless the
    code closes it."""
    started, fired = set(), []

    def hook(frame, event, arg):
        if fired or event != "call" or frame.f_code.co_name != "parameters":
            return
        if id(frame) in started:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)
            return
        below = frame.f_back
        while below is not None and below.f_code.co_name != hook_of:
            below = below.f_back
        if below is not None:
            started.add(id(frame))

    return hook, fired


@pytest.mark.parametrize("where", ["predict", "predict_normals", "features_of"])
def test_ctrl_c_as_a_probes_parameters_are_closed_comes_out(where, tmp_path, forked):
    """A probe's prediction (once per batch of eval seg and normals) and the world probe's
    features asked their device of ``next(parameters())``, the generator left open: a Ctrl-C
    whose handler ran as it was finalised was printed and lost, the prediction returned."""
    forked.run(_predicted, tmp_path / "log", where=where)


def _predicted(where: str) -> None:
    from loftup.eval.probe import NormalProbe, predict, predict_normals
    from loftup.world.probe import features_of

    class Featurizer(torch.nn.Conv2d):
        def normalize(self, x):
            return x

    calls = {
        "predict": lambda: predict(torch.nn.Conv2d(8, 3, 1), torch.rand(1, 8, 4, 4)),
        "predict_normals": lambda: predict_normals(NormalProbe(8), torch.rand(1, 8, 4, 4)),
        "features_of": lambda: features_of(Featurizer(3, 8, 1), torch.rand(1, 3, 4, 4)),
    }
    hook, fired = _ctrl_c_as_parameters_closes(where)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.setprofile(hook)
    try:
        with pytest.raises(KeyboardInterrupt):
            calls[where]()
    finally:
        sys.setprofile(None)
    assert fired, f"{where} never closed a parameters() generator"


def test_ctrl_c_as_a_runs_handlers_are_set_leaves_none_of_them(tmp_path, forked):
    """Ctrl-C as StopOnSignals sets its first handler: the KeyboardInterrupt comes out with
    the handlers, the unraisable hook and loftup.stops' scopes as before (they stayed: the
    hook swapped, and a later Ctrl-C a finaliser swallowed was kept for no one, not even
    printed)."""
    forked.run(_entered, tmp_path / "log")


def _entered() -> None:
    from loftup import stops
    from loftup.train.stopping import StopOnSignals

    signal.signal(signal.SIGINT, signal.default_int_handler)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    hook, fired = sys.unraisablehook, []

    def ctrl_c(frame, event, arg):
        if not fired and event == "c_return" and getattr(arg, "__name__", "") == "signal":
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    sys.setprofile(ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt), StopOnSignals(announce=False):
            pass
    finally:
        sys.setprofile(None)
    after = {s: signal.getsignal(s) for s in before}
    assert fired
    assert (after, sys.unraisablehook is hook, stops._SCOPES) == (before, True, [])


@pytest.mark.parametrize("where", ["command", "training"])
def test_a_second_sigterm_after_a_swallowed_one_is_raised_again_does_not_interrupt(
    where, tmp_path, forked
):
    """A SIGTERM whose handler ran in a finaliser (swallowed, its handler put back), raised
    again by the next check (the command's, or a training run's before its steps): its
    clean-up ran with the handler on, and a launcher's second SIGTERM cut it short (in a
    training run, StopOnSignals left its own handler on, which raised it as the DataLoader's
    workers were shut down)."""
    forked.run(_second_sigterm_after_check, tmp_path / "log", training=where == "training")


def _second_sigterm_after_check(training: bool) -> None:
    import contextlib

    from loftup.errors import Terminated, terminate
    from loftup.stops import Scope, check, owning_the_process
    from loftup.train.stopping import StopOnSignals

    signal.signal(signal.SIGTERM, terminate)  # the command line's, which owns the process
    stopping = StopOnSignals(announce=False) if training else contextlib.nullcontext()
    with owning_the_process(), Scope():
        with pytest.raises(Terminated), stopping:
            signal_in_a_finaliser()
            assert signal.getsignal(signal.SIGTERM) != signal.SIG_IGN  # put back: work goes on
            if training:
                with stopping.steps():
                    raise AssertionError("the steps began")
            check()
        # the clean-up of the first, as a launcher sends its second: ignored
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            pass


@pytest.mark.parametrize(
    "first, second",
    [
        (signal.SIGHUP, signal.SIGTERM),
        (signal.SIGINT, signal.SIGTERM),
        (signal.SIGTERM, signal.SIGHUP),
        (signal.SIGINT, signal.SIGHUP),
    ],
    ids=lambda s: s.name,
)
def test_a_signal_after_a_runs_stop_is_ignored_to_the_commands_end(first, second, tmp_path, forked):
    """loftup train stopped by SIGHUP or Ctrl-C, then a SIGTERM as the command went on with
    its clean-up (train's teardown of the process group): it ended with 143, saying
    "terminated (SIGTERM)"; stopped by any, then a SIGHUP there (a dropped connection sends
    two): killed by it, the clean-up cut short. Each is ignored now, the command ending with
    the first's status, said once."""
    forked.run(
        _second_signal_in_the_commands_clean_up, tmp_path / "log", first=first, second=second
    )


def _second_signal_in_the_commands_clean_up(first: int, second: int) -> None:
    import io

    import loftup.cli as cli
    import loftup.cli.outcome as outcome
    from loftup.train.stopping import StopOnSignals

    def a_run():
        try:
            with StopOnSignals(announce=False) as run, run.steps():
                os.kill(os.getpid(), first)  # during a step: the run stops after it
                for _ in range(100):
                    pass
                assert run.requested == first
                run.stop(first)
        finally:  # the command's clean-up after the run
            os.kill(os.getpid(), second)
            for _ in range(100):  # its handler's turn (if any) comes here
                pass

    outcome.stdout_for_json = after_the_output(a_run)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.stderr, said = io.StringIO(), sys.stderr
    try:
        status = cli.main(["info"])
    finally:
        sys.stderr, said = said, sys.stderr.getvalue()
    lines = {signal.SIGTERM: ["terminated (SIGTERM)"], signal.SIGINT: ["interrupted"]}
    assert (status, said.splitlines()) == (128 + first, lines.get(first, []))
