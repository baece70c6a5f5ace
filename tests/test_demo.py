"""`loftup demo`: scoring per upsampler, and the whole run end to end (slow)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from loftup.cli import main
from loftup.errors import UsageError
from loftup.world.demo import RECORD, DemoConfig, _options, check_out
from loftup.world.heldout import score, score_all
from loftup.world.report import markdown_table


def test_score_rewards_features_that_know_where_classes_stop():
    torch.manual_seed(0)
    labels = torch.zeros(8, 32, 32, dtype=torch.long)
    for i in range(8):  # a square of class 1 at a different place in each scene
        y, x = torch.randint(3, 17, (2,)).tolist()
        labels[i, y : y + 13, x : x + 11] = 1
    sharp = F.one_hot(labels, 2).permute(0, 3, 1, 2).float()
    coarse = F.interpolate(F.avg_pool2d(sharp, 8), size=(32, 32), mode="nearest")
    cfg = DemoConfig(probe_epochs=30, probe_lr=0.1)
    good, bad = score(sharp, labels, 2, cfg), score(coarse, labels, 2, cfg)
    assert good["miou"] > 0.99 and good["boundary_f_2px"] > 0.99, good
    assert bad["boundary_f_2px"] < good["boundary_f_2px"] - 0.2, bad
    assert good["pred"].shape == (4, 32, 32)
    table = markdown_table({"sharp": {k: v for k, v in good.items() if k != "pred"}})
    assert "| sharp | 1.000 |" in table


def test_score_leaves_void_pixels_out_of_the_boundary_f_score():
    """A dataset's void (255; experiments with --eval-dataset score with this function) is not
    a class: features that place every scored boundary exactly score 1, not less because no
    upsampler draws a boundary along the void."""
    torch.manual_seed(0)
    labels = torch.zeros(8, 32, 32, dtype=torch.long)
    for i in range(8):
        y, x = torch.randint(3, 17, (2,)).tolist()
        labels[i, y : y + 13, x : x + 11] = 1
    labels[:, 30:, :] = 255  # void along the bottom, inside the background
    sharp = F.one_hot(labels.masked_fill(labels == 255, 0), 2).permute(0, 3, 1, 2).float()
    good = score(sharp, labels, 2, DemoConfig(probe_epochs=30, probe_lr=0.1))
    assert good["miou"] > 0.99 and good["pixel_accuracy"] > 0.99, good
    assert good["boundary_f_2px"] > 0.99, good


def test_the_demos_probe_fits_show_their_progress(capsys):
    """Each of the demo's six probe fits takes tens of seconds on a CPU: a bar over the
    upsamplers (naming the one being fitted) and one over each fit's steps, none when off."""
    labels = torch.zeros(4, 16, 16, dtype=torch.long)
    labels[:, :, 8:] = 1
    feats = F.one_hot(labels, 2).permute(0, 3, 1, 2).float()
    cfg = DemoConfig(probe_epochs=2)
    results = score_all({"bilinear": feats, "stage2": feats}, labels, 2, cfg)
    assert list(results) == ["bilinear", "stage2"]
    assert results["stage2"]["miou"] == score(feats, labels, 2, cfg)["miou"]
    err = capsys.readouterr().err
    assert "probes" in err and "stage2" in err and "2/2" in err, err
    assert "seg probe" in err, err  # the steps of a fit
    score_all({"bilinear": feats}, labels, 2, cfg, progress=False)
    assert capsys.readouterr().err == ""


def test_the_demos_scenes_and_upsampling_show_no_bar_under_no_progress(tmp_path, capsys):
    """`loftup demo --no-progress`: the scenes being written and the upsampling drew their
    bars whatever was asked (training's and the probes' follow log.progress and score_all's
    progress, given the same value)."""
    from loftup.baselines import get_upsampler
    from loftup.world.demo import make_scenes
    from loftup.world.heldout import upsampled_features

    cfg = DemoConfig(out=str(tmp_path / "d"), size=8, train_scenes=1, val_scenes=2, batch_size=1)
    feats, guidance = torch.rand(2, 4, 2, 2), torch.rand(2, 3, 8, 8)
    upsamplers = {"bilinear": get_upsampler("bilinear")}
    for progress in (False, True):
        make_scenes(cfg, reuse=progress, progress=progress)  # (kept the second time)
        upsampled_features(upsamplers, feats, guidance, progress=progress)
        err = capsys.readouterr().err
        if progress:
            assert "upsampling" in err, err
        else:
            assert err == ""
    cfg = DemoConfig(out=str(tmp_path / "e"), size=8, train_scenes=1, val_scenes=2, batch_size=1)
    make_scenes(cfg)  # written, with their bars by default
    assert "scenes" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_end_to_end_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--size", "64", "--train-scenes", "12"]
    args += [
        "--val-scenes",
        "8",
        "--stage1-steps",
        "3",
        "--stage2-steps",
        "2",
        "--probe-epochs",
        "2",
    ]
    assert main(args) == 0
    assert "seg probe" in capsys.readouterr().err  # the probe fits show their progress
    report = json.loads((out / "report.json").read_text())
    assert list(report["results"]) == ["nearest", "bilinear", "bicubic", "jbu", "stage1", "stage2"]
    for r in report["results"].values():
        assert 0 <= r["miou"] <= 1 and 0 <= r["boundary_f_2px"] <= 1
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # what made the numbers, for comparing them with the README's (and another machine's)
    assert report["run"]["torch"] == torch.__version__ and "git_commit" in report["run"]
    text = (out / "report.md").read_text()
    assert "| stage2 |" in text and "- stage2: " in text and "mIoU vs bilinear" in text
    assert main(args) == 2  # an existing report is never overwritten


def test_an_out_folder_is_checked_before_the_demo_writes_anything(tmp_path):
    """A file, a finished demo, an interrupted one without --resume, one begun with other
    options and one whose record cannot be read are each refused in one line naming the fix."""
    out = tmp_path / "demo"
    cfg = DemoConfig(out=str(out))
    check_out(cfg)  # nothing there yet
    out.mkdir()
    (out / RECORD).write_text(json.dumps(_options(cfg)))
    with pytest.raises(UsageError, match="holds an interrupted demo; run the same command with"):
        check_out(cfg)
    check_out(cfg, resume=True)
    with pytest.raises(UsageError, match=r"begun with other options \(--seed 0\); resume it"):
        check_out(DemoConfig(out=str(out), seed=1), resume=True)
    (out / RECORD).write_text('{"size": 6')  # cut short
    with pytest.raises(UsageError, match=rf"--resume: {out / RECORD} cannot be read \(") as e:
        check_out(cfg, resume=True)
    assert "choose another --out" in str(e.value) and "\n" not in str(e.value)
    (out / "report.json").write_text("{}")
    with pytest.raises(UsageError, match="already holds a demo report; choose another --out"):
        check_out(cfg, resume=True)
    experiment = tmp_path / "experiment"  # an experiment's folder: both write report.md
    experiment.mkdir()
    (experiment / "results.json").write_text('{"experiment": "coords"}')
    with pytest.raises(UsageError, match="holds the report of a `loftup experiment`; choose"):
        check_out(DemoConfig(out=str(experiment)))
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match=rf"^--out {tmp_path / 'file'} is a file; give a folder$"):
        check_out(DemoConfig(out=str(tmp_path / "file")))


def test_a_demo_of_an_earlier_version_is_resumed_only_where_its_options_can_be_checked(
    tmp_path,
):
    """Without demo.json (an earlier version wrote none) --resume kept every complete scene
    folder and training run as they were, whatever options had made them."""
    from loftup.world.demo import make_train_scenes, make_val_scenes

    out = tmp_path / "demo"
    begun = DemoConfig(out=str(out), size=8, train_scenes=6, val_scenes=2)
    make_train_scenes(begun, progress=False)
    make_val_scenes(begun, progress=False)
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    check_out(begun, resume=True)  # scenes alone: each checked as it is reused
    assert make_train_scenes(begun, reuse=True) == out / "scenes" / "train"
    assert make_val_scenes(begun, reuse=True) == out / "scenes" / "val"
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == kept  # not rewritten
    # the options as typed: it said "seed 1 -> 4" of the held-out scenes (the world's seed,
    # --seed + 1) and "size 16x16 -> 32x32" of the training ones (twice --size)
    other = DemoConfig(out=str(out), size=16, train_scenes=4, val_scenes=2, seed=3)
    fix = "; run with those to go on with them, or choose another --out or delete it"
    for make, part, diff in (
        (make_train_scenes, "training", "--size 8 -> 16; --seed 0 -> 3; --train-scenes 6 -> 4"),
        (make_val_scenes, "held-out", "--size 8 -> 16; --seed 0 -> 3"),
    ):
        folder = out / "scenes" / ("train" if part == "training" else "val")
        with pytest.raises(UsageError) as e:
            make(other, reuse=True)
        assert str(e.value) == f"{folder} holds the {part} scenes of other options ({diff}){fix}"
        with pytest.raises(UsageError, match=rf"^{folder} holds the {part} scenes of other "):
            make(other, progress=False)  # written afresh over them: refused as well
    with pytest.raises(UsageError, match=r"\(--train-scenes 6 -> 4\); run with those"):
        make_train_scenes(DemoConfig(out=str(out), size=8, train_scenes=4), reuse=True)
    # a world no demo's options make is told in its own values, saying whose they are
    record = json.loads((out / "scenes" / "val" / "world.json").read_text())
    record["config"]["scale"] = 3.0
    (out / "scenes" / "val" / "world.json").write_text(json.dumps(record))
    with pytest.raises(UsageError, match=r"another world \(seed of the held-out scenes 1 -> 4; "):
        make_val_scenes(other, reuse=True)
    (out / "runs" / "stage1").mkdir(parents=True)  # training, of options no record holds
    with pytest.raises(UsageError, match=r"^--resume: .* begun by an earlier version .*demo.json"):
        check_out(begun, resume=True)


def test_scenes_of_other_options_are_refused_before_the_demo_records_its_own(tmp_path):
    """An earlier version's scenes (no demo.json) of other options were refused after the demo
    had written its record: the command with the scenes' options, as the refusal advised, was
    then refused as "an interrupted demo", and with --resume as "begun with other options"
    (those refused), a loop. They are refused before anything is written."""
    from loftup.world.demo import make_train_scenes, run_demo

    out = tmp_path / "demo"
    make_train_scenes(DemoConfig(out=str(out), size=8, train_scenes=4), progress=False)
    for resume in (False, True):
        with pytest.raises(UsageError, match=r"other options \(--seed 0 -> 1\); run with those"):
            run_demo(DemoConfig(out=str(out), size=8, train_scenes=4, seed=1), resume=resume)
        assert not (out / RECORD).exists()
    check_out(DemoConfig(out=str(out), size=8, train_scenes=4))  # as the refusal advised


def test_the_demo_reads_a_scene_folders_record_once_to_reuse_or_write_it(tmp_path, monkeypatch):
    """Its options' check and the world's check each read world.json (three reads to reuse a
    folder, two to write one): a record read twice could differ between the two checks."""
    import loftup.atomic
    from loftup.world.demo import make_val_scenes

    cfg = DemoConfig(out=str(tmp_path / "demo"), size=8, val_scenes=2)
    real, reads = loftup.atomic.read_json_object, []

    def counted(path, *what, **another):  # the val folder's (a kept one: the training's too)
        if path.parent.name == "val":
            reads.append(path.name)
        return real(path, *what, **another)

    monkeypatch.setattr(loftup.atomic, "read_json_object", counted)
    make_val_scenes(cfg, progress=False)  # nothing there: world.json, then the partial record
    assert reads == ["world.json", "world.partial.json"]
    reads.clear()
    assert make_val_scenes(cfg, reuse=True) == tmp_path / "demo" / "scenes" / "val"
    assert reads == ["world.json"]


def test_the_report_counts_in_words_that_agree():
    """A demo of one step a stage said "stage 1: 1 steps, stage 2: 1 steps" and "on 1
    thread(s)"."""
    from loftup.world.report import report_markdown

    row = {"miou": 0.5, "pixel_accuracy": 0.5, "boundary_f_2px": 0.5}
    results = {n: row for n in ("nearest", "bilinear", "bicubic", "jbu", "stage1", "stage2")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = report_markdown(DemoConfig(stage1_steps=1, stage2_steps=1), results, 4, {"a": 1})
    finally:
        torch.set_num_threads(threads)
    assert "stage 1: 1 step, stage 2: 1 step of batch 4; 1 s in all on 1 thread.\n" in one
    more = report_markdown(DemoConfig(stage1_steps=5, stage2_steps=2), results, 4, {"a": 1})
    assert "stage 1: 5 steps, stage 2: 2 steps of batch" in more
