"""`loftup experiment` run folders: reused or gone on with only with the settings, steps, inputs
and stage-1 run they were made with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from loftup.errors import LoftUpError
from loftup.experiments import ExperimentSettings
from loftup.experiments.runs import Variant, run_stage, stage_configs


def test_a_run_folder_made_with_other_settings_is_not_reused(tmp_path):
    s = ExperimentSettings("coords").resolved()
    one, _ = stage_configs(s, Variant("a"), 0, tmp_path / "train", tmp_path / "runs")
    out = tmp_path / "runs" / "seed0" / "a" / "stage1"
    (out / "final").mkdir(parents=True)
    (out / "summary.json").write_text("{}")
    other = {**one, "model": {"coords": False}}
    from loftup.train.config import load_config

    (out / "config.yaml").write_text(yaml.safe_dump(load_config(other).to_dict()))
    with pytest.raises(LoftUpError, match=r"other settings \(differs in model\)"):
        run_stage(one)


def test_a_finished_run_with_a_damaged_checkpoint_is_named_with_the_fix(tmp_path):
    """A finished run folder whose checkpoint.pt was cut short ended in torch.load's
    traceback when the experiment reused it."""
    from loftup.train.config import load_config

    s = ExperimentSettings("coords").resolved()
    one, _ = stage_configs(s, Variant("a"), 0, tmp_path / "train", tmp_path / "runs")
    out = tmp_path / "runs" / "seed0" / "a" / "stage1"
    (out / "final").mkdir(parents=True)
    (out / "summary.json").write_text("{}")
    (out / "config.yaml").write_text(yaml.safe_dump(load_config(one).to_dict()))
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(LoftUpError, match="checkpoint.pt") as e:
        run_stage(one)
    # the experiment's fix: loftup train's (move the file away) left a finished run without it
    assert "\n" not in str(e.value) and str(e.value).endswith("delete that folder")


def test_an_interrupted_run_is_not_resumed_with_other_settings(tmp_path):
    """A folder with a checkpoint but no summary (the experiment was stopped mid-run) goes on
    only with the settings it began with: another learning rate would make a run of two."""
    s = ExperimentSettings("coords").resolved()
    one, _ = stage_configs(s, Variant("a"), 0, tmp_path / "train", tmp_path / "runs")
    out = tmp_path / "runs" / "seed0" / "a" / "stage1"
    out.mkdir(parents=True)
    (out / "checkpoint.pt").write_bytes(b"")  # refused before it is read
    other = {**one, "optim": {**one.get("optim", {}), "lr": 0.5}}
    from loftup.train.config import load_config

    (out / "config.yaml").write_text(yaml.safe_dump(load_config(other).to_dict()))
    with pytest.raises(LoftUpError, match=r"other settings \(differs in optim\)"):
        run_stage(one)


def test_an_interrupted_run_past_the_steps_asked_for_is_refused(tmp_path):
    """A run stopped at step 5 of 8 and the experiment run again with --stage1-steps 2: only a
    finished run's steps were checked, and training went on from the checkpoint (a warning that
    there was nothing to train), so the 5-step run was scored as the 2-step one asked for."""
    from loftup.train.checkpoint import FORMAT
    from loftup.train.config import load_config

    s = ExperimentSettings("coords", stage1_steps=2).resolved()
    one, _ = stage_configs(s, Variant("a"), 0, tmp_path / "train", tmp_path / "runs")
    out = tmp_path / "runs" / "seed0" / "a" / "stage1"
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(load_config(one).to_dict()))
    torch.save({"format": FORMAT, "step": 5}, out / "checkpoint.pt")
    with pytest.raises(LoftUpError, match=r"holds a run of 5 steps, more than the 2 asked for"):
        run_stage(one)


def test_a_finished_run_is_reused_whichever_way_its_folder_is_named(tmp_path, monkeypatch):
    """`loftup experiment coords` (--out experiments/coords, relative) run again with --out
    given in full, or from another folder, was refused as "a run made with other settings
    (differs in data)" with the advice to delete the finished runs: the configs held the
    relative folders as written."""
    from loftup.train.checkpoint import FORMAT, pack_history
    from loftup.train.config import load_config

    monkeypatch.chdir(tmp_path)
    s = ExperimentSettings("coords", stage1_steps=2, out="exp").resolved()
    one, _ = stage_configs(s, Variant("a"), 0, Path("exp/scenes/train"), Path("exp/runs"))
    out = tmp_path / "exp" / "runs" / "seed0" / "a" / "stage1"
    assert one["data"]["root"] == str(tmp_path / "exp" / "scenes" / "train")
    assert one["log"]["out_dir"] == str(out)
    # a folder from before: its config names the folders as the relative --out gave them
    relative = {**one, "data": {**one["data"], "root": "exp/scenes/train"}}
    (out / "final").mkdir(parents=True)
    (out / "summary.json").write_text('{"seconds": 3.0}')
    (out / "config.yaml").write_text(yaml.safe_dump(load_config(relative).to_dict()))
    history = pack_history([{"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.5}])
    torch.save({"format": FORMAT, "step": 2, "history": history}, out / "checkpoint.pt")
    again = run_stage(one)  # asked for with --out in full: the same run, reused
    assert again.pretrained == out / "final"
    other = {**one, "data": {**one["data"], "root": str(tmp_path / "elsewhere")}}
    with pytest.raises(LoftUpError, match=r"other settings \(differs in data\)"):
        run_stage(other)


def test_a_finished_run_reused_no_longer_keeps_the_line_of_a_stop_as_it_ended(tmp_path):
    """A stop as an experiment's run ended (its final/ written) keeps its line in the run's
    stopped.txt ("this training run is complete ...; run the same command again to go on"):
    the same command again reuses the run, and the line, then stale, stayed beside it."""
    from loftup.train.checkpoint import FORMAT, pack_history
    from loftup.train.config import load_config

    s = ExperimentSettings("coords", stage1_steps=2, out=str(tmp_path / "exp")).resolved()
    one, _ = stage_configs(s, Variant("a"), 0, tmp_path / "scenes", tmp_path / "exp" / "runs")
    out = Path(one["log"]["out_dir"])
    (out / "final").mkdir(parents=True)
    (out / "summary.json").write_text('{"seconds": 3.0}')
    (out / "config.yaml").write_text(yaml.safe_dump(load_config(one).to_dict()))
    history = pack_history([{"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.5}])
    torch.save({"format": FORMAT, "step": 2, "history": history}, out / "checkpoint.pt")
    (out / "stopped.txt").write_text("SIGHUP: stopped after the last step (2 of 2): ...\n")
    assert run_stage(one).pretrained == out / "final"
    assert not (out / "stopped.txt").exists()


def test_a_stage2_run_is_not_reused_after_its_stage1_run_trained_on(tmp_path):
    """More stage-1 steps train the shared stage-1 folder on; the stage-2 run distilled from
    the shorter one must not then be reused as if it started from the longer one."""
    import dataclasses

    from loftup.experiments.data import training_root
    from loftup.experiments.runs import run_variant

    torch.set_num_threads(1)
    s = ExperimentSettings("stages", quick=True, out=str(tmp_path), progress=False).resolved()
    root = training_root(s)
    v = Variant("both", stage2={}, stage1_run="stage1")
    run_variant(s, v, 0, root, tmp_path / "runs")
    again = run_variant(s, v, 0, root, tmp_path / "runs")  # the same settings: reused
    assert again["stage2"].pretrained == tmp_path / "runs" / "seed0" / "both" / "stage2" / "final"
    longer = dataclasses.replace(s, stage1_steps=s.stage1_steps + 1)
    with pytest.raises(LoftUpError, match=r"starts from 2 stage-1 steps, not the 3 asked for"):
        run_variant(longer, v, 0, root, tmp_path / "runs")
    ckpt = tmp_path / "runs" / "seed0" / "stage1" / "stage1" / "checkpoint.pt"
    assert torch.load(ckpt, weights_only=True)["step"] == 2  # refused before stage 1 trained on


def test_a_stage2_run_is_not_reused_after_its_stage1_run_was_trained_again(tmp_path):
    """`stages --stage1-lr 0.01` after a run at the default: the stage-1 folder was refused and,
    deleted as told, trained again; the finished stage-2 run distilled from the old one was
    then reused (its config names the stage-1 folder only, its model section is init's), so
    the reference row scored a stage 2 of the old stage 1. The refusal names it too now."""
    import dataclasses
    import re
    import shutil

    from loftup.experiments.data import training_root
    from loftup.experiments.runs import run_variant

    torch.set_num_threads(1)
    s = ExperimentSettings("stages", quick=True, out=str(tmp_path), progress=False, size=16,
                           train_scenes=2, batch_size=2).resolved()  # fmt: skip
    root, runs = training_root(s), tmp_path / "runs"
    v = Variant("both", stage2={}, stage1_run="stage1")
    longer = Variant("longer", stage1_steps=3, continues="stage1")
    for variant in (v, longer):
        run_variant(s, variant, 0, root, runs)
    first, second = runs / "seed0" / "stage1" / "stage1", runs / "seed0" / "both" / "stage2"
    other = dataclasses.replace(s, stage1_lr=0.01)
    with pytest.raises(LoftUpError, match="made with other settings") as e:
        run_variant(other, v, 0, root, runs)
    assert str(e.value) == (  # the run continuing it too: refused next, one rerun a folder
        f"{first} holds a run made with other settings (differs in optim); choose another "
        f"--out or delete that folder and those of the runs that start from it ({second}, "
        f"{runs / 'seed0' / 'longer' / 'stage1'})"
    )
    shutil.rmtree(first)  # and not the stage-2 folder: stage 1 is trained again
    with pytest.raises(LoftUpError, match=re.escape(
        f"{second} holds a stage-2 run distilled from another stage-1 run than {first} holds now"
    )):  # fmt: skip
        run_variant(other, v, 0, root, runs)
    shutil.rmtree(second)
    run_variant(other, v, 0, root, runs)  # trained from the new stage 1, then reused
    stamp = (second / "checkpoint.pt").stat().st_mtime_ns
    assert run_variant(other, v, 0, root, runs)["stage2"].pretrained == second / "final"
    assert (second / "checkpoint.pt").stat().st_mtime_ns == stamp


def test_runs_trained_on_other_backbone_weights_or_training_data_are_not_reused(tmp_path):
    """The runs were reused when the --backbone-weights file changed (the upsamplers scored on
    features they were never trained on) or the training world did (its folder deleted as
    told, written again): the configs name the weights' and the data's folders only. Every
    folder trained on the old ones is named at once."""
    import shutil

    from safetensors.torch import load_file, save_file

    from loftup.data.scene_files import write_scenes
    from loftup.data.scenes import SceneConfig
    from loftup.experiments.data import training_root
    from loftup.experiments.runs import run_variant
    from loftup.featurizers.scenes_vit import NAME, shipped_weights

    torch.set_num_threads(1)
    weights = tmp_path / "bb"  # a folder as `loftup world backbone` writes
    weights.mkdir()
    shutil.copyfile(shipped_weights() / f"{NAME}.safetensors", weights / "model.safetensors")
    shutil.copyfile(shipped_weights() / f"{NAME}.json", weights / "config.json")
    s = ExperimentSettings("coords", quick=True, out=str(tmp_path / "exp"), progress=False,
                           backbone_weights=str(weights)).resolved()  # fmt: skip
    root, runs = training_root(s), tmp_path / "exp" / "runs"
    for name in "ab":
        run_variant(s, Variant(name), 0, root, runs)
    file = weights / "model.safetensors"
    kept = file.read_bytes()
    state = load_file(file)
    key = sorted(state)[0]
    save_file({**state, key: state[key] + 0.01}, file)
    folders = ", ".join(str(runs / "seed0" / n / "stage1") for n in "ab")
    with pytest.raises(LoftUpError, match=r"2 run folders of .* hold runs trained on other "
                       r"backbone weights \(sha256 \w{12} then, \w{12} now\)") as e:  # fmt: skip
        run_variant(s, Variant("a"), 0, root, runs)
    assert f": {folders}; delete them to train them again" in str(e.value)
    file.write_bytes(kept)  # the weights they were trained on: reused
    stamp = (runs / "seed0" / "a" / "stage1" / "checkpoint.pt").stat().st_mtime_ns
    run_variant(s, Variant("a"), 0, root, runs)
    assert (runs / "seed0" / "a" / "stage1" / "checkpoint.pt").stat().st_mtime_ns == stamp
    shutil.rmtree(root)  # another world in its place, as a new version of the demo's writes
    write_scenes(root, SceneConfig(height=64, width=64, scale=2.0, noise=0.05), 8,
                 progress=False)  # fmt: skip
    with pytest.raises(LoftUpError, match=r"hold runs trained on other training data \(world"
                       r"\.json sha256 \w{12} then, world\.json sha256 \w{12} now\)"):  # fmt: skip
        run_variant(s, Variant("a"), 0, root, runs)


def test_a_stage2_run_not_begun_takes_the_stage1_steps_asked_for_now(tmp_path):
    """`stages` stopped in stage 1 and run again with another --stage1-steps was refused: the
    stage-2 folder "holds a stage-2 run that starts from 2 stage-1 steps", a record written
    before stage 1 for a run that never began (no checkpoint). A begun one is still refused."""
    import json

    from loftup.experiments.runs import INIT_RECORD, _check_init_steps

    out = tmp_path / "stage2"
    _check_init_steps(out, 2)
    _check_init_steps(out, 3)
    assert json.loads((out / INIT_RECORD).read_text()) == {"stage1_steps": 3}
    (out / "checkpoint.pt").write_bytes(b"")
    _check_init_steps(out, 3)
    with pytest.raises(LoftUpError, match=r"starts from 3 stage-1 steps, not the 4 asked for"):
        _check_init_steps(out, 4)
    (out / INIT_RECORD).unlink()  # a folder from before the record: taken as it is
    _check_init_steps(out, 4)
    assert not (out / INIT_RECORD).exists()


def test_a_cut_short_copy_of_the_run_to_continue_is_not_resumed_from(tmp_path, monkeypatch):
    """The long control of `stages` copies the stage-1 run it continues: a copy cut short
    (Ctrl-C) must not leave half a checkpoint, which the next run would resume from."""
    import os
    import shutil

    from loftup.experiments.runs import run_stage

    s = ExperimentSettings("stages", stage1_steps=3).resolved()
    one, _ = stage_configs(s, Variant("long", stage1_steps=4), 0, tmp_path, tmp_path / "runs")
    source = tmp_path / "runs" / "seed0" / "short" / "stage1"
    source.mkdir(parents=True)
    (source / "checkpoint.pt").write_bytes(b"x" * 4096)
    (source / "config.yaml").write_text("stage: 1\n")
    real = shutil.copyfile

    def cut_short(src, dst, *args, **kwargs):
        if os.fspath(src).endswith("checkpoint.pt"):
            with open(dst, "wb") as f:
                f.write(b"x" * 100)
            raise KeyboardInterrupt
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", cut_short)
    with pytest.raises(KeyboardInterrupt):
        run_stage(one, continues=source)
    out = tmp_path / "runs" / "seed0" / "long" / "stage1"
    assert not (out / "checkpoint.pt").exists()  # the next run copies again


def test_a_stage2_folder_made_with_another_window_is_not_reused(tmp_path):
    """Stage 2 takes its architecture from init, except the attention window, which it uses as
    given: a folder trained with another window holds another run."""
    import yaml

    from loftup.errors import LoftUpError
    from loftup.experiments.runs import _check_same
    from loftup.train import load_config

    cfg = load_config(None, ["init=somewhere", "model.attention_window=5"], stage=2)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    _check_same(cfg, tmp_path)  # the same run: reused
    other = load_config(None, ["init=somewhere"], stage=2)
    with pytest.raises(LoftUpError, match="differs in model.attention_window"):
        _check_same(other, tmp_path)
