"""What one training step is given: stage 1's target and stage 2's teacher regions (the crops of
the global view, the full view once), their timing, and each seed's own draws.
"""

import pytest
import torch
import torch.nn.functional as F

from loftup.data.dataset import MaskedImages, collate
from loftup.train.batches import draw_step, stage1_inputs, stage2_inputs
from loftup.train.build import build_featurizer
from loftup.train.losses import project
from train_fixtures import tiny_config as tiny

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
    pytest.mark.usefixtures("one_thread"),
]


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
