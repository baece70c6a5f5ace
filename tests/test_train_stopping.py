"""How a training run stops: a diverging gradient, Ctrl-C (also ending `| tee`), SIGTERM twice,
a terminal gone; each keeps the last good step and says how to go on.
"""

import contextlib
import json

import pytest
import torch

import loftup
from loftup.train import train
from train_fixtures import tiny_config as tiny

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
    pytest.mark.usefixtures("one_thread"),
]


def test_a_diverging_run_stops_before_its_weights_or_checkpoint_turn_nan(sa1b, tmp_path):
    """SGD at lr 1e30: step 0 sends the weights to ~1e30, step 1's loss and gradient are not
    finite. The run stops there, naming the step and the terms, and the checkpoint of step 1
    keeps finite weights (before, the NaN step was taken and saved over it, and the run
    exported a NaN upsampler as if it had finished)."""
    from loftup.errors import LoftUpError

    out = tmp_path / "nan"
    cfg = tiny(sa1b, out, 1, 4, "optim.name=sgd", "optim.lr=1e30", "log.ckpt_every=1")
    with pytest.raises(LoftUpError, match=r"^step 1: the gradient is not finite \(loss terms "
                       r"not finite: loss.*step 1\) is untouched: .*--resume"):  # fmt: skip
        train(cfg)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 1 and not (out / "final").exists()
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_a_diverging_run_leaves_the_metrics_of_the_steps_that_led_there(sa1b, tmp_path):
    """metrics.csv was written at checkpoints only: the rows since the last one, the losses
    that show how the run diverged, were lost when it stopped on a non-finite gradient."""
    out = tmp_path / "nan"
    cfg = tiny(sa1b, out, 1, 4, "optim.name=sgd", "optim.lr=1e30", "log.ckpt_every=100")
    with pytest.raises(loftup.LoftUpError, match=r"^step 1: the gradient is not finite"):
        train(cfg)
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("0,")


def test_a_diverging_run_whose_terminal_is_gone_still_says_why_it_stopped(
    sa1b, tmp_path, monkeypatch
):
    """`loftup train ... 2>&1 | tee log` with tee gone (ended, or its terminal closed) when the
    gradient turns non-finite: closing the progress bar wrote to the broken pipe, and its
    BrokenPipeError, a traceback, took the place of the error that says which step diverged and
    how to go on from the checkpoint."""
    import os
    import sys

    from loftup.train import loop

    read_end, write_end = os.pipe()
    terminal = open(write_end, "w", buffering=1)  # noqa: SIM115 - closed below, broken
    monkeypatch.setattr(sys, "stderr", terminal)
    real = loop.clip_limit

    def tee_gone_at_step_1(cfg, step):
        if step == 1:
            os.close(read_end)
        return real(cfg, step)

    monkeypatch.setattr(loop, "clip_limit", tee_gone_at_step_1)
    cfg = tiny(sa1b, tmp_path / "nan", 1, 4, "optim.name=sgd", "optim.lr=1e30",
               "log.progress=true")  # fmt: skip
    try:
        with pytest.raises(loftup.LoftUpError, match=r"^step 1: the gradient is not finite"):
            train(cfg)
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            terminal.close()


def _ctrl_c_ending_tee(
    sa1b, out, monkeypatch, name: str, at, steps: int, pause: float = 0, stops: bool = True
):
    """Train ``steps`` steps with stderr a pipe whose reader (tee) is gone, and Ctrl-C sent
    with it at the ``at``-th call (1-based) of ``loop.<name>`` (before it runs; after it where
    ``pause``, which then sleeps); the run stops (KeyboardInterrupt) where ``stops``, else ends
    as it would have. Returns the step the checkpoint holds."""
    import os
    import signal
    import sys
    import time

    from loftup.train import loop

    read_end, write_end = os.pipe()
    terminal = open(write_end, "w", buffering=1)  # noqa: SIM115 - closed below, broken
    monkeypatch.setattr(sys, "stderr", terminal)
    real, calls = getattr(loop, name), []

    def ctrl_c():
        os.close(read_end)  # tee ends with the same Ctrl-C
        os.kill(os.getpid(), signal.SIGINT)

    def spy(*args, **kwargs):
        calls.append(1)
        if len(calls) == at and not pause:
            ctrl_c()
        value = real(*args, **kwargs)
        if len(calls) == at and pause:
            ctrl_c()
            time.sleep(pause)  # a picture or checkpoint drawn: the bar writes at its update
        return value

    monkeypatch.setattr(loop, name, spy)
    try:
        with pytest.raises(KeyboardInterrupt) if stops else contextlib.nullcontext():
            train(tiny(sa1b, out, 1, steps, "log.progress=true", "log.ckpt_every=10"))
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            terminal.close()
    return torch.load(out / "checkpoint.pt", weights_only=True)["step"]


def test_ctrl_c_that_also_ends_the_tee_of_the_output_still_saves_the_step(
    sa1b, tmp_path, monkeypatch, caplog
):
    """`loftup train ... 2>&1 | tee train.log`: Ctrl-C ends tee as well, and the progress bar's
    next write to the broken pipe raised BrokenPipeError before the checkpoint was written: the
    run ended with none (exit status 141). The checkpoint now comes first, and the stop's
    advice, which went to the broken pipe, is kept in the run's folder too, until the run
    resumes."""
    out = tmp_path / "run"
    assert _ctrl_c_ending_tee(sa1b, out, monkeypatch, "draw_step", 2, 4) == 2
    assert (out / "stopped.txt").read_text() == (
        f"Ctrl-C (SIGINT): stopped after step 2 of 4; {out / 'checkpoint.pt'} holds it: run the "
        "same command with --resume to go on\n"
    )
    with caplog.at_level("WARNING", logger="loftup.train"):
        train(tiny(sa1b, out, 1, 4, "log.ckpt_every=10"), resume=True)
    assert not (out / "stopped.txt").exists()  # gone with the stop it told of
    assert "images" not in caplog.text  # the same data: nothing to say of its order


def test_ctrl_c_after_the_steps_all_reduce_and_a_tee_gone_still_stops_at_the_next_step(
    sa1b, tmp_path, monkeypatch
):
    """Ctrl-C that ends `| tee` too, arriving after a step's all-reduce (its votes are taken:
    while rank 0 draws pictures or saves a periodic checkpoint) is acted on at the next step;
    the progress bar's write in between, to the broken pipe, raised BrokenPipeError and ended
    the run with none of its steps since the last checkpoint."""
    out = tmp_path / "run"
    assert _ctrl_c_ending_tee(sa1b, out, monkeypatch, "mean_over_ranks", 2, 5, pause=0.15) == 3


def test_ctrl_c_after_the_last_steps_all_reduce_and_a_tee_gone_exports_final_then_stops(
    sa1b, tmp_path, monkeypatch, caplog
):
    """The same Ctrl-C after the last step's all-reduce: that step's checkpoint is the run's
    last, the run ends as a whole run does (final/ and summary.json written; the progress
    bar's closing write to the broken pipe raised BrokenPipeError before the export), and then
    stops as Ctrl-C asks (KeyboardInterrupt: exit status 130, which ends a `&&` chain), saying
    that the run is complete. The signal was dropped: the run ended as if none had come."""
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="loftup.train"):
        ends = _ctrl_c_ending_tee(sa1b, out, monkeypatch, "mean_over_ranks", 3, 3, 0.15)
    assert ends == 3 and (out / "final" / "config.json").is_file()
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    assert "Ctrl-C (SIGINT): stopped after the last step (3 of 3): the run is complete" in (
        caplog.text
    )
    assert not (out / "stopped.txt").exists()  # nothing to go on with


def test_ctrl_c_during_the_last_step_exports_final_then_stops(sa1b, tmp_path, monkeypatch):
    """Ctrl-C during the last step (before its all-reduce): the step is saved, and, all steps
    taken, final/ is exported before the stop, as after the all-reduce; before, the run stopped
    without final/ and told the user to --resume a run that had nothing left to do."""
    out = tmp_path / "run"
    assert _ctrl_c_ending_tee(sa1b, out, monkeypatch, "draw_step", 3, 3) == 3
    assert (out / "final" / "config.json").is_file() and not (out / "stopped.txt").exists()


def test_a_second_sigterm_after_the_last_step_does_not_cut_its_export_short(
    sa1b, tmp_path, monkeypatch
):
    """SIGTERM during the last step, then the launcher's second SIGTERM (torchrun passes on
    the one Slurm also sent to each process) once the steps have ended: the stop had begun, and
    a later SIGTERM is to be ignored, but the second ended the run at once, without final/ or
    summary.json (under torchrun the other processes then failed at the end's all-reduce)."""
    import os
    import signal

    from loftup.errors import Terminated
    from loftup.train import loop

    def sigterm_at(name: str, at: int) -> None:
        real, calls = getattr(loop, name), []

        def spy(*args, **kwargs):
            calls.append(1)
            if len(calls) == at:
                os.kill(os.getpid(), signal.SIGTERM)
            return real(*args, **kwargs)

        monkeypatch.setattr(loop, name, spy)

    sigterm_at("draw_step", 3)  # during the last of 3 steps
    sigterm_at("mean_over_ranks", 4)  # the end's (after the 3 steps' own)
    out = tmp_path / "run"
    with pytest.raises(Terminated):
        train(tiny(sa1b, out, 1, 3))
    assert (out / "final" / "config.json").is_file()
    assert json.loads((out / "summary.json").read_text())["steps"] == 3


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_stop_a_finaliser_swallowed_during_the_export_says_the_run_is_complete(
    signum, sa1b, tmp_path, monkeypatch, caplog
):
    """A SIGTERM (Ctrl-C) whose handler ran in a finaliser as final/ was exported, kept and
    raised again at the run's end: the run was complete (final/, summary.json) but said
    nothing of it, only "terminated (SIGTERM)", as if it had stopped with nothing to resume
    from. It now says so, as for a stop that came with the last step."""
    import signal

    from finalisers import signal_in_a_finaliser
    from loftup.train import loop

    real, sent = loop.finish_run, []

    def export(*args, **kwargs):
        real(*args, **kwargs)
        sent.append(signum)  # (as the export's last finaliser runs)
        signal_in_a_finaliser(getattr(signal, signum))

    monkeypatch.setattr(loop, "finish_run", export)
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="loftup.train"), pytest.raises(KeyboardInterrupt):
        train(tiny(sa1b, out, 1, 2))  # (Terminated a KeyboardInterrupt)
    name = {"SIGTERM": "SIGTERM", "SIGINT": "Ctrl-C (SIGINT)"}[signum]
    assert sent == [signum]
    assert f"{name}: stopped after the last step (2 of 2): the run is complete" in caplog.text
    assert (out / "final" / "config.json").is_file() and not (out / "stopped.txt").exists()
