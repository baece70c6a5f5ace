"""`loftup experiment` on the command line: its errors before any work, its last lines and
status, --help, and the torch threads it leaves as they were."""

from __future__ import annotations

import pytest
import torch

from loftup.cli import main
from loftup.errors import LoftUpError
from loftup.experiments import ExperimentSettings


def test_cli_names_the_experiments_and_refuses_bad_input(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "colour"])
    assert "invalid choice: 'colour'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # only NAME is missing: KEY=VALUE entries are optional
        main(["experiment"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "loftup experiment: error: the following arguments are required: NAME"
    )
    assert main(["experiment", "coords", "--eval-dataset", "voc"]) == 2
    err = capsys.readouterr().err
    assert "--eval-dataset needs --eval-root" in err and len(err.strip().splitlines()) == 1


def test_a_folder_with_another_experiments_report_is_refused_before_any_work(tmp_path, capsys):
    """`--out X` of a finished coords run given to attention overwrote coords' report.md and
    results.json at the end, without a word."""
    out = tmp_path / "x"
    out.mkdir()
    (out / "results.json").write_text('{"experiment": "coords"}')
    assert main(["experiment", "attention", "--quick", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{out} holds the report of experiment 'coords', not 'attention'" in err
    assert err.count("\n") == 1 and sorted(p.name for p in out.iterdir()) == ["results.json"]
    (out / "results.json").write_text("[1]")
    assert main(["experiment", "attention", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "cannot be read" in capsys.readouterr().err
    (out / "results.json").write_text('{"runs": 3}')  # another command's: not "experiment None"
    assert main(["experiment", "attention", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert f"{out} holds a results.json that is not an experiment's" in capsys.readouterr().err
    # a demo's folder: both write report.md (and the demo's defaults are the experiments')
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "report.json").write_text("{}")
    assert main(["experiment", "attention", "--quick", "--out", str(demo), "--no-progress"]) == 2
    assert f"{demo} holds a `loftup demo`" in capsys.readouterr().err
    assert sorted(p.name for p in demo.iterdir()) == ["report.json"]


def test_a_users_file_of_an_experiments_output_name_is_refused_before_any_work(tmp_path, capsys):
    """`loftup experiment coords --out mine` overwrote the user's own mine/report.md and
    mine/bars.png at the end, status 0. Refused before any work now, naming the file (a
    figure only the experiment writes, levels.png of mask-noise, included); a figure loftup
    drew is an interrupted run's, and the run goes on to its next check: --out inside --data,
    here, which the old code said first."""
    from bench_helpers import marked_png

    out = tmp_path / "mine"
    out.mkdir()

    def refused(experiment="coords"):
        argv = ["experiment", experiment, "--quick", "--out", str(out), "--no-progress"]
        assert main([*argv, "--data", str(tmp_path)]) == 2
        return capsys.readouterr().err

    for name, experiment in (("report.md", "coords"), ("bars.png", "coords"),
                             ("levels.png", "mask-noise")):  # fmt: skip
        if name.endswith(".png"):
            marked_png(out / name, None)  # another program's picture
        else:
            (out / name).write_text("mine")
        before = (out / name).read_bytes()
        assert refused(experiment) == (
            f"error: {out / name} is not an experiment's (there is no results.json in {out}), "
            f"and the experiment would overwrite it; choose another --out, or move {name} away\n"
        )
        assert (out / name).read_bytes() == before and [p.name for p in out.iterdir()] == [name]
        (out / name).unlink()
    marked_png(out / "levels.png", None)  # not a figure of coords: left alone
    marked_png(out / "bars.png", "loftup 0.1.0")
    assert "lies inside --data" in refused()


def test_a_pipe_of_an_experiments_figure_name_is_refused_not_read(tmp_path, capsys):
    """A FIFO named bars.png in --out hung the experiment: the look for loftup's mark opened
    it, and a pipe's read waits for a writer. Refused now, naming it, and never opened."""
    import os

    out = tmp_path / "mine"
    out.mkdir()
    os.mkfifo(out / "bars.png")
    argv = ["experiment", "coords", "--quick", "--out", str(out), "--no-progress"]
    assert main([*argv, "--data", str(tmp_path / "data")]) == 2
    assert capsys.readouterr().err == (
        f"error: {out / 'bars.png'} is a pipe, not a file, and the experiment would write its "
        "bars.png there; choose another --out, or remove bars.png\n"
    )


def test_a_json_copy_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    """run_experiment(json_path=a folder) trained and scored everything, then failed on an
    IsADirectoryError traceback."""
    from loftup.experiments import run_experiment

    (tmp_path / "taken").mkdir()
    s = ExperimentSettings("coords", quick=True, out=str(tmp_path / "out"), progress=False)
    with pytest.raises(
        LoftUpError,
        match=r"--json .*taken is a folder; give a file name, e.g. .*taken/results.json",
    ):
        run_experiment(s, json_path=str(tmp_path / "taken"))
    assert not (tmp_path / "out").exists()


def test_run_experiment_leaves_the_callers_torch_threads_as_they_were(tmp_path):
    """``threads`` is a setting of the experiment: run_experiment left the calling process at
    that many torch threads, after the run and after a run that failed."""
    from loftup.experiments import run_experiment

    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    s = ExperimentSettings("coords", quick=True, out=str(tmp_path / "out"), threads=want,
                           progress=False, overrides=["model.coords=false"])  # fmt: skip
    with pytest.raises(LoftUpError, match="it is what its variants compare"):
        run_experiment(s)  # refused once the threads were set, before any training
    assert torch.get_num_threads() == before


def test_an_interrupted_experiment_says_to_run_the_same_command_again(tmp_path, caplog):
    """Ctrl-C during an experiment's training run said "run the same command with --resume
    to go on", the advice of `loftup train`: `loftup experiment` has no --resume (argparse
    refused it). The same command again is what goes on: it resumes the stopped run."""
    import os
    import signal
    import threading
    import time

    out = tmp_path / "coords"
    ckpt = out / "runs" / "seed0" / "coords-colour-released" / "stage1" / "checkpoint.pt"

    def interrupt_after_the_first_checkpoint():
        deadline = time.monotonic() + 60
        while not ckpt.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the run stops after its step

    args = ["experiment", "coords", "--quick", "--stage1-steps", "50", "--seeds", "1",
            "--size", "16", "--train-scenes", "2", "--val-scenes", "2", "--batch-size", "2",
            "--out", str(out), "--threads", "1", "--no-progress", "log.ckpt_every=1"]  # fmt: skip
    thread = threading.Thread(target=interrupt_after_the_first_checkpoint, daemon=True)
    thread.start()
    with caplog.at_level("WARNING", logger="loftup.train"):
        assert main(args) == 130
    thread.join()
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"{ckpt} holds it: run the same command again to go on" in said
    assert "--resume" not in said
    kept = (ckpt.parent / "stopped.txt").read_text()  # the run's folder says the same
    assert "run the same command again to go on" in kept and "--resume" not in kept


def test_the_help_of_quick_says_what_it_sets(capsys):
    """`--help` said --seeds defaults to 3 and --quick was a "tiny smoke run": what --quick
    sets instead (2 seeds, 32 px, 2 steps...) was nowhere."""
    from loftup.experiments.settings import QUICK

    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for key, value in QUICK.items():
        assert f"--{key.replace('_', '-')} {value}" in text


def test_a_finished_experiment_ends_with_status_0_on_a_terminal_that_is_gone(tmp_path, monkeypatch):
    """The report printed at the end of an experiment (half an hour of training) to a terminal
    that is gone without a hang-up raised EIO: a traceback and status 1 for a finished one."""
    import loftup.experiments
    from train_fixtures import gone_terminal

    def finished(settings, json_path=None):  # what run_experiment leaves: its files, said
        (tmp_path / "report.md").write_text("# coords\n")
        return {"settings": {"out": str(tmp_path)}, "figures": ["curves.png"]}

    monkeypatch.setattr(loftup.experiments, "run_experiment", finished)
    with gone_terminal():
        status = main(["experiment", "coords", "--quick", "--out", str(tmp_path)])
    assert status == 0


def test_the_last_line_names_the_copy_that_json_wrote(tmp_path, monkeypatch, capsys):
    """`--json FILE` wrote its copy of results.json, but the final "wrote ..." line named only
    the report folder's files: where the copy went was left for the user to remember."""
    import loftup.experiments

    def finished(settings, json_path=None):  # what run_experiment leaves: its files, said
        (tmp_path / "report.md").write_text("# coords\n")
        return {"settings": {"out": str(tmp_path)}, "figures": ["bars.png"]}

    monkeypatch.setattr(loftup.experiments, "run_experiment", finished)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["experiment", "coords", "--quick", "--json", "~/copy.json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (
        f"wrote {tmp_path}/report.md, results.json and bars.png; a copy of results.json in "
        f"{tmp_path}/home/copy.json"
    )
    assert main(["experiment", "coords", "--quick"]) == 0  # no copy: none said
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("results.json and bars.png")
