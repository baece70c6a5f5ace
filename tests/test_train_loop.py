"""Short real training runs: losses go down, checkpoints load everywhere, resume is exact."""

import contextlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import loftup
from loftup.cli import main
from loftup.data.dataset import MaskedImages, collate
from loftup.train import train
from loftup.train.batches import draw_step, stage1_inputs, stage2_inputs
from loftup.train.build import build_featurizer
from loftup.train.checkpoint import pack_history, save_checkpoint, unpack_history
from loftup.train.losses import project
from train_fixtures import tiny_config as tiny
from train_fixtures import write_sa1b

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture(scope="module")
def sa1b(tmp_path_factory):
    return write_sa1b(tmp_path_factory.mktemp("data") / "sa1b", 16, size=56)


@pytest.fixture(scope="module")
def stage1_run(sa1b, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "s1"
    # backbone_norm=own gives dinov2_tiny the same pixels; the record must still say "own"
    args = ("log.viz_every=8", "log.tensorboard=true", "backbone_norm=own")
    return train(tiny(sa1b, out, 1, 16, *args))


def mean(xs):
    return sum(xs) / len(xs)


def test_a_short_seeded_run_learns(stage1_run):
    h = stage1_run.history
    assert len(h) == 16 and [r["step"] for r in h] == list(range(16))
    for key in ("loss", "target", "tv"):
        first, last = mean([r[key] for r in h[:4]]), mean([r[key] for r in h[-4:]])
        assert last < 0.5 * first, (key, first, last)
    # the reconstruction term includes log s of the learned uncertainty: it may go below 0
    first, last = mean([r["rec"] for r in h[:4]]), mean([r["rec"] for r in h[-4:]])
    assert last < first - 0.2, (first, last)


def test_the_run_leaves_loadable_checkpoints_and_its_record(stage1_run):
    out = stage1_run.out_dir
    raw = torch.load(stage1_run.checkpoint, map_location="cpu", weights_only=True)
    assert raw["step"] == 16 and raw["stage"] == 1 and raw["backbone"] == "dinov2_tiny"
    assert len(unpack_history(raw["history"])) == 16 and "state" in raw["optimizer"]
    model = loftup.load_upsampler(stage1_run.checkpoint)
    assert model.backbone == "dinov2_tiny"  # read from the checkpoint, so upsample needs no flag
    assert model.backbone_norm == "own"
    for key, value in raw["model"].items():
        assert torch.equal(model.state_dict()[key], value)
    folder = loftup.load_upsampler(stage1_run.pretrained)
    assert folder.backbone == "dinov2_tiny" and folder.backbone_norm == "own"
    assert all(torch.equal(folder.state_dict()[k], v) for k, v in raw["model"].items())
    info = json.loads((stage1_run.pretrained / "config.json").read_text())
    assert info["metadata"]["steps"] == 16 and info["metadata"]["stage"] == 1
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 17 and rows[0].startswith("step,loss,rec,tv,target")
    assert sorted(p.name for p in (out / "viz").iterdir()) == [
        "step_0000008.png",
        "step_0000016.png",
    ]
    assert list((out / "tb").iterdir()) and (out / "config.yaml").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 16 and summary["final"]["loss"] == stage1_run.losses[-1]
    assert json.loads((out / "run.json").read_text())["loftup_version"] == loftup.__version__
    assert not list(out.glob(".*.tmp"))


def test_stage2_resume_equals_an_uninterrupted_run(stage1_run, sa1b, tmp_path):
    init = f"init={stage1_run.checkpoint}"
    whole = train(tiny(sa1b, tmp_path / "whole", 2, 4, init))
    train(tiny(sa1b, tmp_path / "parts", 2, 2, init))
    resumed = train(tiny(sa1b, tmp_path / "parts", 2, 4, init), resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    saved = unpack_history(torch.load(resumed.checkpoint, weights_only=True)["history"])
    timing = ("seconds", "data_seconds", "target_seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in saved] == [
        {k: v for k, v in r.items() if k not in timing} for r in whole.history
    ]
    a = torch.load(whole.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    for part in ("model", "teacher", "downsampler", "uncertainty"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert unpack_history(a["history"])[-1]["affinity"] > 0
    assert all(r["target_seconds"] > 0 for r in whole.history)  # the teacher's time, not 0
    teacher = loftup.load_upsampler(tmp_path / "whole" / "final_teacher")
    student = loftup.load_upsampler(whole.pretrained)
    assert any(not torch.equal(teacher.state_dict()[k], v) for k, v in student.state_dict().items())


def test_each_crop_region_is_the_part_of_the_global_view_the_teacher_saw(sa1b):
    """method.md stage 2: the student's output is cropped to the region of the global view that
    corresponds to the teacher's s x s crop of the load-size image. With a teacher that returns
    its image (and no mask adjustment), the region of the global image is that crop, resized."""
    from loftup.train.batches import default_global_sizes
    from loftup.train.objectives import crop_regions

    assert default_global_sizes(14) == [224, 336, 448, 518]
    assert default_global_sizes(16) == [224, 336, 448, 512]
    cfg = tiny(sa1b, "unused", 2, 1, "init=unused", "stage2.teacher_alpha=0",
               "stage2.affinity_max_side=28")  # fmt: skip
    featurizer = build_featurizer(cfg, torch.device("cpu"))
    batch = collate([MaskedImages(sa1b, size=112)[i] for i in range(4)])
    draws = draw_step(cfg, 3, featurizer.dim, featurizer.patch_size, [56])
    images01 = batch["image"].float() / 255
    inputs = stage2_inputs(featurizer, lambda lr, img: img, images01, batch, draws, cfg)
    assert len(inputs["regions"]) == cfg.stage2.n_jitters
    for j, region in enumerate(inputs["regions"]):
        assert torch.equal(region["boxes"][:, :2], draws.offsets[:, j] // 2)  # s / load = 1/2
        assert bool((region["boxes"][:, 2] == 28).all())  # a 56 px crop of 112 is 28 px at 56
        student = crop_regions(inputs["image"], region["boxes"], 28)
        inner = (..., slice(2, -2), slice(2, -2))  # the antialiasing filter sees past a crop
        assert torch.allclose(student[inner], region["teacher"][inner], atol=1e-4)


def test_stage2_times_its_targets_the_teachers_regions(sa1b):
    """metrics.csv's target_seconds was 0 at every stage-2 step (only stage 1 timed its
    target). Stage 2's targets are the teacher's regions: the time of its forward is counted,
    and nothing outside them (the global view's backbone, the jittered views)."""
    import time

    cfg = tiny(sa1b, "unused", 2, 1, "init=unused", "stage2.teacher_view=both")
    featurizer = build_featurizer(cfg, torch.device("cpu"))
    batch = collate([MaskedImages(sa1b, size=112)[i] for i in range(4)])
    draws = draw_step(cfg, 0, featurizer.dim, featurizer.patch_size, [56])
    calls = []

    def slow_teacher(lr_feats, image):  # upsamples as slowly as a big teacher
        calls.append(time.sleep(0.05))
        return F.interpolate(lr_feats, size=image.shape[-2:], mode="bilinear")

    started = time.perf_counter()
    inputs = stage2_inputs(featurizer, slow_teacher, batch["image"] / 255, batch, draws, cfg)
    whole = time.perf_counter() - started
    assert len(calls) == cfg.stage2.n_jitters + 1  # each jitter's crops, and the global view
    assert 0.05 * len(calls) <= inputs["target_seconds"] < whole


@pytest.mark.parametrize("view", ["full", "both"])
def test_stage2_teacher_on_the_full_image_or_both_scales(stage1_run, sa1b, tmp_path, view):
    crops = train(tiny(sa1b, tmp_path / "c", 2, 1, f"init={stage1_run.checkpoint}"))
    other = train(tiny(sa1b, tmp_path / view, 2, 1, f"init={stage1_run.checkpoint}",
                       f"stage2.teacher_view={view}"))  # fmt: skip
    a, b = crops.history[0], other.history[0]
    assert a["rec"] == pytest.approx(b["rec"], rel=1e-5)  # same student, same views
    assert b["affinity"] > 0 and abs(a["affinity"] - b["affinity"]) > 1e-6


def test_a_size_that_is_no_multiple_of_the_patch_trains_on_the_featurizers_grid(
    stage1_run, sa1b, tmp_path
):
    """63 px with patch 14 is 4.5 patches: the featurizer rounds it to 5 (70 px), and the
    downsampler's dropout mask must be drawn on those 5 cells, not on 63 // 14 = 4 (a crash at
    step 0 before)."""
    cfg = tiny(sa1b, tmp_path / "s1", 1, 1, "stage1.image_size=63")
    assert draw_step(cfg, 0, 384, 14, [63]).keep.shape[-2:] == (5, 5)
    one = train(cfg)
    two = train(tiny(sa1b, tmp_path / "s2", 2, 1, f"init={stage1_run.checkpoint}",
                     "stage2.global_sizes=[63]"))  # fmt: skip
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in one.history + two.history)


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


def test_architecture_switches_are_trained_and_recorded(sa1b, tmp_path):
    cfg = tiny(sa1b, tmp_path / "arch", 1, 2, "model.coords=false", "model.attention_window=3")
    result = train(cfg)
    model = loftup.load_upsampler(result.checkpoint)
    assert model.config.coords is False and model.config.attention_window == 3
    assert loftup.load_upsampler(result.pretrained).config.attention_window == 3
    raw = torch.load(result.checkpoint, weights_only=True)
    assert raw["config"]["model"]["coords"] is False


def test_mask_noise_reaches_the_target(sa1b):
    """With every mask dropped the stage-1 target is plain bicubic upsampling."""
    cfg = tiny(sa1b, "unused", 1, 1)
    featurizer = build_featurizer(cfg, torch.device("cpu"))
    ds = MaskedImages(sa1b, size=56)
    batch = collate([ds[i] for i in range(4)])
    image = featurizer.normalize(batch["image"].float() / 255)
    draws = draw_step(cfg, 0, featurizer.dim, featurizer.patch_size, [56])
    clean = stage1_inputs(featurizer, image, batch, draws, cfg)
    cfg.mask_noise.drop = 1.0
    dropped = stage1_inputs(featurizer, image, batch, draws, cfg)
    bicubic = torch.nn.functional.interpolate(
        project(clean["lr_feats"], clean["proj"]), size=(56, 56), mode="bicubic"
    )
    assert torch.allclose(dropped["target"], bicubic, atol=1e-5)
    assert (clean["target"] - bicubic).abs().max() > 0.1


def test_the_full_view_teacher_runs_once_a_step_and_not_once_a_jitter(stage1_run, sa1b):
    """teacher_view=full: the teacher sees the global view, the same for every jitter, so
    its output is the same for each; it was computed (and mask-adjusted) once per jitter."""
    cfg = tiny(sa1b, "unused", 2, 1, f"init={stage1_run.checkpoint}", "stage2.teacher_view=full")
    featurizer = build_featurizer(cfg, torch.device("cpu"))
    ds = MaskedImages(sa1b, size=112)
    batch = collate([ds[i] for i in range(4)])
    draws = draw_step(cfg, 0, featurizer.dim, featurizer.patch_size, [56])
    teacher = loftup.load_upsampler(stage1_run.checkpoint).eval()
    calls = []
    teacher.register_forward_hook(lambda *args: calls.append(1))
    inputs = stage2_inputs(featurizer, teacher, batch["image"].float() / 255, batch, draws, cfg)
    # the one region stands for every jitter: its affinity is computed once, not n_jitters times
    assert len(calls) == 1 and len(inputs["regions"]) == 1
    assert inputs["regions"][0]["weight"] == cfg.stage2.n_jitters == 2
    assert inputs["regions"][0]["teacher"].shape == (4, featurizer.dim, 8, 8)


@pytest.mark.parametrize("view", ["full", "both"])
def test_the_full_region_counted_once_leaves_the_stage2_loss_and_gradient_unchanged(sa1b, view):
    """The global view's region comes once with weight n_jitters: the loss and its gradient
    are those of the region repeated once per jitter, interleaved with the crops, as before."""
    from loftup.model import LoftUp, LoftUpConfig
    from loftup.train.build import build_trainee
    from loftup.train.losses import affinity_loss, tv_loss
    from loftup.train.objectives import crop_regions, stage2_losses

    cfg = tiny(sa1b, "unused", 2, 1, "init=unused", f"stage2.teacher_view={view}",
               "stage2.n_jitters=3")  # fmt: skip
    featurizer = build_featurizer(cfg, torch.device("cpu"))
    torch.manual_seed(0)
    arch = LoftUpConfig(dim=featurizer.dim, depth=1, num_heads=2, n_freqs=4)
    teacher, student = LoftUp(config=arch).eval(), LoftUp(config=arch)
    trainee = build_trainee(cfg, student, featurizer.patch_size, {}).eval()  # no dropout draws
    ds = MaskedImages(sa1b, size=112)
    batch = collate([ds[i] for i in range(4)])
    draws = draw_step(cfg, 0, featurizer.dim, featurizer.patch_size, [56])
    inputs = stage2_inputs(featurizer, teacher, batch["image"].float() / 255, batch, draws, cfg)
    crops = [r for r in inputs["regions"] if "weight" not in r]
    (full,) = [r for r in inputs["regions"] if "weight" in r]
    assert len(crops) == (3 if view == "both" else 0) and full["weight"] == 3
    weights = {"rec": 1.0, "tv": 0.05, "affinity": 20.0}

    losses = stage2_losses(trainee, inputs, weights)
    losses["loss"].backward()
    grads = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()

    # before: one region per jitter, the crop (with "both") then the same full region again
    hr = student(inputs["lr_feats"], inputs["image"])
    rec = trainee.reconstruction(hr, inputs["views"], inputs["proj"])
    tv = tv_loss(project(hr, inputs["proj"]))
    old = [r for c in crops for r in (c, full)] if crops else [full] * 3
    distill = sum(
        affinity_loss(crop_regions(hr, r["boxes"], r["teacher"].shape[-1]), r["teacher"], 0.8)
        for r in old
    ) / len(old)
    before = weights["rec"] * rec + weights["tv"] * tv + weights["affinity"] * distill
    before.backward()
    assert torch.allclose(losses["affinity"], distill, rtol=1e-6, atol=0)
    assert torch.allclose(losses["loss"], before, rtol=1e-6, atol=0)
    for p, g in zip(student.parameters(), grads, strict=True):
        assert torch.allclose(g, p.grad, rtol=1e-5, atol=1e-6 * g.abs().max().item())


def test_cli_trains_and_will_not_overwrite_a_run(sa1b, tmp_path, capsys):
    args = ["train", "--stage", "1", "--config", "stage1_cpu", "--data", str(sa1b),
            "--out", str(tmp_path / "cli"), "max_steps=2", "stage1.image_size=56",
            "data.masks=sa1b", "data.num_workers=0", "model.depth=1", "log.progress=false"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 steps, final loss" in out and "checkpoint:" in out
    assert main(args) == 2
    assert "already holds a checkpoint; pass --resume" in capsys.readouterr().err
    assert main([*args[:-1], "max_steps=3", "--resume"]) == 0
    assert torch.load(tmp_path / "cli" / "checkpoint.pt", weights_only=True)["step"] == 3


def test_bf16_autocast_runs_both_stages_close_to_float32(stage1_run, sa1b, tmp_path):
    init = f"init={stage1_run.checkpoint}"
    for stage, extra in ((1, []), (2, [init, "stage2.teacher_view=both"])):
        full = train(tiny(sa1b, tmp_path / f"f{stage}", stage, 1, *extra))
        half = train(tiny(sa1b, tmp_path / f"h{stage}", stage, 1, "precision=bf16", *extra))
        assert half.losses[0] == pytest.approx(full.losses[0], rel=0.05)


def tensorboard_record(folder):
    """What TensorBoard shows for a run folder: {scalar tag: {step: value}} and {image tag:
    [steps]}, read with TensorBoard's own reader (which drops the points a resumed run
    replaced)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {}
    for tag in tags["scalars"]:
        points = acc.Scalars(tag)
        assert len({p.step for p in points}) == len(points), f"{tag} repeats a step"
        scalars[tag] = {p.step: p.value for p in points}
    return scalars, {tag: [e.step for e in acc.Images(tag)] for tag in tags["images"]}


def test_tensorboard_shows_the_numbers_of_the_csv_once_each_across_a_crash_and_resume(
    sa1b, tmp_path
):
    """A run checkpointed at step 2 that went on to step 4 (with another learning rate) before
    it died, then resumed from that checkpoint: TensorBoard shows steps 0-5 once each, with
    the resumed run's values."""
    out = tmp_path / "run"
    opts = ("log.tensorboard=true", "log.log_every=1", "log.viz_every=2")
    train(tiny(sa1b, out, 1, 2, *opts))
    at_step_2 = (out / "checkpoint.pt").read_bytes()
    died = train(tiny(sa1b, out, 1, 4, *opts, "optim.lr=3e-2"), resume=True)
    (out / "checkpoint.pt").write_bytes(at_step_2)  # steps 2 and 3 were never saved
    final = train(tiny(sa1b, out, 1, 6, *opts), resume=True)
    assert len(list((out / "tb").iterdir())) == 3  # one event file per process
    scalars, images = tensorboard_record(out)
    rows = (out / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    csv = [dict(zip(header, map(float, row.split(",")))) for row in rows[1:]]
    assert [int(r["step"]) for r in csv] == list(range(6))
    for key in ("loss", "rec", "tv", "target"):
        shown = scalars[f"train/{key}"]
        assert sorted(shown) == list(range(6)), (key, sorted(shown))
        for row in csv:
            assert shown[int(row["step"])] == pytest.approx(row[key], rel=1e-6, abs=1e-7), key
    losses = [r["loss"] for r in final.history]
    assert [scalars["train/loss"][s] for s in range(6)] == pytest.approx(losses, rel=1e-6)
    # the crashed run's step 3 (after a step at another learning rate) was replaced
    assert scalars["train/loss"][3] != pytest.approx(died.history[3]["loss"], rel=1e-3)
    assert images == {"viz/upsampled_pca": [2, 4, 6], "viz/lowres_pca": [2, 4, 6]}


def test_a_resumed_run_trains_with_its_own_learning_rate_and_not_another_optimiser(
    sa1b, tmp_path, caplog
):
    """Loading the optimiser's state brings the checkpoint's learning rate with it; the
    resumed run's config wins and the log says so. Another optimiser is refused."""
    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 2))
    with caplog.at_level("INFO", logger="loftup"):
        train(tiny(sa1b, out, 1, 3, "optim.lr=1e-3", "optim.weight_decay=0.01"), resume=True)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"]
    assert {(g["lr"], g["weight_decay"]) for g in saved} == {(1e-3, 0.01)}
    assert "resuming with this run's optim.lr=0.001 (the checkpoint had 0.003)" in caplog.text
    assert "optim.weight_decay=0.01 (the checkpoint had 0.0)" in caplog.text
    with pytest.raises(loftup.LoftUpError, match=r"made with optim.name='nadam', this run has "
                       r"optim.name='sgd'; use the same optimiser or another --out \(log.out_dir"):  # fmt: skip
        train(tiny(sa1b, out, 1, 4, "optim.name=sgd"), resume=True)


def test_resuming_with_other_trained_modules_is_refused_in_one_line(sa1b, tmp_path):
    """recon.uncertainty adds or removes a trained module: the checkpoint's optimiser state
    and module states would not fit (a ValueError traceback from torch before)."""
    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 2, "log.ckpt_every=1"))
    with pytest.raises(loftup.LoftUpError, match=r"made with recon.uncertainty=True, this run "
                       r"has recon.uncertainty=False; use the same config or another --out"):  # fmt: skip
        train(tiny(sa1b, out, 1, 3, "recon.uncertainty=false"), resume=True)


def test_stage2_resumes_from_its_checkpoint_whatever_became_of_init(stage1_run, sa1b, tmp_path):
    """The checkpoint holds the student, teacher and downsampler: a resumed stage 2 does not
    read init again. Before, a stage-1 run moved away stopped the resume ("init does not
    exist") and one of another architecture in its place ended in load_state_dict's
    RuntimeError traceback."""
    s1 = tmp_path / "s1"
    s1.mkdir()
    shutil.copy(stage1_run.checkpoint, s1)
    init = f"init={s1 / 'checkpoint.pt'}"
    whole = train(tiny(sa1b, tmp_path / "whole", 2, 2, init))
    train(tiny(sa1b, tmp_path / "parts", 2, 1, init))
    s1.rename(tmp_path / "moved")
    resumed = train(tiny(sa1b, tmp_path / "parts", 2, 2, init), resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    train(tiny(sa1b, s1, 1, 1, "model.depth=2"))  # another architecture where init was
    resumed = train(tiny(sa1b, tmp_path / "parts", 2, 3, init), resume=True)
    assert resumed.steps == 3 and len(loftup.load_upsampler(resumed.pretrained).blocks) == 1


def test_stage2_reads_its_init_once_and_trains_the_same_with_a_model_key(
    stage1_run, sa1b, tmp_path, monkeypatch
):
    """A model.* key set for stage 2 is checked against init's architecture before anything
    else loads; the run then starts from what that check read. It read the file again, and a
    third time for the downsampler's state: three reads of a file that may be large and
    remote. The same key as init's changes nothing in the run."""
    init = f"init={stage1_run.checkpoint}"
    plain = train(tiny(sa1b, tmp_path / "plain", 2, 1, init))
    reads, load = [], torch.load

    def counted(f, *args, **kwargs):
        reads.append(str(f))
        return load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    keyed = train(tiny(sa1b, tmp_path / "keyed", 2, 1, init, "model.depth=1"))
    assert reads.count(str(stage1_run.checkpoint)) == 1
    assert keyed.losses == plain.losses


def test_resuming_past_a_lower_max_steps_says_that_nothing_is_trained(
    stage1_run, sa1b, tmp_path, caplog
):
    """A run resumed with a max_steps below its checkpoint's step trained nothing and exported
    the checkpoint as final/ without a word: the user asked for a shorter run and did not get
    one. It still exports (a lower max_steps cannot undo steps), and says so."""
    out = tmp_path / "s1"
    shutil.copytree(stage1_run.out_dir, out)
    args = ("log.viz_every=8", "log.tensorboard=true", "backbone_norm=own")
    with caplog.at_level("WARNING", logger="loftup.train"):
        result = train(tiny(sa1b, out, 1, 8, *args), resume=True)
    assert result.steps == 16 and len(result.history) == 16
    assert f"{out / 'checkpoint.pt'} holds step 16, past this run's 8 (max_steps" in caplog.text
    assert "final/ is exported from the checkpoint as it is" in caplog.text


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


def test_resuming_on_another_number_of_images_says_the_order_differs(sa1b, tmp_path, caplog):
    """The data order is a seeded permutation of the images, so a run resumed after images were
    added or removed (or data.max_images changed) reads them in another order than an
    uninterrupted run would, although --resume is said to go on exactly: it went on without a
    word. The checkpoint records the count, and a resumed run whose data differs says so."""
    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 1))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["images"] == 16
    with caplog.at_level("WARNING", logger="loftup.train"):
        train(tiny(sa1b, out, 1, 2, "data.max_images=12"), resume=True)
    assert (
        f"{out / 'checkpoint.pt'} was trained on 16 images, the data now holds 12: the resumed "
        "run reads them in another order than an uninterrupted run would"
    ) in caplog.text


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


def test_the_checkpoint_clock_is_due_minutes_after_the_last_save_on_rank_0_only():
    from loftup.train.checkpoint import CheckpointClock

    now = [100.0]
    clock = CheckpointClock(1.5, main=True, clock=lambda: now[0])
    other = CheckpointClock(1.5, main=False, clock=lambda: now[0])
    now[0] += 89.9
    assert clock.votes() == {"ckpt_due": 0.0}
    now[0] += 0.1
    assert clock.votes() == {"ckpt_due": 1.0} and other.votes() == {"ckpt_due": 0.0}
    # averaged over 2 ranks (rank 0's 1, rank 1's 0): every rank reads "due", the key taken out
    means = {"loss": 0.5, "ckpt_due": 0.5}
    assert other.agreed(means) is True and means == {"loss": 0.5}
    clock.saved()
    now[0] += 60.0
    assert clock.votes() == {"ckpt_due": 0.0} and not clock.agreed(clock.votes())
    never = CheckpointClock(0, main=True, clock=lambda: now[0])
    now[0] += 1e9
    assert never.votes() == {"ckpt_due": 0.0}


@pytest.mark.parametrize("stage, minutes", [(1, 0), (2, 1e-9)])
def test_a_run_lost_between_step_checkpoints_goes_on_from_the_timed_one(
    request, sa1b, tmp_path, monkeypatch, stage, minutes
):
    """log.ckpt_minutes: a checkpoint once that much wall time has passed since the last,
    whatever log.ckpt_every says. A run lost at step 3 of 4 with ckpt_every=100 (as under kill
    -9, nothing of its own written on the way out) keeps step 3 with a clock of a moment, and
    resumed from it ends as an uninterrupted run does (in stage 2 the EMA teacher too, saved
    between its updates: ema_every=2); without the clock (0) nothing is kept."""
    from loftup.train import loop

    opts = ("log.ckpt_every=100", f"log.ckpt_minutes={minutes}")
    if stage == 2:
        opts += (f"init={request.getfixturevalue('stage1_run').checkpoint}",)
    out = tmp_path / "lost"
    real = loop.draw_step

    def lost_at_step_3(cfg, step, *args, **kwargs):
        if step == 3:
            raise MemoryError("the node is gone")  # no signal: the run writes nothing more
        return real(cfg, step, *args, **kwargs)

    monkeypatch.setattr(loop, "draw_step", lost_at_step_3)
    with pytest.raises(MemoryError):
        train(tiny(sa1b, out, stage, 4, *opts))
    monkeypatch.undo()
    if not minutes:
        assert not (out / "checkpoint.pt").exists()
        return
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3
    resumed = train(tiny(sa1b, out, stage, 4, *opts), resume=True)
    whole = train(tiny(sa1b, tmp_path / "whole", stage, 4, *opts))
    assert resumed.losses == whole.losses and len(whole.losses) == 4
    a = torch.load(whole.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    parts = ("model", "downsampler", "uncertainty") + (("teacher",) if stage == 2 else ())
    assert all(a[part] for part in parts)
    for part in parts:
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


def test_a_run_resumed_to_train_on_is_not_ended_until_it_writes_its_own_summary(
    sa1b, tmp_path, monkeypatch
):
    """summary.json, written last, marks a run that ended (``loftup experiment`` reuses a run
    folder holding it and final/). A run resumed with more steps and killed after its last
    checkpoint but before its export kept the earlier run's summary beside the earlier final/:
    it looked ended, at the new step count, with the old weights. The resumed run removes it
    at its start; going on exports and summarises the new end."""
    from loftup.train import loop

    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 2))
    assert json.loads((out / "summary.json").read_text())["steps"] == 2

    def killed(*args, **kwargs):
        raise MemoryError("killed before the export")

    monkeypatch.setattr(loop, "finish_run", killed)
    with pytest.raises(MemoryError):
        train(tiny(sa1b, out, 1, 4), resume=True)
    monkeypatch.undo()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4
    assert not (out / "summary.json").exists()
    assert json.loads((out / "final" / "config.json").read_text())["metadata"]["steps"] == 2
    resumed = train(tiny(sa1b, out, 1, 4), resume=True)
    assert resumed.steps == 4 and json.loads((out / "summary.json").read_text())["steps"] == 4
    assert json.loads((out / "final" / "config.json").read_text())["metadata"]["steps"] == 4


def test_a_run_resumed_from_an_older_history_summarises_the_values_it_has(sa1b, tmp_path):
    """A checkpoint of an older version holds no column that this one writes (here:
    target_seconds): summary.json's mean_last_10 failed on the old rows (KeyError at the run's
    end; once packed again, NaN: null in the JSON). The means are of the values there are, and
    how many rows each covers is said."""
    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 2))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    old = [
        {k: v for k, v in r.items() if k != "target_seconds"}
        for r in unpack_history(ckpt["history"])
    ]
    save_checkpoint(out / "checkpoint.pt", {**ckpt, "history": pack_history(old)})
    resumed = train(tiny(sa1b, out, 1, 4), resume=True)
    summary = json.loads((out / "summary.json").read_text())
    new = [r["target_seconds"] for r in resumed.history[2:]]
    assert summary["mean_last_10"]["target_seconds"] == pytest.approx(sum(new) / 2)
    assert summary["mean_last_10_rows"]["target_seconds"] == 2
    assert summary["mean_last_10_rows"]["loss"] == 4
    assert summary["mean_last_10"]["loss"] == pytest.approx(sum(resumed.losses) / 4)
    train(tiny(sa1b, out, 1, 5), resume=True)  # the old rows packed again: NaN where missing
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean_last_10_rows"]["target_seconds"] == 3
    assert summary["mean_last_10"]["target_seconds"] > 0


def test_a_second_run_on_a_folder_in_use_is_refused_before_it_writes_there(sa1b, tmp_path):
    """Two runs on one --out (a job launched twice, a requeued job while the first one still
    runs) overwrote each other's checkpoint, metrics.csv and final/ without a word. The run
    writing there holds a lock (here another process holds it, as a run does); a second run
    is refused, naming the holder and the fix, before it writes anything; once the holder
    has gone (however it ended), a run goes on there."""
    import subprocess
    import sys

    from loftup.errors import LoftUpError
    from loftup.train.run_folder import LOCK_NAME

    out = tmp_path / "run"
    out.mkdir()
    hold = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.lockf(fd, fcntl.LOCK_EX); os.write(fd, b'process 4242 on elsewhere'); "
        "print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out / LOCK_NAME)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(LoftUpError) as e:
            train(tiny(sa1b, out, 1, 2))
    finally:
        holder.communicate("")  # the holder ends
    assert str(e.value) == (
        f"{out} is in use by another loftup train run (process 4242 on elsewhere); wait for it "
        "to end (then --resume continues it), or choose another --out (log.out_dir)"
    )
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    assert train(tiny(sa1b, out, 1, 2)).steps == 2


def test_the_folder_is_locked_before_the_run_looks_at_what_it_holds(sa1b, tmp_path, monkeypatch):
    """The lock was taken after the models were built (SAM's pass too, hours on a big set):
    a run that ended there meanwhile was overwritten on the strength of the earlier look (its
    checkpoint read as absent). The look at the checkpoint now happens under the lock."""
    from loftup.train import loop, run_folder

    out = tmp_path / "run"
    looked = []
    real = loop.checkpoint_to_resume

    def look(cfg, out_dir, resume, main):
        looked.append(os.path.realpath(out_dir) in run_folder._HELD)
        return real(cfg, out_dir, resume, main)

    monkeypatch.setattr(loop, "checkpoint_to_resume", look)
    train(tiny(sa1b, out, 1, 1))
    assert looked == [True]


def test_a_folder_is_removed_only_by_the_run_that_made_it_and_wrote_nothing(tmp_path, monkeypatch):
    """A run refused at the lock removed the folder it had made, which the run holding the
    lock was using (it took the lock between the refused run's mkdir and lock); a run that
    made its folder and failed before writing removes it."""
    from contextlib import ExitStack, contextmanager

    from loftup.errors import LoftUpError
    from loftup.train import run_folder
    from loftup.train.distributed import DistInfo
    from loftup.train.run_folder import lock_run_folder

    @contextmanager
    def taken_meanwhile(out_dir):  # another run locked the folder just made
        (out_dir / run_folder.LOCK_NAME).touch()  # its lock's file
        raise LoftUpError(f"{out_dir} is in use by another loftup train run")
        yield

    with monkeypatch.context() as m:
        m.setattr(run_folder, "folder_lock", taken_meanwhile)
        with pytest.raises(LoftUpError), ExitStack() as refused:
            lock_run_folder(tmp_path / "raced", DistInfo(device=torch.device("cpu")), refused)
    assert (tmp_path / "raced").is_dir()  # the other run's now: not removed

    info = DistInfo(device=torch.device("cpu"))
    out = tmp_path / "new" / "run"
    with ExitStack() as first:
        lock_run_folder(out, info, first)  # made here and locked: the holder
        with pytest.raises(LoftUpError, match="in use by another"), ExitStack() as second:
            lock_run_folder(out, info, second)
        assert out.is_dir()  # the refused one removed nothing
        (out / "config.yaml").write_text("x")  # the holder writes
    assert out.is_dir()  # it wrote: kept
    (out / "config.yaml").unlink()
    with ExitStack() as held:
        lock_run_folder(tmp_path / "other", info, held)
    assert not (tmp_path / "other").exists()  # made, nothing written: removed
    with ExitStack() as held:  # an empty folder that was there is the user's: kept
        lock_run_folder(out, info, held)
    assert out.is_dir()


def test_a_second_run_of_the_same_process_is_refused_and_leaves_the_first_its_lock(tmp_path):
    """A POSIX lock is the process's: a second run in the same process (threads, a notebook)
    got it again, and its end released the first run's lock for any other process."""
    from loftup.errors import LoftUpError
    from loftup.train.run_folder import LOCK_NAME, folder_lock

    hold = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
        "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    )

    def other_process_can_lock() -> bool:
        return (
            subprocess.run([sys.executable, "-c", hold, str(tmp_path / LOCK_NAME)]).returncode == 0
        )

    with folder_lock(tmp_path):
        with pytest.raises(LoftUpError, match=r"in use by another loftup train run \(process"):
            with folder_lock(tmp_path):
                pass
        assert not other_process_can_lock()  # the refused one did not release it
    assert other_process_can_lock()
    with folder_lock(tmp_path):  # and the folder is free again for this process
        pass


def test_a_file_system_without_locks_is_said_once_and_the_run_goes_on(
    tmp_path, monkeypatch, caplog
):
    """On ENOLCK (NFS without its lock service) the run went on with a debug line only: a
    second run there is not refused, and the user is now told so."""
    import errno
    import fcntl

    from loftup.train.run_folder import folder_lock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    with caplog.at_level("WARNING", logger="loftup.train"), folder_lock(tmp_path):
        pass
    assert "keeps no file locks (No locks available): a second loftup train run" in caplog.text


def test_the_target_clock_starts_once_the_backbone_is_done_and_waits_on_cuda_only(
    sa1b, monkeypatch
):
    """target_seconds times the stage-1 target alone: on a GPU the backbone's kernels are only
    queued when its call returns, so the clock waits for them explicitly (it relied on proj's
    copy from pageable memory waiting for them, which a pinned or on-device proj would not:
    the backbone would then count as target time in benchmarks/train_step.py). On the CPU the
    work is done when the call returns: no CUDA call is made there."""
    from loftup.train import batches

    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    batches.settle(torch.device("cpu"))
    assert synced == []
    batches.settle(torch.device("cuda", 1))  # the device given, not the current one
    assert synced == [torch.device("cuda", 1)]

    cfg = tiny(sa1b, "unused", 1, 1)
    featurizer = build_featurizer(cfg, torch.device("cpu"))
    batch = collate([MaskedImages(sa1b, size=56)[i] for i in range(cfg.batch_size)])
    image = featurizer.normalize(batch["image"].float() / 255)
    draws = draw_step(cfg, 0, featurizer.dim, featurizer.patch_size, [56])
    events = []
    settle = batches.settle
    monkeypatch.setattr(batches, "settle", lambda d: events.append(f"settle {d}") or settle(d))
    clock = batches.time.perf_counter
    monkeypatch.setattr(batches.time, "perf_counter", lambda: events.append("clock") or clock())

    def backbone(x):
        events.append("backbone")
        return featurizer(x)

    inputs = stage1_inputs(backbone, image, batch, draws, cfg)
    assert events[:5] == ["backbone", "settle cpu", "clock", "settle cpu", "clock"]
    assert inputs["target_seconds"] >= 0 and synced == [torch.device("cuda", 1)]


def test_each_seed_draws_its_own_steps(sa1b):
    """PyTorch's CPU generator keeps a seed's low 32 bits: with ``seed * 2**32 + step`` every
    seed drew the same projections, jitters, crops and noise at each step, so runs of different
    seeds differed only in their initialisation and data order. Seed 0 keeps its draws."""
    draws = {}
    for seed in (0, 1, 2):
        cfg = tiny(sa1b, "unused", 2, 1, "init=unused", f"seed={seed}")
        draws[seed] = draw_step(cfg, 5, 32, 14, [56])
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not torch.equal(draws[a].proj, draws[b].proj), (a, b)
        assert not torch.equal(draws[a].noise_seeds, draws[b].noise_seeds), (a, b)
    from loftup.train.batches import step_seed

    assert step_seed(0, 5) == 5  # seed 0's runs draw what they drew before
    assert len({step_seed(s, t) for s in range(50) for t in range(10_000)}) == 500_000
