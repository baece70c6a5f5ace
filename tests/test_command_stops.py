"""The command line's end with a stop (loftup.cli main): one a finaliser swallowed after the
command's last check, a HungUp, and the signals a run's stop leaves ignored for the rest of
the command."""

from __future__ import annotations

import signal

import pytest

from finalisers import after_the_output, dropped_with
from loftup.errors import Terminated
from loftup.stops import stop


@pytest.mark.parametrize("stopped, code, said", [(Terminated, 143, "terminated (SIGTERM)"),
                                                  (KeyboardInterrupt, 130, "interrupted")])  # fmt: skip
def test_a_stop_swallowed_after_the_commands_last_check_ends_it(
    stopped, code, said, monkeypatch, capsys, printed
):
    """A finaliser that swallows a stop as the command's output (--json) closes, after its
    last check, in the command line's scope: the scope's end forgot it, status 0."""
    import loftup.cli as cli
    import loftup.cli.outcome as outcome  # (where _main opens the output)

    dropped = after_the_output(lambda: dropped_with(lambda: stop(stopped())))
    monkeypatch.setattr(outcome, "stdout_for_json", dropped)
    assert cli.main(["info"]) == code
    assert capsys.readouterr().err.splitlines()[-1:] == [said]
    assert printed == []


def test_a_hang_up_ends_the_command_with_its_status_not_a_system_exit(monkeypatch, capsys):
    """A HungUp (SIGHUP, a SystemExit) left loftup's main as an exception: its end (a torchrun
    rank's look still under way ended with os._exit, not a C++ abort) was skipped, and a
    HungUp kept as a stop came out after another already said (143) with its own 129. main
    returns 129 now, saying nothing (no terminal is left to read it)."""
    import loftup.cli as cli
    import loftup.cli.outcome as outcome  # (where _main opens the output)
    from loftup.train.stopping import HungUp

    ended = []
    monkeypatch.setattr(cli, "end_if_a_look_is_left", lambda status, started: ended.append(status))

    def hangs_up():
        raise HungUp()

    monkeypatch.setattr(outcome, "stdout_for_json", after_the_output(hangs_up))
    assert cli.main(["info"]) == 129 and ended == [129]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name
)
def test_the_signals_a_runs_stop_left_ignored_are_put_back_as_the_command_returns(
    signum, monkeypatch
):
    """A run that a stop ended leaves SIGTERM and SIGHUP ignored for the rest of the command
    (its clean-up); main puts back what its caller had (a Python caller, a notebook: its own
    SIGTERM handler, SIGHUP's default) as it returns."""
    import loftup.cli as cli
    import loftup.cli.outcome as outcome  # (where _main opens the output)
    from loftup.train.stopping import StopOnSignals

    during = []

    def a_run():
        try:
            with StopOnSignals(announce=False) as run, run.steps():
                run.stop(signum)
        finally:  # the command's clean-up after the run
            during.append((signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)))

    def callers(signum, frame):
        raise AssertionError("the caller's SIGTERM handler ran")

    monkeypatch.setattr(outcome, "stdout_for_json", after_the_output(a_run))
    before = signal.signal(signal.SIGTERM, callers), signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        assert cli.main(["info"]) == 128 + signum
        after = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGHUP, before[1])
    assert during == [(signal.SIG_IGN, signal.SIG_IGN)]
    assert after == (callers, signal.SIG_DFL)


@pytest.mark.parametrize("how", ["finaliser", "plain"])
def test_a_stop_as_the_commands_warning_filters_are_put_back_ends_it(
    how, monkeypatch, capsys, printed
):
    """A SIGTERM as main put back its caller's warning filters (its catch_warnings closed
    after the command's scope): one a finaliser swallowed there was printed ("Exception
    ignored in") and the command ended with status 0; one raised in plain code came out of
    main as an exception (a traceback, status 1). Both end the command with 143 now, said
    once."""
    import warnings

    import loftup.cli as cli

    real, entered, fired = warnings.catch_warnings, [], []

    def sigterm():  # (as terminate raises it)
        fired.append(how)
        if how == "finaliser":
            dropped_with(lambda: stop(Terminated()))
        else:
            stop(Terminated())

    class Filters(real):
        """main's (the outermost) calls sigterm() as it puts the filters back."""

        def __enter__(self):
            self.outermost = not entered
            entered.append(self)
            return super().__enter__()

        def __exit__(self, *exc):
            entered.remove(self)
            super().__exit__(*exc)
            if self.outermost and not fired:
                sigterm()

    monkeypatch.setattr(warnings, "catch_warnings", Filters)
    try:
        status = cli.main(["info"])
    except KeyboardInterrupt as e:  # (Terminated: caught, else it ends the test session)
        status = e
    finally:
        monkeypatch.undo()
    assert (status, fired) == (143, [how])
    assert capsys.readouterr().err.splitlines() == ["terminated (SIGTERM)"]
    assert printed == []


@pytest.mark.parametrize("stopped, code", [(Terminated, 143), (KeyboardInterrupt, 130)])
def test_the_console_script_ignores_sigterm_and_sighup_to_the_exit_after_a_stop(
    stopped, code, monkeypatch
):
    """``loftup`` (run) after a stop: main put back SIGTERM's and SIGHUP's handlers as it
    returned, and run ignored them again after it; a launcher's second SIGTERM in between (as
    main ended its looks: end_if_a_look_is_left) killed the process (-15, after it said its
    stop). main leaves them ignored for the console script now, to the end; a command that
    ends without a stop puts back what it found (the second SIGTERM reaches it)."""
    import os

    import loftup.cli as cli
    import loftup.cli.outcome as outcome  # (where _main opens the output)

    heard, looks_ended = [], cli.end_if_a_look_is_left

    def second_sigterm(status, started):  # a launcher's, as main returns
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):  # its handler's turn (if any) comes here
            pass
        looks_ended(status, started)

    def found(signum, frame):  # the process's own (its default would kill this one)
        heard.append(signum)

    before = signal.signal(signal.SIGTERM, found), signal.getsignal(signal.SIGHUP)
    monkeypatch.setattr("sys.argv", ["loftup", "info"])
    monkeypatch.setattr(cli, "end_if_a_look_is_left", second_sigterm)
    try:
        with pytest.raises(SystemExit) as ended:
            cli.run()
        assert (ended.value.code, heard, signal.getsignal(signal.SIGTERM)) == (0, [15], found)
        heard.clear()
        monkeypatch.setattr(outcome, "stdout_for_json", after_the_output(lambda: stop(stopped())))
        with pytest.raises(SystemExit) as ended:
            cli.run()
        exiting = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGHUP, before[1])
    assert (ended.value.code, heard, exiting) == (code, [], (signal.SIG_IGN, signal.SIG_IGN))
