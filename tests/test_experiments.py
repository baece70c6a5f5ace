"""`loftup experiment`: the verdict rule, region split, grid views, settings, run reuse, CLI errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from loftup.cli import main
from loftup.errors import LoftUpError
from loftup.experiments import EXPERIMENTS, ExperimentSettings
from loftup.experiments.data import weights_fingerprint
from loftup.experiments.grid_views import (
    cell_views,
    grid_cells,
    render_scenes,
    render_side,
)
from loftup.experiments.runs import Variant, run_stage, stage_configs
from loftup.experiments.scoring import region_miou, score_upsampler, small_area, small_regions
from loftup.experiments.stats import NO_DIFFERENCE, summarize, table, verdict

# -- the verdict rule -----------------------------------------------------------------------------


def test_a_difference_within_the_spread_is_no_finding():
    ref = summarize([0.70, 0.72, 0.74])  # std 0.02
    close = summarize([0.72, 0.73, 0.74])  # +0.01, pooled std ~0.016
    far = summarize([0.78, 0.79, 0.80])  # +0.07
    assert verdict(close, ref)["verdict"] == NO_DIFFERENCE
    assert verdict(far, ref)["verdict"] == "better"
    assert verdict(ref, far)["verdict"] == "worse"
    assert verdict(far, ref, higher_is_better=False)["verdict"] == "worse"
    v = verdict(far, ref)
    assert v["diff"] == pytest.approx(0.07) and v["pooled_std"] == pytest.approx(
        math.sqrt((0.01**2 + 0.02**2) / 2)
    )
    assert verdict(summarize([0.9]), summarize([0.1]))["verdict"] == "one seed: no spread"
    # a score over no pixels (no small regions in the scored half) at 3 seeds: no traceback
    unmeasured = summarize([math.nan] * 3)
    assert math.isnan(unmeasured["mean"]) and math.isnan(unmeasured["std"])
    assert verdict(unmeasured, ref)["verdict"] == "not measured"
    assert verdict(ref, unmeasured)["verdict"] == "not measured"
    assert table({"a": {"m": ref}, "b": {"m": unmeasured}}, {"m": "m"}, "a", ("m",))


def test_loss_curve_bands_are_the_tables_spread():
    """The loss curves' band was numpy's std (ddof 0), the tables' the sample std (ddof 1):
    with 3 seeds the figure showed the spread 0.82 times as wide as the rule under it."""
    from loftup.experiments.plots import seed_band

    seeds = [[1.0, 0.5, 0.3], [2.0, 1.0, 0.4], [3.0, 0.0, 0.8], [9.0]]
    mean, std, length = seed_band(seeds)
    assert length == 1 and mean.tolist() == [3.75]
    assert std[0] == pytest.approx(summarize([1.0, 2.0, 3.0, 9.0])["std"])
    mean, std, length = seed_band(seeds[:1])
    assert length == 3 and std.tolist() == [0.0] * 3


def test_table_compares_every_row_with_the_reference():
    rows = {
        "released": {"miou": summarize([0.70, 0.72, 0.74])},
        "variant": {"miou": summarize([0.72, 0.73, 0.74])},
        "bilinear": {"miou": summarize([0.60, 0.61, 0.62])},
    }
    text = table(rows, {"miou": "mIoU"}, "released", compare=("miou",))
    lines = text.splitlines()
    assert lines[0] == "| variant | mIoU | Δ mIoU vs released |"
    assert lines[2] == "| released | 0.720 ± 0.020 | (reference) |"
    assert lines[3].endswith(f"| +0.010 ({NO_DIFFERENCE}) |")
    assert lines[4].endswith("| -0.110 (worse) |")


# -- small and large regions ----------------------------------------------------------------------


def test_small_regions_are_small_connected_components_of_one_class():
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[0, 4:20, 4:20] = 1  # 256 px: large for a threshold of 100
    for i in range(10):  # a diagonal line of class 2: one 8-connected component of 10 px
        labels[0, 22 + i % 10, 20 + i] = 2
    labels[0, 30:32, 0:3] = 255  # not scored: never small
    small = small_regions(labels, min_area=100)
    assert small[0, 22, 20] and small[0, 31, 29] and small.sum() == 10
    assert not small[0, 10, 10] and not small[0, 31, 0]
    pred = labels.clone()
    pred[pred == 255] = 0
    perfect = region_miou(pred, labels, small, 3)
    assert perfect == {"miou_small": 1.0, "miou_large": 1.0}
    pred[small] = 0  # the line is missed: only the small-region score drops
    missed = region_miou(pred, labels, small, 3)
    assert missed["miou_large"] == 1.0 and missed["miou_small"] < 0.5
    assert small_area(8, 64, 64, 4) == 256 and small_area(8, 128, 64, 4) == 1024


# -- grids ----------------------------------------------------------------------------------------


def test_scoring_draws_no_progress_bar_of_its_own(capsys):
    """Each upsampler, seed and grid cell drew an "upsampling" bar on stderr, --no-progress
    or not (a quick grid run printed some 60 of them)."""
    from loftup.baselines import get_upsampler
    from loftup.experiments.data import EvalSet
    from loftup.world.config import DemoConfig

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (4, 16, 16), generator=g)
    evalset = EvalSet(torch.rand(4, 3, 16, 16, generator=g), labels, 3, "random")
    lr = torch.randn(4, 6, 4, 4, generator=g)
    r = score_upsampler(
        get_upsampler("bilinear"), lr, evalset.images, evalset, DemoConfig(probe_epochs=1)
    )
    assert r["pred"].shape == (2, 16, 16) and 0 <= r["miou"] <= 1
    assert capsys.readouterr().err == ""


def test_grid_cells_and_views_are_the_sizes_they_claim():
    cells = grid_cells((4, 8, 16, 32), (2, 4, 8, 16, 32), 256)
    assert len(cells) == 17 and (8, 32) in cells and (16, 32) not in cells
    assert render_side(4, 2, 8) == 32 and render_side(4, 32, 8) == 128
    images, labels = render_scenes(_scene_config(), 1, 2, 128, 4.0)
    v = cell_views(images, labels, 4, 32, 8)
    assert v["backbone"].shape == (2, 3, 32, 32) and v["guidance"].shape == (2, 3, 128, 128)
    assert torch.equal(v["labels"], labels)  # O = R: the render's own labels
    small = cell_views(images[:, :, :32, :32].contiguous(), labels[:, :32, :32], 4, 2, 8)
    assert small["labels"].shape == (2, 8, 8) and small["guidance"].shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="needs renders of 128 px"):
        cell_views(images[:, :, :64, :64], labels[:, :64, :64], 4, 32, 8)


def test_a_scene_rendered_larger_at_a_larger_texture_scale_is_the_same_scene():
    small_img, small_lab = render_scenes(_scene_config(), 1, 4, 32, 1.0)
    big_img, big_lab = render_scenes(_scene_config(), 1, 4, 128, 4.0)
    down = torch.nn.functional.interpolate(big_lab[:, None].float(), size=(32, 32),
                                           mode="nearest-exact")[:, 0].long()  # fmt: skip
    assert (down == small_lab).float().mean() > 0.9  # same layout, 4x the pixels
    other = render_scenes(_scene_config(), 2, 4, 32, 1.0)[1]
    assert (other == small_lab).float().mean() < 0.6


def test_grid_held_out_views_name_the_dataset_they_come_from(tmp_path):
    """With --eval-dataset the grid's held-out images are the dataset's, and the report's
    held-out line (taken from the views) says so, not "rendered held-out scenes"."""
    from eval_data import write_voc
    from loftup.experiments.data import load_backbone
    from loftup.experiments.grid import held_out_views

    root = write_voc(tmp_path)
    s = ExperimentSettings("grid", eval_root=str(root), eval_dataset="voc", eval_count=4)
    s = s.resolved()
    featurizer = load_backbone(s)
    views = held_out_views(s, [(4, 2)], featurizer.patch_size, featurizer)
    evalset = views[(4, 2)]["evalset"]
    assert evalset.source == f"voc at {root}" and evalset.images.shape[-1] == 8
    rendered = held_out_views(ExperimentSettings("grid", eval_count=2).resolved(), [(4, 2)], 8,
                              featurizer)  # fmt: skip
    assert rendered[(4, 2)]["evalset"].source == "rendered held-out scenes"


def _scene_config():
    from loftup.data.scenes import SceneConfig

    return SceneConfig()


# -- settings -------------------------------------------------------------------------------------


def test_settings_follow_the_demo_unless_set():
    from loftup.world.demo import DemoConfig

    demo = DemoConfig()
    s = ExperimentSettings("coords").resolved()
    assert (s.size, s.train_scenes, s.stage1_lr, s.probe_epochs) == (
        demo.size, demo.train_scenes, demo.stage1_lr, demo.probe_epochs
    )  # fmt: skip
    assert s.seeds == 3 and s.out == "experiments/coords" and s.eval_count == demo.val_scenes
    q = ExperimentSettings("stages", quick=True, size=48).resolved()
    assert q.size == 48 and q.seeds == 2 and q.stage1_steps == 2 and q.stage2_steps == 1
    assert ExperimentSettings("coords", quick=True).resolved().stage2_steps == 0
    assert ExperimentSettings("grid").resolved().eval_count == min(16, demo.val_scenes)
    noise = ExperimentSettings("mask-noise", noise_kinds=["drop"]).resolved()
    assert noise.noise_kinds == ["drop"] and noise.noise_levels == [0.25, 0.5, 1.0]
    assert set(EXPERIMENTS) == {"coords", "attention", "stages", "mask-noise", "distill-view",
                                "grid"}  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "colour"}, "unknown experiment 'colour'"),
        ({"name": "coords", "seeds": 0}, "--seeds must be an integer >= 1"),
        # a count of 2.0 (Python) failed late, in range() or a slice, after the scenes were written
        ({"name": "coords", "seeds": 2.0}, r"--seeds must be an integer >= 1, got 2\.0"),
        ({"name": "coords", "seeds": True}, "--seeds must be an integer >= 1, got True"),
        ({"name": "coords", "eval_count": 4.0}, r"--eval-count must be an integer >= 2, got 4\.0"),
        ({"name": "coords", "stage1_steps": 2.5}, "--stage1-steps must be an integer >= 1"),
        ({"name": "coords", "eval_dataset": "voc"}, "--eval-dataset needs --eval-root"),
        ({"name": "coords", "masks": "slic"}, "masks must be sa1b, superpixels or sam"),
        ({"name": "mask-noise", "noise_kinds": ["blur"]}, "unknown mask-noise kind 'blur'"),
        (
            {"name": "mask-noise", "noise_levels": [0.0]},
            r"--levels \(noise levels\) must be in \(0, 1\]",
        ),
        # another experiment's option is named as such, before its values are judged
        ({"name": "coords", "noise_levels": [2.0]}, "--levels applies to the mask-noise"),
        ({"name": "stages", "stage2_steps": 0}, "--stage2-steps must be an integer >= 1, got 0"),
        # a repeated kind or level was one variant scored once per repeat at every seed: its
        # row's spread, and so its verdict, came from copies of the same runs
        (
            {"name": "mask-noise", "noise_kinds": ["drop", "erode", "drop"]},
            "--kinds names drop twice; give each kind once",
        ),
        (
            {"name": "mask-noise", "noise_levels": [0.5, 1, 0.50]},
            "--levels gives 0.5 twice; give each level once",
        ),
        ({"name": "coords", "stage2_steps": 50}, "coords trains stage 1 only; --stage2-steps"),
        # no cell of the grid is 4 px or less: it trained, then failed with a StopIteration
        ({"name": "grid", "max_side": 4}, r"--max-side 4 leaves no cell.*--max-side 8 or more"),
        # options another experiment reads were ignored without a word
        ({"name": "coords", "max_side": 256}, "--max-side applies to the grid experiment only"),
        ({"name": "stages", "noise_kinds": ["drop"]}, "--kinds applies to the mask-noise exp"),
        ({"name": "grid", "noise_levels": [0.5]}, "--levels applies to the mask-noise experiment"),
        # an empty list trained the clean masks alone, then its loss curves divided by zero
        ({"name": "mask-noise", "noise_kinds": []}, "--kinds needs at least one value"),
        ({"name": "mask-noise", "noise_levels": []}, "--levels needs at least one value"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(LoftUpError, match=message):
        ExperimentSettings(**kwargs)


def test_size_must_fit_the_patch():
    with pytest.raises(LoftUpError, match="multiple of 8"):
        ExperimentSettings("coords", size=60).resolved()


def test_paths_are_expanded_and_a_quick_run_has_a_folder_of_its_own(tmp_path, monkeypatch):
    """--out=~/x (no shell expands that ~) put the scenes and runs in ~/x (DemoConfig expands
    it) and the report in ./~/x. A --quick run in the full run's default folder was refused
    there ("another world"), with the advice to delete that folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    s = ExperimentSettings("coords", out="~/x", data="~/d", backbone_weights="~/w").resolved()
    assert (s.out, s.data, s.backbone_weights) == tuple(str(tmp_path / n) for n in "xdw")
    assert s.demo(0).out == s.out
    assert ExperimentSettings("coords", quick=True).resolved().out == "experiments/coords-quick"
    assert ExperimentSettings("coords").resolved().out == "experiments/coords"


def test_a_scene_folder_of_the_users_is_held_out_whole(tmp_path):
    """With --eval-root a scene folder, the default --eval-count was --val-scenes' (48): a
    folder of fewer scenes was refused as "fewer than eval_count=48", a count never given."""
    from loftup.data.scene_files import write_scenes
    from loftup.data.scenes import SceneConfig

    write_scenes(tmp_path / "w", SceneConfig(height=16, width=16), 5, progress=False)
    s = ExperimentSettings("coords", eval_root=str(tmp_path / "w")).resolved()
    assert s.eval_count == 5
    assert ExperimentSettings("coords", eval_root=str(tmp_path / "w"), eval_count=4).resolved()
    with pytest.raises(LoftUpError, match=r"--eval-count 6 is more than the 5 scenes in .*"
                       r"give --eval-count 5 or less"):  # fmt: skip
        ExperimentSettings("coords", eval_root=str(tmp_path / "w"), eval_count=6).resolved()


# -- runs -----------------------------------------------------------------------------------------


def test_variant_switches_reach_the_training_configs(tmp_path):
    s = ExperimentSettings(
        "coords", overrides=["stage1.n_jitters=2"], backbone_weights="/w"
    ).resolved()
    v = Variant("no coords", {"model": {"coords": False}}, stage2={"stage2": {"teacher_view": "full"}},
                stage1_run="shared")  # fmt: skip
    one, two = stage_configs(s, v, 2, tmp_path / "train", tmp_path / "runs")
    assert one["model"]["coords"] is False and one["seed"] == 2
    assert one["stage1"]["n_jitters"] == 2 and one["stage1"]["image_size"] == s.size
    assert one["backbone_weights"] == "/w" and one["max_steps"] == s.stage1_steps
    assert one["log"]["out_dir"] == str(tmp_path / "runs" / "seed2" / "shared" / "stage1")
    assert two["init"] == str(tmp_path / "runs" / "seed2" / "shared" / "stage1" / "checkpoint.pt")
    assert two["stage2"]["teacher_view"] == "full" and two["stage"] == 2
    assert two["log"]["out_dir"] == str(tmp_path / "runs" / "seed2" / "no-coords" / "stage2")
    assert stage_configs(s, Variant("a"), 0, tmp_path, tmp_path)[1] is None


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
    assert again.pretrained == out / "final" and again.seconds == 3.0
    other = {**one, "data": {**one["data"], "root": str(tmp_path / "elsewhere")}}
    with pytest.raises(LoftUpError, match=r"other settings \(differs in data\)"):
        run_stage(other)


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
    s = ExperimentSettings("stages", quick=True, out=str(tmp_path), progress=False).resolved()
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


def test_the_training_data_is_told_by_the_files_training_reads(tmp_path):
    """--data without a world.json: its identity is the names and sizes of the files that
    training reads (images and their SA-1B JSON), not of anything else in the folder."""
    from loftup.experiments.data import run_inputs

    (tmp_path / "sa_1.jpg").write_bytes(b"jpeg")
    (tmp_path / "sa_1.json").write_text("{}")
    first = run_inputs({"sha256": None}, tmp_path, "sa1b")["training_data"]
    assert first["files"] == 2
    (tmp_path / "notes.txt").write_text("not read")
    assert run_inputs({"sha256": None}, tmp_path, "sa1b")["training_data"] == first
    (tmp_path / "sa_1.jpg").write_bytes(b"another jpeg")
    assert run_inputs({"sha256": None}, tmp_path, "sa1b")["training_data"] != first


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


def test_weights_fingerprint_hashes_the_file(tmp_path):
    import hashlib

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    fp = weights_fingerprint("dinov2_vits14", str(tmp_path))
    assert fp["sha256"] == hashlib.sha256(b"weights").hexdigest()
    shipped = weights_fingerprint("scenes_vit_p8", None)
    assert shipped["file"].endswith("scenes_vit_p8.safetensors") and len(shipped["sha256"]) == 64
    assert weights_fingerprint("dinov2_vits14", None)["sha256"] is None


def test_the_command_recorded_is_a_loftup_command_or_none(monkeypatch):
    """results.json and report.md gave "loftup" + sys.argv[1:] as the command whoever ran the
    process: from Python, a notebook's or pytest's arguments passed off as a loftup command."""
    from loftup.experiments.report import command

    monkeypatch.setattr("sys.argv", ["pytest", "-q", "tests/test_x.py"])
    assert command("coords") == []
    monkeypatch.setattr("sys.argv", ["/bin/loftup", "experiment", "--quick", "coords"])
    assert command("coords") == ["loftup", "experiment", "--quick", "coords"]


def test_an_experiment_runs_where_the_os_keeps_no_load_average(monkeypatch):
    """Windows has no os.getloadavg: the clock every experiment starts with raised an
    AttributeError there, before any work."""
    import os

    from loftup.experiments.report import Clock, header

    monkeypatch.delattr(os, "getloadavg", raising=False)
    clock = Clock().record()
    assert clock["load_average_1min"] == {"start": None, "end": None}
    results = {
        "settings": {"name": "coords", "seeds": 1, "stage1_steps": 2, "stage2_steps": 0,
                     "batch_size": 4, "size": 32},
        "backbone": {"name": "scenes_vit_p8", "sha256": None},
        "run": {"loftup_version": "0", "git_commit": None},
        "heldout": {"images": 4, "fit": 2, "scored": 2, "classes": 3, "source": "scenes"},
        "command": [],
        "clock": clock,
    }  # fmt: skip
    text = header("t", "q", results)
    assert "load average not known" in text and "load average None" not in text


# -- command line ---------------------------------------------------------------------------------


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


def test_a_dataset_short_of_eval_count_is_refused_not_split_across_its_halves(tmp_path):
    """The probes fit on the first half of the held-out set and score the second: from a
    dataset that is the training images, then the validation ones. A split with fewer images
    than its half moved that boundary (8 asked of 4 + 2 fitted on 3 training images and scored
    the 4th with the validation ones; other counts fitted on validation images, and which
    images were scored changed with the dataset's size); now it is refused, naming the largest
    count that works."""
    from eval_data import write_voc
    from loftup.eval.datasets import SegmentationSet
    from loftup.experiments.data import load_eval_set

    root = write_voc(tmp_path, n=4)
    val = root / "ImageSets" / "Segmentation" / "val.txt"
    val.write_text("\n".join(val.read_text().split()[:2]) + "\n")
    settings = dict(eval_root=str(root), eval_dataset="voc")
    with pytest.raises(LoftUpError, match=r"has only 2 validation images; give --eval-count 4 or"):
        load_eval_set(ExperimentSettings("coords", eval_count=8, **settings).resolved())
    with pytest.raises(LoftUpError, match=r"only 4 training and 2 validation images; .* 4 or"):
        load_eval_set(ExperimentSettings("coords", eval_count=10, **settings).resolved())
    evalset = load_eval_set(ExperimentSettings("coords", eval_count=4, **settings).resolved())
    train = SegmentationSet("voc", str(root), "train", 64, limit=2)
    valid = SegmentationSet("voc", str(root), "val", 64, limit=2)
    expected = torch.stack([ds[i]["image"] for ds in (train, valid) for i in range(2)])
    assert torch.equal(evalset.images, expected)  # fit: training images; scored: validation


def test_a_dataset_short_of_eval_count_is_refused_before_any_work(tmp_path, capsys):
    """The count was checked only when the held-out set was loaded: after the training scenes
    were written (and, for grid, after them too), not before any work as a wrong folder is."""
    from eval_data import write_voc

    root = write_voc(tmp_path / "voc", n=4)
    out = tmp_path / "out"
    argv = ["experiment", "coords", "--quick", "--out", str(out), "--no-progress",
            "--eval-root", str(root), "--eval-dataset", "voc", "--eval-count", "20"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--eval-count 20 takes 10 training and 10 validation images of voc" in err
    assert "give --eval-count 8 or less" in err and err.count("\n") == 1
    assert not out.exists()  # no scenes written, no report folder


def test_held_out_images_in_both_halves_are_refused_before_any_work(tmp_path, capsys):
    """The probes fit on the first training images and score the first validation ones: a
    split list sharing an image with the other fitted the probes on images they then scored."""
    from eval_data import write_voc
    from loftup.experiments.data import load_eval_set

    root = write_voc(tmp_path / "voc", n=4)
    lists = root / "ImageSets" / "Segmentation"
    shared = (lists / "train.txt").read_text().split()[0]
    (lists / "val.txt").write_text(shared + "\n" + (lists / "val.txt").read_text())
    out = tmp_path / "out"
    argv = ["experiment", "coords", "--quick", "--out", str(out), "--no-progress",
            "--eval-root", str(root), "--eval-dataset", "voc", "--eval-count", "4"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{shared}.jpg is in both the train and the val split" in err and not out.exists()
    s = ExperimentSettings("coords", eval_root=str(root), eval_dataset="voc", eval_count=4)
    with pytest.raises(LoftUpError, match="is in both the train and the val split"):
        load_eval_set(s.resolved())


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


def test_offline_scenes_are_written_without_a_bar_under_no_progress(tmp_path, capsys):
    """The training and held-out scenes an experiment writes drew their "scenes" bars on
    stderr under --no-progress too."""
    from loftup.experiments.data import load_eval_set, training_root
    from loftup.experiments.settings import ExperimentSettings

    s = ExperimentSettings(name="coords", quick=True, out=str(tmp_path), progress=False)
    s = s.resolved()
    assert (training_root(s) / "world.json").is_file()
    assert len(load_eval_set(s).images) == s.eval_count
    assert capsys.readouterr().err == ""


def test_offline_scenes_are_written_once_and_kept_on_a_rerun(tmp_path):
    """Every rerun wrote the training and held-out scenes again: seconds of work, and new
    mtimes, which the mask cache's keys hold (--masks sam made every mask again). Scenes of
    other options are still refused, not kept."""
    import os

    from loftup.experiments.data import load_eval_set, training_root

    s = ExperimentSettings("coords", quick=True, out=str(tmp_path), progress=False).resolved()
    train, _ = training_root(s), load_eval_set(s)
    files = [train / "world.json", train / "sa1b" / "sa_1.jpg", tmp_path / "scenes" / "val" /
             "world.json", tmp_path / "scenes" / "val" / "labels" / "sa_1.png"]  # fmt: skip
    for f in files:
        os.utime(f, ns=(10**9, 10**9))
    assert training_root(s) == train and len(load_eval_set(s).images) == s.eval_count
    assert [f.stat().st_mtime_ns for f in files] == [10**9] * len(files)
    more = ExperimentSettings("coords", quick=True, out=str(tmp_path), progress=False,
                              train_scenes=9).resolved()  # fmt: skip
    with pytest.raises(LoftUpError, match=r"other options \(--train-scenes 8 -> 9\)"):
        training_root(more)


def test_the_report_header_counts_in_words_that_agree():
    """A one-step, one-seed run's report said "1 seeds; stage 1: 1 steps"."""
    from loftup.experiments.report import header

    def results(seeds, steps):
        settings = {"name": "coords", "seeds": seeds, "stage1_steps": steps, "stage2_steps": 0,
                    "batch_size": 2, "size": 32}  # fmt: skip
        return {
            "settings": settings, "command": [], "backbone": {"name": "b", "sha256": None},
            "heldout": {"images": 4, "fit": 2, "scored": 2, "classes": 3, "source": "scenes"},
            "run": {"loftup_version": "x", "git_commit": "y"},
            "clock": {"seconds": {"total": 1.0}, "threads": 1,
                      "load_average_1min": {"start": 0, "end": 0}},
        }  # fmt: skip

    assert "- 1 seed; stage 1: 1 step of batch 2" in header("t", "q", results(1, 1))
    assert "- 3 seeds; stage 1: 20 steps of batch 2" in header("t", "q", results(3, 20))
    assert " s on 1 thread, load average " in header("t", "q", results(1, 1))  # "thread(s)"


def test_dataset_errors_name_the_experiments_own_options(tmp_path, capsys):
    """The dataset readers' messages said "pass --dataset cityscapes, or a --root that holds
    cocostuff" and "is --dataset right?": options of `loftup eval`, which `loftup experiment`
    calls --eval-dataset and --eval-root. A wrong folder was also said only after the training
    scenes were written, and a missing one as a missing split list."""
    from PIL import Image

    from eval_data import write_cityscapes, write_voc
    from loftup.experiments.data import load_eval_set

    city = write_cityscapes(tmp_path / "city")
    out = tmp_path / "out"
    base = ["experiment", "coords", "--quick", "--out", str(out), "--no-progress"]
    assert main([*base, "--eval-root", str(city), "--eval-dataset", "cocostuff"]) == 2
    err = capsys.readouterr().err
    assert "pass --eval-dataset cityscapes, or an --eval-root that holds cocostuff" in err
    assert " --dataset" not in err and " --root" not in err and err.count("\n") == 1
    assert not out.exists()  # before any work
    assert main([*base, "--eval-root", str(tmp_path / "nope"), "--eval-dataset", "voc"]) == 2
    assert f"--eval-root {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    assert main([*base, "--eval-root", str(city), "--eval-dataset", "vocx"]) == 2
    assert "unknown --eval-dataset 'vocx'; choose one of cocostuff" in capsys.readouterr().err

    voc = write_voc(tmp_path / "voc")
    label = next((voc / "SegmentationClass").glob("*.png"))
    values = np.asarray(Image.open(label)).copy()
    values[0, 0] = 50  # not a VOC label
    Image.fromarray(values).save(label)
    s = ExperimentSettings("coords", eval_root=str(voc), eval_dataset="voc", eval_count=8)
    with pytest.raises(LoftUpError, match=r"is --eval-dataset right\?") as e:
        load_eval_set(s.resolved())
    assert "--dataset" not in str(e.value).replace("--eval-dataset", "")


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


def test_mask_noise_curves_hold_a_row_per_loss_term_as_its_notes_say(tmp_path):
    """The notes point at "the reconstruction term (second row of the curves)", but the curves
    were laid out 3 panels a row: with the 5 kinds, row 2 held two total-loss panels and one
    reconstruction panel, and the reconstruction panels ran on to row 4. The question also
    named levels 0.25, 0.5 and 1 whatever --levels gave."""
    from PIL import Image

    from loftup.experiments.data import EvalSet
    from loftup.experiments.designs import mask_noise
    from loftup.experiments.variants import _figures

    s = ExperimentSettings("mask-noise", noise_levels=[0.1, 0.3]).resolved()
    assert "at levels 0.1 and 0.3)?" in mask_noise(s).question
    s = ExperimentSettings("mask-noise", noise_kinds=["erode", "drop"], noise_levels=[1.0])
    s = s.resolved()
    design = mask_noise(s)
    assert "at level 1)?" in design.question
    kinds = len(s.noise_kinds)
    names = [v.name for v in design.variants]
    stats = {"miou": summarize([0.3, 0.4]), "pixel_accuracy": summarize([0.5, 0.6])}
    rows = {n: stats for n in [*names, "bilinear", "bicubic"]}
    curve = [{"step": i, "loss": 1.0 / (i + 1), "rec": 0.5 / (i + 1)} for i in range(4)]
    histories = {n: {"stage1": [curve, curve]} for n in names}
    images, labels = torch.rand(4, 3, 8, 8), torch.randint(0, 3, (4, 8, 8))
    preds = {n: labels[2:] for n in names[:2]}
    metrics = {"miou": "mIoU", "pixel_accuracy": "pixel accuracy"}
    _figures(tmp_path, design, rows, metrics, histories, EvalSet(images, labels, 3, "x"), preds)
    width, height = Image.open(tmp_path / "loss_curves.png").size
    assert width / height == pytest.approx((4.2 * kinds) / (3.2 * 2), rel=0.02)  # 2 rows
    assert kinds == 2  # (3 panels a row gave 4.2 * 3 / (3.2 * 2))


def test_a_loss_curve_of_one_step_is_drawn(tmp_path):
    """A stage-2 run of one step (`stages --quick`) left its loss-curve panels empty: a line
    through one point draws nothing, and only the faint seed band showed."""
    from PIL import Image

    from loftup.experiments.plots import loss_curves

    path = loss_curves(tmp_path / "c.png", {"stage 2": {"a": [[1.0], [1.1]]}}, "t")
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    tab_blue = np.abs(rgb - [31, 119, 180]).sum(-1) < 30  # the first line's colour
    assert tab_blue.sum() > 20


def test_the_grid_bars_give_loftup_one_colour():
    """The grid's bar chart coloured each LoftUp bar (one per grid) by its place among all
    bars: four colours for one method, read as four methods."""
    from loftup.experiments.grid import LOFTUP, _bar_rows, bar_method
    from loftup.experiments.plots import BASELINE_COLOUR, bar_colours

    cells = [(4, 2), (4, 8), (8, 2), (16, 2)]
    summary = {
        (m, c): summarize([0.5, 0.6]) for m in (LOFTUP, "bilinear", "bicubic") for c in cells
    }
    names = list(_bar_rows(cells, summary))
    grey = tuple(n for n in names if not n.startswith(LOFTUP))
    colours = bar_colours(names, grey, bar_method)
    ours = {colours[i] for i, n in enumerate(names) if n.startswith(LOFTUP)}
    assert len(ours) == 1 and BASELINE_COLOUR not in ours
    assert {colours[i] for i, n in enumerate(names) if n in grey} == {BASELINE_COLOUR}
    assert len(set(bar_colours(["a", "b", "c"]))) == 3  # variants: each its own colour


def test_the_help_of_quick_says_what_it_sets(capsys):
    """`--help` said --seeds defaults to 3 and --quick was a "tiny smoke run": what --quick
    sets instead (2 seeds, 32 px, 2 steps...) was nowhere."""
    from loftup.experiments.settings import QUICK

    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for key, value in QUICK.items():
        assert f"--{key.replace('_', '-')} {value}" in text


def test_overrides_paths_are_expanded_as_loftup_trains_are(tmp_path, monkeypatch):
    """`loftup experiment coords data.cache_dir=$CACHE/m` (quoted, or a ~ after '=', which no
    shell expands) cached the masks in a folder named '$CACHE' under the current one, where
    `loftup train` with the same override expands it; an unset variable is the same one line."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("NOT_SET", raising=False)
    given = ["data.cache_dir=$CACHE/m", "data.sam_weights=~/sam", "stage1.n_jitters=2"]
    s = ExperimentSettings("coords", overrides=given).resolved()
    one, _ = stage_configs(s, Variant("a"), 0, tmp_path / "train", tmp_path / "runs")
    assert one["data"]["cache_dir"] == str(tmp_path / "c" / "m")
    assert one["data"]["sam_weights"] == str(tmp_path / "sam")
    assert one["stage1"]["n_jitters"] == 2
    s = ExperimentSettings("coords", overrides=["data.cache_dir=$NOT_SET/m"]).resolved()
    with pytest.raises(LoftUpError) as e:
        stage_configs(s, Variant("a"), 0, tmp_path / "train", tmp_path / "runs")
    assert str(e.value) == (
        "config key data.cache_dir ('$NOT_SET/m', given as an override): the environment "
        "variable NOT_SET is not set; export NOT_SET=... before the run, or write the path out "
        "($$ for a literal $)"
    )


def test_overrides_are_read_by_loftup_trains_own_reader(tmp_path):
    """The experiment read its overrides with its own copy of `loftup train`'s steps, which
    missed the check of a Python string (overrides="seed=1" was read a character each: "override
    's' is not key=value"): the one reader says what to give instead."""
    s = ExperimentSettings("coords", overrides="stage1.n_jitters=2").resolved()
    with pytest.raises(LoftUpError) as e:
        stage_configs(s, Variant("a"), 0, tmp_path / "train", tmp_path / "runs")
    assert str(e.value).startswith("overrides are a list of key=value strings, e.g. ")


def test_the_configs_reported_name_the_folders_the_runs_used(tmp_path):
    """results.json's configs were each run's config.yaml as written, where every $ of a path
    is doubled (so that the file, read back, names the same folder): data.root=/d/a$b was
    reported as /d/a$$b, a folder the run never read."""
    from loftup.experiments.runs import RunResult, run_configs
    from loftup.train.config import load_config
    from loftup.train.monitor import write_run_record

    s = ExperimentSettings("coords").resolved()
    one, _ = stage_configs(s, Variant("a"), 0, tmp_path / "a$b", tmp_path / "runs")
    out = tmp_path / "run$1"
    out.mkdir()
    cfg = load_config({**one, "data": {**one["data"], "cache_dir": str(tmp_path / "$c")}})
    write_run_record(out, cfg.to_dict(), 1)
    assert "$$b" in (out / "config.yaml").read_text()
    run = RunResult(out / "final", out / "checkpoint.pt", [], 0.0)
    [reported] = run_configs({"stage1": run}).values()
    assert reported["data"]["root"] == str(tmp_path / "a$b")
    assert reported["data"]["cache_dir"] == str(tmp_path / "$c")
    assert reported == {k: v for k, v in cfg.to_dict().items() if k != "log"}


@pytest.mark.parametrize(
    "override, instead",
    [
        ("seed=1", "give --seeds N (runs of seeds 0 to N-1)"),
        ("log.out_dir=x", "give --out"),
        ("data.root=d", "give --data"),
        ("max_steps=5", "give --stage1-steps or --stage2-steps"),
        ("epochs=3", "its max_steps outranks epochs: give --stage1-steps or --stage2-steps"),
        ("stage=2", "it trains the stages each variant needs"),
        ("init=runs/s1/checkpoint.pt", "stage 2 starts from the variant's own stage-1 run"),
        ("backbone=dinov2_vits14", "give --backbone"),
        ("backbone_weights=/w", "give --backbone-weights"),
        ("data.masks=superpixels", "give --masks"),
    ],
)
def test_an_override_of_what_each_run_sets_is_refused_before_any_work(override, instead, tmp_path):
    """`loftup experiment coords seed=1` trained every "seed" with seed 1: the spread over the
    seeds was nil, so that any difference was reported as a finding; log.out_dir=x put every
    run in one folder. Such an override is one line naming the option to use, said before
    anything is written."""
    from loftup.experiments import run_experiment

    s = ExperimentSettings("coords", out=str(tmp_path / "x"), overrides=[override], quick=True)
    with pytest.raises(LoftUpError) as e:
        run_experiment(s)
    key = override.split("=")[0]
    assert str(e.value).startswith(f"override {key}=... cannot be given to an experiment: it ")
    assert f"it sets {key} for each run itself; {instead}" in str(e.value)
    assert not (tmp_path / "x").exists()


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


@pytest.mark.parametrize(
    "name, override, key",
    [
        ("coords", "model.coords=false", "model.coords"),
        ("coords", "model={coords: true}", "model.coords"),
        ("attention", "model.attention_window=3", "model.attention_window"),
        ("distill-view", "stage2.teacher_view=full", "stage2.teacher_view"),
        ("mask-noise", "mask_noise.erode=0.5", "mask_noise.erode"),
    ],
)
def test_an_override_of_what_the_variants_compare_is_refused_before_any_work(
    name, override, key, tmp_path
):
    """`loftup experiment coords model.coords=false` trained both variants without coordinates
    (the overrides come after the variants' switches) and reported their noise as the effect
    of the encoding: one line naming the key and a variant that sets it, before any work."""
    from loftup.experiments import run_experiment

    s = ExperimentSettings(name, out=str(tmp_path / "x"), overrides=[override], quick=True)
    with pytest.raises(LoftUpError) as e:
        run_experiment(s)
    assert str(e.value).startswith(f"override {key}=... cannot be given to experiment {name}: ")
    assert "it is what its variants compare (variant " in str(e.value)
    assert str(e.value).endswith(f" sets {key}); leave it out")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "name, override",
    [("coords", "log=out_dir"), ("coords", "data=root"), ("stages", "log=null")],
)
def test_a_section_set_to_a_word_is_not_read_as_an_override_of_a_key_of_it(
    name, override, tmp_path
):
    """log=out_dir was refused as an override of log.out_dir (the word was searched for in the
    text as in a section): the error is the config's own, naming the section as given. (An
    experiment with stage 2 read its stage-1 folder from the merged config: log=null was a
    TypeError traceback.)"""
    from loftup.experiments import run_experiment

    s = ExperimentSettings(name, out=str(tmp_path / "x"), overrides=[override], quick=True)
    with pytest.raises(LoftUpError) as e:
        run_experiment(s)
    assert not str(e.value).startswith("override "), str(e.value)
    assert override.split("=")[0] in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x").exists()
