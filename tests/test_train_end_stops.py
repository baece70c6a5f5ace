"""A stop at a training run's very end: as ``final/`` is written, as the process group is let
go, as ``loftup train`` says its result; and what the stop says where a command wraps the run
(``loftup demo``, ``loftup experiment``: their own ``go_on``)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from processes import forked_ranks
from train_fixtures import tiny_config as tiny
from train_fixtures import tiny_overrides

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
    pytest.mark.usefixtures("one_thread"),
]

#: how a command that wraps the run (not ``loftup train``) goes on
WRAPPED = "run the wrapping command again to go on"


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    for _ in range(100):  # its handler's turn comes here
        pass


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


def test_a_stop_once_a_wrapped_run_is_complete_says_how_its_command_goes_on(
    sa1b, tmp_path, monkeypatch, caplog
):
    """train(go_on=...) (a demo's stage, an experiment's run) stopped by a SIGTERM once
    ``final/`` was written (as the run's folder is let go) said that "the run is complete",
    with nothing of its go_on: the demo read as finished. It says its go_on now."""
    from loftup.errors import Terminated
    from loftup.train import loop

    locked = loop.lock_run_folder

    def lock(out_dir, info, held, *args):
        got = locked(out_dir, info, held, *args)
        held.callback(_signal_self, signal.SIGTERM)  # (as the lock is let go)
        return got

    monkeypatch.setattr(loop, "lock_run_folder", lock)
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="loftup.train"), pytest.raises(Terminated):
        loop.train(tiny(sa1b, out, 1, 2), go_on=WRAPPED)
    lines = [r.getMessage() for r in caplog.records if "SIGTERM" in r.getMessage()]
    assert lines == [
        f"SIGTERM: stopped after the last step (2 of 2): this training run is complete, "
        f"{out / 'checkpoint.pt'} and {out / 'final'} are written; {WRAPPED}"
    ]


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
        _signal_self(signum)  # (as the export begins)
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
    "signum, said", [(signal.SIGTERM, "terminated (SIGTERM)"), (signal.SIGINT, "interrupted")]
)
def test_a_stop_as_loftup_train_says_its_result_says_the_run_is_complete(
    signum, said, sa1b, tmp_path, monkeypatch, capsys
):
    """A stop after train() returned, as `loftup train` printed its result (final/ and
    summary.json written), said only "terminated (SIGTERM)" or "interrupted", as if the run
    needed --resume. The run's complete line comes first now."""
    import loftup.cli as cli
    import loftup.cli.common as common

    real = common.say_done

    def say_done(text):
        _signal_self(signum)
        real(text)

    monkeypatch.setattr(common, "say_done", say_done)
    out = tmp_path / "run"
    status = cli.main(["train", "--stage", "1", *tiny_overrides(sa1b, out, 2)])
    assert status == 128 + signum
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C (SIGINT)"
    assert capsys.readouterr().err.splitlines()[-2:] == [
        f"{name}: stopped after the last step (2 of 2): the run is complete, "
        f"{out / 'checkpoint.pt'} and {out / 'final'} are written",
        said,
    ]


#: two ranks (rank 1 forked from rank 0) training a tiny run (data, out: argv), rank 0 getting
#: a SIGTERM as train() lets go of the process group (the command line's handler put back):
#: each says how train() ended and whether the group is destroyed
_TEARDOWN_STOP = """
import os, signal, sys
import torch
import torch.distributed as dist
from loftup.errors import Terminated, terminate
from loftup.train import loop
from train_fixtures import tiny_config
# imported once, before the fork (each rank importing them took 10 s of two shared cores)
import loftup.train.build, loftup.train.start
from transformers import Dinov2Model

torch.set_num_threads(1)
child = os.fork()
rank = 0 if child else 1
os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                  LOFTUP_DIST_TIMEOUT="60")
torn = loop.teardown

def teardown(info, error=None):
    if error is None and rank == 0:  # (the run's own end, not an error's)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            pass
    torn(info, error)

loop.teardown = teardown
signal.signal(signal.SIGTERM, terminate)  # the command line's
try:
    loop.train(tiny_config(sys.argv[1], sys.argv[2], 1, 2))
    ended = "done"
except Terminated:
    ended = "terminated"
print(f"{rank} {ended}, group destroyed: {not dist.is_initialized()}", flush=True)
if child:
    print(f"0 rank 1's status: {os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])}")
"""


@pytest.mark.slow  # two processes start and train two steps (about 10 s)
def test_a_stop_as_train_lets_go_of_the_process_group_still_destroys_it(sa1b, tmp_path):
    """Under torchrun, a SIGTERM as a complete run let go of the process group (the final
    teardown, before destroy_process_group) said the run was complete and ended it, the group
    never destroyed: left to the interpreter's exit and the last DDP wrapper, where a SIGTERMed
    run hung (see teardown). The group is destroyed before the stop goes on."""
    said, out, returncode = forked_ranks(_TEARDOWN_STOP, [str(sa1b), str(tmp_path / "run")],
                                         tmp_path)  # fmt: skip
    assert said["0"] == ["terminated, group destroyed: True", "rank 1's status: 0"], out
    assert said["1"] == ["done, group destroyed: True"], out
    assert returncode == 0, out


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


@pytest.mark.parametrize("where", ["after the vote", "at the teardown"])
def test_a_sigterm_once_a_complete_run_of_the_command_line_is_voted_on_is_ignored(
    where, sa1b, tmp_path, monkeypatch
):
    """Under torchrun, a SIGTERM that reached one process after the ranks voted no stop at the
    end of a complete run (as it let go of its folder, or of the process group) ended that one
    alone with 143, and torchrun failed the job whose run was complete. Under the command line
    the rest is clean-up now, as after a stop: SIGTERM is ignored, and train() returns; its
    handler is put back after."""
    from loftup.errors import terminate
    from loftup.stops import owning_the_process
    from loftup.train import loop

    real_end, torn = loop.end_run, loop.teardown

    def end_run(*args):
        real_end(*args)
        if where == "after the vote":
            _signal_self(signal.SIGTERM)

    def teardown(info, error=None):
        if error is None and where == "at the teardown":  # (the run's own end)
            _signal_self(signal.SIGTERM)
        torn(info, error)

    monkeypatch.setattr(loop, "end_run", end_run)
    monkeypatch.setattr(loop, "teardown", teardown)
    previous = signal.signal(signal.SIGTERM, terminate)  # the command line's
    try:
        with owning_the_process():
            try:
                result = loop.train(tiny(sa1b, tmp_path / "run", 1, 2))
            except KeyboardInterrupt as e:  # (Terminated one)
                pytest.fail(f"the complete run was stopped: {type(e).__name__}")
        assert result.steps == 2 and signal.getsignal(signal.SIGTERM) is terminate
    finally:
        signal.signal(signal.SIGTERM, previous)
