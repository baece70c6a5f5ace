"""The command line's end with a stop (loftup.cli main): one a finaliser swallowed after the
command's last check, a HungUp, and the signals a run's stop leaves ignored for the rest of
the command."""

from __future__ import annotations

import pytest

from finalisers import dropped_with
from loftup.errors import Terminated
from loftup.stops import stop


@pytest.mark.parametrize("stopped, code, said", [(Terminated, 143, "terminated (SIGTERM)"),
                                                  (KeyboardInterrupt, 130, "interrupted")])  # fmt: skip
def test_a_stop_swallowed_after_the_commands_last_check_ends_it(
    stopped, code, said, monkeypatch, capsys, printed
):
    """A finaliser that swallows a stop as the command's output (--json) closes, after its
    last check, in the command line's scope: the scope's end forgot it, status 0."""
    import contextlib

    import loftup.cli as cli
    import loftup.cli.outcome as outcome  # (where _main opens the output)

    closing = outcome.stdout_for_json

    @contextlib.contextmanager
    def output(json_out):
        with closing(json_out):
            yield
        dropped_with(lambda: stop(stopped()))

    monkeypatch.setattr(outcome, "stdout_for_json", output)
    assert cli.main(["info"]) == code
    assert capsys.readouterr().err.splitlines()[-1:] == [said]
    assert printed == []


def test_a_hang_up_ends_the_command_with_its_status_not_a_system_exit(monkeypatch, capsys):
    """A HungUp (SIGHUP, a SystemExit) left loftup's main as an exception: its end (a torchrun
    rank's look still under way ended with os._exit, not a C++ abort) was skipped, and a
    HungUp kept as a stop came out after another already said (143) with its own 129. main
    returns 129 now, saying nothing (no terminal is left to read it)."""
    import contextlib

    import loftup.cli as cli
    import loftup.cli.outcome as outcome  # (where _main opens the output)
    from loftup.train.stopping import HungUp

    ended = []
    monkeypatch.setattr(cli, "end_if_a_look_is_left", lambda status, started: ended.append(status))
    closing = outcome.stdout_for_json

    @contextlib.contextmanager
    def hangs_up(json_out):
        with closing(json_out):
            yield
        raise HungUp()

    monkeypatch.setattr(outcome, "stdout_for_json", hangs_up)
    assert cli.main(["info"]) == 129 and ended == [129]
    assert capsys.readouterr().err == ""
