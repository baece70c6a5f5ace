"""A training run's refusals of its folder offer the option that chose it as the command
running it takes it: `loftup train` "--out (log.out_dir)", the demo and an experiment (which set
the folder in theirs) "--out". (Its lock and a checkpoint not resumed:
tests/test_damaged_resume_folders.py, on real runs.)"""

from __future__ import annotations

import re

import pytest

from train_fixtures import tiny_config


@pytest.mark.parametrize("command", ["demo", "train"])
def test_a_run_folder_that_is_a_file_is_refused_with_the_command_s_own_option(command, tmp_path):
    """The demo's stage-1 folder a file: refused before the data is looked at."""
    from loftup.errors import UsageError
    from loftup.train import train
    from loftup.world.config import DemoConfig
    from loftup.world.demo import train_stages

    run = tmp_path / "demo" / "runs" / "stage1"
    run.parent.mkdir(parents=True)
    run.write_text("not a folder\n")
    with pytest.raises(UsageError) as e:
        if command == "demo":
            train_stages(DemoConfig(out=str(tmp_path / "demo")), tmp_path / "no data")
        else:
            train(tiny_config(tmp_path / "no data", run))
    option, fix = "--out, log.out_dir", "give a folder path"
    if command == "demo":  # named as in the --out typed, not as if OUT/runs/stage1 were
        option = f"a run folder this command makes in --out {tmp_path / 'demo'}"
        fix = "move it away or choose another --out"
    assert str(e.value) == (
        f"{run} is a file, but a run's output ({option}) is a folder that will hold "
        f"checkpoint.pt, final/ and metrics.csv; {fix}"
    )
    assert run.read_text() == "not a folder\n"


def test_an_experiment_s_run_folder_refused_names_the_experiment_s_out(tmp_path):
    """A link to nothing in a run folder's place: "--out OUT/runs/seed0/base/stage1 cannot be
    written", a path never given as --out; the experiment's --out is named, as typed."""
    from loftup.errors import UsageError
    from loftup.experiments.runs import run_stage

    out = tmp_path / "exp"
    run = out / "runs" / "seed0" / "base" / "stage1"
    run.parent.mkdir(parents=True)
    run.symlink_to(tmp_path / "gone")
    with pytest.raises(UsageError) as e:
        run_stage(tiny_config(tmp_path / "no data", run).to_dict(), inside=out)
    assert str(e.value) == (
        f"--out {out} cannot be written: {run} is a link to {tmp_path / 'gone'}, which does not "
        "exist; choose another folder"
    )


@pytest.mark.parametrize("damage", ["file", "link"])
def test_an_experiment_s_run_folder_refused_before_its_inputs_are_recorded(tmp_path, damage):
    """Given the inputs to record in it (as an experiment gives them), a file or a link to
    nothing in the run folder's place was "error: OUT/...stage1: File exists", no fix."""
    from loftup.errors import UsageError
    from loftup.experiments.runs import run_stage

    out = tmp_path / "exp"
    run = out / "runs" / "seed0" / "base" / "stage1"
    run.parent.mkdir(parents=True)
    if damage == "file":
        run.write_text("not a folder\n")
        said = (
            f"{run} is a file, but a run's output (a run folder this command makes in --out "
            f"{out}) is a folder that will hold checkpoint.pt, final/ and metrics.csv; move it "
            "away or choose another --out"
        )
    else:
        run.symlink_to(tmp_path / "gone")
        said = (
            f"--out {out} cannot be written: {run} is a link to {tmp_path / 'gone'}, which "
            "does not exist; choose another folder"
        )
    inputs = {"backbone_sha256": "0" * 64, "training_data": {"files": 4}}
    with pytest.raises(UsageError) as e:
        run_stage(tiny_config(tmp_path / "no data", run).to_dict(), inputs=inputs, inside=out)
    assert str(e.value) == said
    assert not (tmp_path / "gone").exists() and not (run / "inputs.json").exists()


def test_an_experiment_s_stage_2_folder_is_refused_before_stage_1_trains(tmp_path):
    """A file in a stage-2 folder's place: "File exists" from its init record, written there
    before stage 1 trains; refused now as its training would refuse it, nothing trained."""
    from pathlib import Path

    from loftup.errors import UsageError
    from loftup.experiments import ExperimentSettings
    from loftup.experiments.designs import DESIGNS
    from loftup.experiments.runs import run_variant, stage_configs

    s = ExperimentSettings("stages", quick=True, out=str(tmp_path / "exp"), progress=False)
    s, runs, data = s.resolved(), tmp_path / "exp" / "runs", tmp_path / "data"
    variant = next(v for v in DESIGNS["stages"](s).variants if v.stage2 is not None)
    one, two = stage_configs(s, variant, 0, data, runs)
    stage2 = Path(two["log"]["out_dir"])
    stage2.parent.mkdir(parents=True)
    stage2.write_text("not a folder\n")
    inputs = {"backbone_sha256": None, "training_data": {}}
    with pytest.raises(UsageError, match=f"^{re.escape(str(stage2))} is a file, but a run"):
        run_variant(s, variant, 0, data, runs, inputs)
    assert not Path(one["log"]["out_dir"]).exists()  # stage 1 not begun
