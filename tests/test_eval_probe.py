"""Probes learn what is learnable; label propagation equals the dense reference algorithm."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from loftup.eval import (
    ProbeConfig,
    fit_depth_probe,
    fit_linear_probe,
    fit_normal_probe,
    miou,
    predict,
    predict_depth,
    predict_normals,
    propagate_labels,
    propagate_video,
)
from loftup.eval.metrics_3d import depth_metrics, normal_metrics
from loftup.eval.probe import DEPTH_PROBE, lr_factor, resize_labels, seg_loss
from loftup.eval.probe_training import warmup_steps
from loftup.eval.propagation import PropagationConfig, one_hot, soft_to_mask

pytestmark = pytest.mark.usefixtures("one_thread")


def _separable(n=6, c=8, h=12, w=12, k=3, seed=0):
    centres = torch.randn(k, c, generator=torch.Generator().manual_seed(99)) * 3
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n, h, w), generator=g)
    feats = centres[labels].permute(0, 3, 1, 2) + 0.3 * torch.randn(n, c, h, w, generator=g)
    return feats, labels


def test_linear_probe_separates_separable_classes():
    feats, labels = _separable()
    labels[:, 0] = 255  # not scored, must not break training
    cfg = ProbeConfig(epochs=60, lr=0.05, batch_size=3)
    probe = fit_linear_probe(feats, labels, 3, config=cfg)
    test_feats, test_labels = _separable(seed=1)
    score, per_class = miou(predict(probe, test_feats), test_labels, 3)
    assert score > 0.98 and per_class.min() > 0.95
    again = fit_linear_probe(feats, labels, 3, config=cfg)  # seeded: the same probe
    assert torch.equal(again.weight, probe.weight)


def test_labels_go_to_the_feature_size_by_nearest():
    labels = torch.tensor([[[0, 1], [2, 255]]])
    big = resize_labels(labels, (4, 4))
    assert big[0, 3, 3] == 255 and big[0, 0, 0] == 0 and big.shape == (1, 4, 4)
    logits = torch.zeros(1, 3, 2, 2, requires_grad=True)
    assert seg_loss(logits, big).item() == pytest.approx(torch.log(torch.tensor(3.0)).item())


def test_depth_probe_learns_depth_that_features_encode():
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(8, 10, 10, generator=g) * 6 + 1  # 1..7 m
    feats = torch.stack([depth, torch.ones_like(depth), depth**2 / 10], 1)
    feats = feats + 0.01 * torch.randn(feats.shape, generator=g)
    depth[:, 0, 0] = 0  # invalid pixels are ignored
    probe = fit_depth_probe(
        feats, depth, config=ProbeConfig(epochs=150, lr=0.05, batch_size=4, optimizer="adamw")
    )
    m = depth_metrics(predict_depth(probe, feats), depth)
    assert float(m["delta1"].mean()) > 0.9
    assert predict_depth(probe, feats, size=(20, 20)).shape == (8, 20, 20)


def test_normal_metrics_are_angles_in_degrees_per_image():
    up = torch.tensor([0.0, 0.0, 1.0])
    tilted = torch.tensor([0.0, torch.sin(torch.tensor(0.3)), torch.cos(torch.tensor(0.3))])
    gt = up[None, :, None, None].expand(2, 3, 2, 2).clone()
    pred = gt.clone()
    pred[0, :, 0, 0] = 5 * tilted  # 17.19 degrees off (scale does not matter)
    pred[1] = -gt[1]  # 180 degrees everywhere
    valid = torch.ones(2, 2, 2, dtype=torch.bool)
    valid[1, 0, 0] = False
    m = normal_metrics(pred, gt, valid)
    deg = 0.3 * 180 / torch.pi
    assert m["mean"][0].item() == pytest.approx(deg / 4)
    assert m["rmse"][0].item() == pytest.approx((deg**2 / 4) ** 0.5)
    assert m["within_11.25"][0].item() == pytest.approx(0.75)
    assert m["within_22.5"][0].item() == m["within_30"][0].item() == 1.0
    assert m["mean"][1].item() == pytest.approx(180) and m["within_30"][1].item() == 0


def test_normal_probe_learns_normals_that_features_encode():
    """Probe3D's uncertainty-aware probe: the features hold the normal (plus noise), so the
    fitted probe's normals are within a few degrees; unscored pixels do not count."""
    g = torch.Generator().manual_seed(0)
    normals = F.normalize(torch.randn(8, 3, 6, 6, generator=g), dim=1)
    feats = torch.cat([normals, torch.ones(8, 1, 6, 6)], 1) + 0.01 * torch.randn(
        8, 4, 6, 6, generator=g
    )
    valid = torch.rand(8, 6, 6, generator=g) > 0.2
    wrong = normals.clone()
    wrong[~valid[:, None].expand_as(wrong)] = 0.5  # garbage where nothing is scored
    probe = fit_normal_probe(
        feats,
        wrong,
        valid,
        config=ProbeConfig(epochs=150, lr=0.05, batch_size=4, optimizer="adamw"),
    )
    pred = predict_normals(probe, feats)
    assert torch.allclose(pred.norm(dim=1), torch.ones(8, 6, 6), atol=1e-5)
    m = normal_metrics(pred, normals, valid)
    assert float(m["within_11.25"].mean()) > 0.9, m
    assert predict_normals(probe, feats, size=(12, 12)).shape == (8, 3, 12, 12)


def test_learning_rate_schedule_warms_up_then_decays():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(99, 100, 10, "cosine") < 0.01
    assert lr_factor(50, 100, 0, "constant") == 1.0


def test_the_depth_probe_follows_probe3ds_schedule():
    """Probe3D's cosine_decay_linear_warmup (min_factor 0.01): from 1% up to the peak over the
    warm-up, then a quarter cosine back to 1%, never to 0 (1.5 of 10 epochs of 100 steps)."""
    assert DEPTH_PROBE.schedule == "probe3d" and DEPTH_PROBE.warmup_epochs == 1.5
    total, warmup = 1000, 150
    assert lr_factor(0, total, warmup, "probe3d") == pytest.approx(0.01)
    assert lr_factor(75, total, warmup, "probe3d") == pytest.approx(0.505)
    assert lr_factor(150, total, warmup, "probe3d") == pytest.approx(1.0)
    assert lr_factor(575, total, warmup, "probe3d") == pytest.approx(0.99 * 0.5**0.5 + 0.01)
    assert lr_factor(999, total, warmup, "probe3d") == pytest.approx(0.0118, abs=1e-4)
    assert lr_factor(1000, total, warmup, "probe3d") == pytest.approx(0.01)
    mean = sum(lr_factor(i, total, warmup, "probe3d") for i in range(total)) / total
    assert mean == pytest.approx(0.620, abs=0.002)  # half a cosine to 0 gave 0.501


def _rates(config, n=40):
    """The learning rate of each step of a depth probe fitted with ``config`` on ``n`` images,
    as its optimiser saw it."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    rates = []
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: rates.append(opt.param_groups[0]["lr"])
    )
    try:
        g = torch.Generator().manual_seed(0)
        fit_depth_probe(
            torch.randn(n, 4, 2, 2, generator=g), torch.rand(n, 2, 2) + 1, config=config
        )
    finally:
        hook.remove()
    return rates


def test_the_depth_probe_schedule_at_the_protocols_epochs_is_probe3ds():
    """10 epochs of 5 steps (40 images, batch 8): 1.5 epochs of warm-up (round(7.5) = 8 steps),
    then the quarter cosine over the rest, step for step."""
    assert DEPTH_PROBE.epochs == 10 and DEPTH_PROBE.batch_size == 8
    expected = [DEPTH_PROBE.lr * lr_factor(i, 50, 8, "probe3d") for i in range(50)]
    assert _rates(DEPTH_PROBE) == pytest.approx(expected, rel=1e-12)
    for epochs in (3, 10, 20):  # the warm-up is 1.5 epochs wherever it fits in half the run
        for per_epoch in (1, 5, 9, 13, 100):  # odd epochs too (3 x 5 steps: 8 of 15, not 7)
            warm = warmup_steps(replace(DEPTH_PROBE, epochs=epochs), per_epoch)
            assert warm == round(1.5 * per_epoch), (epochs, per_epoch)


def test_a_run_shorter_than_twice_the_warm_up_still_reaches_its_peak_and_decays():
    """1 epoch of 10 steps: 1.5 epochs of warm-up rose to two thirds of the peak and stopped
    there; the warm-up now takes half the run, then the rate decays."""
    short = replace(DEPTH_PROBE, epochs=1, batch_size=4)
    assert warmup_steps(short, 10) == 5
    rates = _rates(short)
    assert len(rates) == 10 and rates[0] == pytest.approx(0.01 * short.lr)
    assert max(rates) == pytest.approx(short.lr) and rates.index(max(rates)) == 5
    assert all(a > b for a, b in zip(rates[5:], rates[6:]))  # decaying from the peak on
    assert rates[-1] < 0.35 * short.lr


def _propagate_dense(target, sources, labels, topk, temperature, radius):
    """DINO's label propagation as written there: a dense affinity matrix and a mask."""
    t, c, h, w = sources.shape
    q = F.normalize(target.reshape(c, -1), dim=0)  # (C, hw)
    s = F.normalize(sources.reshape(t, c, -1), dim=1)  # (T, C, hw)
    aff = torch.exp(torch.einsum("cq,tcs->tqs", q, s) / temperature)  # (T, q, s)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    near = ((ys[:, None] - ys[None]).abs() <= radius) & ((xs[:, None] - xs[None]).abs() <= radius)
    aff = aff * near[None]
    aff = aff.transpose(2, 1).reshape(-1, h * w)  # (T * s, q)
    top, _ = aff.topk(topk, dim=0)
    aff[aff < top.min(0).values] = 0
    aff = aff / aff.sum(0, keepdim=True)
    segs = labels.reshape(t, labels.shape[1], -1).transpose(2, 1).reshape(-1, labels.shape[1]).T
    return (segs @ aff).reshape(labels.shape[1], h, w)


def test_propagation_equals_the_dense_reference_in_bands():
    g = torch.Generator().manual_seed(0)
    sources = torch.randn(3, 6, 9, 10, generator=g)
    target = torch.randn(6, 9, 10, generator=g)
    labels = torch.rand(3, 4, 9, 10, generator=g)
    ref = _propagate_dense(target, sources, labels, 5, 0.1, 2)
    ours = propagate_labels(target, sources, labels, topk=5, temperature=0.1, radius=2)
    assert torch.allclose(ours, ref, atol=1e-5)
    for tile in (1, 4, 100):  # any tiling of the target gives the same answer
        tiled = propagate_labels(target, sources, labels, radius=2, tile=tile)
        assert torch.allclose(tiled, ours, atol=1e-6)
    everywhere = propagate_labels(target, sources, labels, radius=0, tile=4)
    assert torch.allclose(
        everywhere, _propagate_dense(target, sources, labels, 5, 0.1, 99), atol=1e-5
    )


def test_an_unchanged_video_keeps_its_labels():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(5, 7, 7, generator=g)
    first = torch.randint(0, 3, (7, 7), generator=g)
    softs = list(propagate_video([feats] * 4, one_hot(first, 3), PropagationConfig(radius=3)))
    assert len(softs) == 3
    for soft in softs:  # each position's best match is itself, in every context frame
        assert torch.equal(soft.argmax(0), first)


def test_soft_labels_become_a_mask_at_the_original_size():
    soft = torch.zeros(3, 4, 4)
    soft[0] = 0.2
    soft[1, :2] = 0.9
    soft[2, 2:, 2:] = 0.05  # weak, but min-max scaling makes it win where it is present
    mask = soft_to_mask(soft, 8, (12, 16))
    assert mask.shape == (12, 16)
    assert (mask[:4] == 1).all() and (mask[-3:, -5:] == 2).all()


def test_no_context_frames_means_the_first_frame_is_the_only_source():
    torch.manual_seed(0)
    frames = [torch.randn(4, 6, 6) for _ in range(4)]
    first = one_hot(torch.randint(0, 2, (6, 6)), 2)
    softs = list(propagate_video(frames, first, PropagationConfig(n_last_frames=0, radius=0)))
    for frame, soft in zip(frames[1:], softs):
        alone = propagate_labels(frame, frames[0][None], first[None], radius=0)
        assert torch.allclose(soft, alone)


def test_probe_settings_out_of_range_are_refused():
    from loftup.errors import UsageError

    feats, labels = torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    bad_seeds = ({"seed": 2**64}, {"seed": -1}, {"seed": 0.5})
    for bad in ({"epochs": 0}, {"batch_size": 0}, {"lr": float("nan")}, {"lr": -1.0}, *bad_seeds):
        with pytest.raises(UsageError, match=next(iter(bad))):
            fit_linear_probe(feats, labels, 2, config=ProbeConfig(**bad))


def test_labels_outside_the_classes_are_named():
    """A label that is neither a class nor ignore_index (it gave torch's 'Target 7 is out of
    bounds' from inside the loss, or a silent wrong index on a GPU)."""
    feats, labels = torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    labels[0, 0, 0], labels[1, 1, 1] = 7, 255  # 255: the default ignore_index, allowed
    cfg = ProbeConfig(epochs=1)
    with pytest.raises(ValueError, match=r"labels hold \[7\], outside the classes 0..2"):
        fit_linear_probe(feats, labels, 3, config=cfg)
    labels[0, 0, 0] = 2
    assert fit_linear_probe(feats, labels, 3, config=cfg).out_channels == 3


def test_no_feature_maps_to_fit_on_is_said_not_an_unfitted_probe():
    """N = 0 trained no step and gave back the probe as initialised, as if it were fitted."""
    from loftup.errors import UsageError

    empty = torch.zeros(0, 3, 4, 4)
    fits = (
        lambda: fit_linear_probe(empty, torch.zeros(0, 4, 4, dtype=torch.long), 2),
        lambda: fit_depth_probe(empty, torch.ones(0, 4, 4)),
        lambda: fit_normal_probe(empty, torch.ones(0, 3, 4, 4)),
    )
    for fit in fits:
        with pytest.raises(UsageError, match=r"no feature maps to fit the probe on.*N = 0"):
            fit()


def test_probe_and_pipeline_still_offer_the_names_they_always_did():
    """probe.py and pipeline.py were split by idea (settings and training, losses; run
    settings, output paths): code that imported a name from them keeps working."""
    import loftup.eval.pipeline as pipeline
    import loftup.eval.probe as probe

    probe_names = (
        "DEPTH_PROBE NORMAL_PROBE SEED_LIMIT SEG_PROBE DepthProbe NormalProbe ProbeConfig "
        "check_seed depth_loss fit_depth_probe fit_linear_probe fit_normal_probe gradient_loss "
        "lr_factor make_seg_probe normal_loss predict predict_depth predict_normals "
        "resize_labels seg_loss sig_loss train_probe"
    ).split()
    pipeline_names = (
        "EvalConfig FeaturePipeline Loader backbone_size check_config check_file_output "
        "check_folder_output check_outputs figure_path finish guidance_image make_loader"
    ).split()
    for module, names in ((probe, probe_names), (pipeline, pipeline_names)):
        missing = [n for n in names if not hasattr(module, n)]
        assert not missing, f"{module.__name__} lost {missing}"
        assert sorted(module.__all__) == sorted(names)


def test_losses_ignore_what_unscored_pixels_hold_nan_included():
    """A NaN in a hole of the ground truth made the depth loss NaN (its gradient term
    multiplied the hole by 0) and the normal loss's gradient NaN (0 x NaN in backward): one
    such image stopped a probe from learning anything."""
    from loftup.eval.probe_losses import depth_loss, normal_loss

    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 12, 12, generator=gen) * 5 + 0.5
    gt[0, :3, :4] = 0.0
    holed = gt.clone()
    holed[0, :3, :4] = float("nan")
    pred = (torch.rand(2, 12, 12, generator=gen) * 5 + 0.5).requires_grad_()
    want = depth_loss(pred, gt)
    (want_grad,) = torch.autograd.grad(want, pred)
    got = depth_loss(pred, holed)
    (got_grad,) = torch.autograd.grad(got, pred)
    assert torch.isfinite(want) and torch.allclose(got, want)
    assert torch.allclose(got_grad, want_grad)

    target = torch.cat([F.normalize(torch.randn(2, 3, 6, 6, generator=gen), dim=1),
                        torch.ones(2, 1, 6, 6)], 1)  # fmt: skip
    target[0, 3, :2] = 0.0  # not scored
    nan_target = target.clone()
    nan_target[0, :3, :2] = float("nan")
    raw = torch.randn(2, 4, 6, 6, generator=gen).requires_grad_()
    (want_grad,) = torch.autograd.grad(normal_loss(raw, target), raw)
    got = normal_loss(raw, nan_target)
    (got_grad,) = torch.autograd.grad(got, raw)
    assert torch.allclose(got, normal_loss(raw, target).detach())
    assert torch.isfinite(got_grad).all() and torch.allclose(got_grad, want_grad)


def test_a_probe_whose_loss_is_not_finite_is_an_error_not_a_score():
    """One NaN in the features made the seg probe's weights NaN: every pixel then got class
    0, and the run reported that mIoU (0.28 here) as the probe's, without a word."""
    from loftup.errors import LoftUpError

    feats, labels = _separable()
    feats[3, :, 2, 2] = float("nan")  # one pixel of one image
    with pytest.raises(LoftUpError, match=r"seg probe loss is nan at step \d+ of \d+.*lower --lr"):
        fit_linear_probe(feats, labels, 3, config=ProbeConfig(epochs=2, lr=1e-2))
    depth = torch.rand(6, 12, 12) + 1
    with pytest.raises(LoftUpError, match="depth probe loss is nan"):
        fit_depth_probe(feats, depth, config=replace(DEPTH_PROBE, epochs=1))
