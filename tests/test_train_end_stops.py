"""A stop at a training run's very end: as ``final/`` is written, as the process group is let
go, as ``loftup train`` says its result; and what the stop says where a command wraps the run
(``loftup demo``, ``loftup experiment``: their own ``go_on``)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from train_fixtures import signal_at_the_end, signal_self, tiny_overrides
from train_fixtures import tiny_config as tiny

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
    pytest.mark.usefixtures("one_thread"),
]

#: how a command that wraps the run (not ``loftup train``) goes on
WRAPPED = "run the wrapping command again to go on"


def test_a_complete_runs_lines_say_how_a_wrapping_command_goes_on():
    """A stop once the run was complete said "the run is complete" whatever command ran it,
    dropping its ``go_on``, and the error line of a complete run said "(no --resume needed)":
    `loftup demo` stopped as stage 1 ended said the demo was complete (stage 2 never ran, and
    the same command was refused without --resume), `loftup experiment` (no --resume) was
    told none was needed. Where a command wraps the run, both lines say that this training
    run is complete and how that command goes on; ``loftup train``'s lines are as they were."""
    from loftup.train.stopping import complete_line, stop_line

    ckpt = Path("OUT/runs/stage1/checkpoint.pt")
    written = "OUT/runs/stage1/checkpoint.pt and OUT/runs/stage1/final are written"
    assert stop_line(signal.SIGTERM, 4, 4, ckpt, WRAPPED) == (
        f"SIGTERM: stopped after the last step (4 of 4): this training run is complete, "
        f"{written}; {WRAPPED}"
    )
    assert complete_line(4, 4, ckpt, WRAPPED) == (
        f"the last step taken (4 of 4): this training run is complete, {written}; {WRAPPED}"
    )
    assert stop_line(signal.SIGTERM, 4, 4, ckpt) == (
        f"SIGTERM: stopped after the last step (4 of 4): the run is complete, {written}"
    )
    assert complete_line(4, 4, ckpt) == (
        f"the last step taken (4 of 4): the run is complete, {written} (no --resume needed)"
    )


@pytest.mark.parametrize(
    "signum, where", [(signal.SIGTERM, "teardown"), (signal.SIGHUP, "lock")], ids=str
)
def test_a_stop_once_a_wrapped_run_is_complete_says_how_its_command_goes_on(
    signum, where, sa1b, tmp_path, monkeypatch, caplog
):
    """train(go_on=...) (a demo's stage, an experiment's run) stopped by a SIGTERM once
    ``final/`` was written (as the run's folder is let go) said that "the run is complete",
    with nothing of its go_on: the demo read as finished. Then, under the command line (it
    owns the process), such a stop was ignored after the ranks' vote of no stop, and `loftup
    demo` went on to exit 0 (a SIGTERM as its stage 1 ended, or at its teardown: the old
    code stopped with 143). It stops, says its go_on, and keeps the line in stopped.txt (a
    SIGHUP's terminal is gone), which the run's next start (the demo's --resume) removes."""
    from loftup.errors import Terminated, terminate
    from loftup.stops import owning_the_process
    from loftup.train import HungUp, loop

    locked, torn = loop.lock_run_folder, loop.teardown

    def lock(out_dir, info, held, *args):
        got = locked(out_dir, info, held, *args)
        if where == "lock":
            held.callback(signal_self, signum)  # (as the lock is let go)
        return got

    def teardown(info, error=None):
        if error is None and where == "teardown":  # (the run's own end)
            signal_self(signum)
        torn(info, error)

    monkeypatch.setattr(loop, "lock_run_folder", lock)
    monkeypatch.setattr(loop, "teardown", teardown)
    out = tmp_path / "run"
    name = signum.name
    line = (
        f"{name}: stopped after the last step (2 of 2): this training run is complete, "
        f"{out / 'checkpoint.pt'} and {out / 'final'} are written; {WRAPPED}"
    )
    hang_up = signal.getsignal(signal.SIGHUP)  # (a stop leaves both ignored: the command's)
    previous = signal.signal(signal.SIGTERM, terminate)  # the command line's
    try:
        with caplog.at_level("WARNING", logger="loftup.train"), owning_the_process():
            with pytest.raises(Terminated if signum == signal.SIGTERM else HungUp):
                loop.train(tiny(sa1b, out, 1, 2), go_on=WRAPPED)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, hang_up)
    assert [r.getMessage() for r in caplog.records if name in r.getMessage()] == [line]
    assert (out / "stopped.txt").read_text() == f"{line}\n"
    monkeypatch.setattr(loop, "lock_run_folder", locked)
    monkeypatch.setattr(loop, "teardown", torn)
    loop.train(tiny(sa1b, out, 1, 2), go_on=WRAPPED, resume=True)  # (a demo's --resume)
    assert not (out / "stopped.txt").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_as_final_is_written_says_that_resume_exports_it(
    signum, sa1b, tmp_path, monkeypatch, caplog
):
    """A stop while ``final/`` was written (every step taken and checkpointed) ended the run
    with no line of its own: no final/, no summary.json, no stopped.txt (a SIGHUP's line is
    kept there, the terminal gone), nothing saying that --resume exports it. It says so now,
    in the log and in stopped.txt, and --resume does export it."""
    from loftup.train import loop
    from loftup.train.stopping import HungUp

    finish = loop.finish_run

    def finish_run(*args, **kwargs):
        signal_self(signum)  # (as the export begins)
        return finish(*args, **kwargs)

    monkeypatch.setattr(loop, "finish_run", finish_run)
    out = tmp_path / "run"
    name = "SIGTERM" if signum == signal.SIGTERM else "SIGHUP"
    line = (
        f"{name}: stopped as {out / 'final'} was written, after the last step (2 of 2); "
        f"{out / 'checkpoint.pt'} holds it: run the same command with --resume to export it"
    )
    stopped = KeyboardInterrupt if signum == signal.SIGTERM else HungUp  # (Terminated one)
    with caplog.at_level("WARNING", logger="loftup.train"), pytest.raises(stopped):
        loop.train(tiny(sa1b, out, 1, 2))
    assert [r.getMessage() for r in caplog.records if name in r.getMessage()] == [line]
    assert (out / "stopped.txt").read_text() == f"{line}\n"
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    assert not (out / "final").exists() and not (out / "summary.json").exists()
    monkeypatch.setattr(loop, "finish_run", finish)
    loop.train(tiny(sa1b, out, 1, 2), resume=True)
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
    assert (out / "final").is_dir() and not (out / "stopped.txt").exists()


@pytest.mark.parametrize(
    "signum, where",
    [
        (signal.SIGTERM, "after the vote"),
        (signal.SIGTERM, "at the teardown"),
        (signal.SIGTERM, "as its result is said"),
        (signal.SIGINT, "as its result is said"),
        (signal.SIGTERM, "as the command returns"),
    ],
)
def test_a_stop_at_the_end_of_loftup_train_on_one_process_says_the_run_is_complete(
    signum, where, sa1b, tmp_path, monkeypatch, capsys
):
    """A stop after train() returned, as `loftup train` printed its result (final/ and
    summary.json written), said only "terminated (SIGTERM)" or "interrupted", as if the run
    needed --resume; so did one as the command returned (after its log handler was let go).
    Then a SIGTERM after the ranks' vote of no stop, or as the process group was let go, was
    ignored on one process too (exit 0: a `&&` chain went on; no torchrun job there to keep
    from failing). Each stops the command with its status, the run's complete line first."""
    import loftup.cli as cli

    signal_at_the_end(where, signum, monkeypatch.setattr)
    out = tmp_path / "run"
    status = cli.main(["train", "--stage", "1", *tiny_overrides(sa1b, out, 2)])
    assert status == 128 + signum
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C (SIGINT)"
    said = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    assert capsys.readouterr().err.splitlines()[-2:] == [
        f"{name}: stopped after the last step (2 of 2): the run is complete, "
        f"{out / 'checkpoint.pt'} and {out / 'final'} are written",
        said,
    ]


def test_the_stops_train_raises_are_importable_where_train_is():
    """train()'s docstring names what a stop raises; a caller that catches them found
    HungUp only in loftup.train.stopping and Terminated in loftup.errors."""
    import loftup
    import loftup.train
    from loftup.errors import Terminated
    from loftup.train.stopping import HungUp

    assert loftup.Terminated is Terminated and "Terminated" in loftup.__all__
    assert loftup.train.HungUp is HungUp and "HungUp" in loftup.train.__all__
    assert issubclass(Terminated, KeyboardInterrupt) and HungUp().code == 129
