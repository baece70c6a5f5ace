"""Depth and surface-normal metrics (loftup.eval.metrics_3d) checked against Probe3D's
computation written out in numpy, least squares, and hand-made cases with known answers."""

import math

import numpy as np
import pytest
import torch

from loftup.eval.metrics_3d import depth_metrics


def test_depth_metrics_by_hand():
    gt = torch.tensor([[[1.0, 2.0], [4.0, 0.0]]])  # the 0 is invalid
    pred = torch.tensor([[[1.0, 3.0], [4.0, 9.0]]])
    m = depth_metrics(pred, gt)
    assert float(m["delta1"][0]) == pytest.approx(2 / 3)  # 3/2 = 1.5 fails
    assert float(m["rmse"][0]) == pytest.approx(math.sqrt(1 / 3))
    assert float(m["abs_rel"][0]) == pytest.approx((0 + 0.5 + 0) / 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_normal_metrics_default_mask_is_on_the_normals_device():
    """valid=None made a CPU mask, which CUDA normals could not be weighted by ("Tensor on
    device cpu is not on the expected device"; the meta device showed it on a CPU machine, at
    5 s of first-use cost, too slow for the default suite)."""
    from loftup.eval.metrics_3d import normal_metrics

    normals = torch.nn.functional.normalize(torch.randn(2, 3, 4, 4, device="cuda"), dim=1)
    m = normal_metrics(normals, normals)
    assert m["rmse"].device.type == "cuda" and m["rmse"].shape == (2,)
    assert float(m["within_11.25"].min()) == 1.0


def _probe3d_depth(pred: np.ndarray, gt: np.ndarray) -> dict:
    """Probe3D's evaluate_depth (per image, then the mean), written out in numpy."""
    valid = (gt > 0).astype(np.float64)
    pred = pred * valid
    n = np.maximum(valid.sum((1, 2)), 1)
    ratio = np.maximum(gt / np.maximum(pred, 1e-9), pred / np.maximum(gt, 1e-9))
    d = {f"delta{k}": (((ratio < 1.25**k) * valid).sum((1, 2)) / n).mean() for k in (1, 2, 3)}
    rmse = np.sqrt((((gt - pred) ** 2) * valid).sum((1, 2)) / n)
    return {**d, "rmse": rmse.mean()}


def test_depth_metrics_equal_probe3ds_on_random_maps():
    rng = np.random.default_rng(3)
    gt = rng.uniform(0.5, 9.0, (5, 17, 23))
    gt[rng.random(gt.shape) < 0.3] = 0  # no sensor reading
    pred = gt * rng.uniform(0.45, 2.2, gt.shape) + rng.uniform(0.01, 3.0, gt.shape) * (gt == 0)
    ours = depth_metrics(torch.from_numpy(pred), torch.from_numpy(gt))
    ref = _probe3d_depth(pred, gt)
    for key in ("delta1", "delta2", "delta3", "rmse"):
        assert float(ours[key].mean()) == pytest.approx(ref[key], abs=1e-12), key
    assert ref["delta1"] < ref["delta2"] < ref["delta3"] < 1  # the case tells them apart
    assert ours["valid_pixels"].tolist() == (gt > 0).sum((1, 2)).tolist()


def test_scale_and_shift_alignment_is_least_squares_on_valid_pixels():
    from loftup.eval.metrics_3d import match_scale_and_shift

    rng = np.random.default_rng(4)
    gt = rng.uniform(0.5, 9.0, (3, 11, 13))
    gt[rng.random(gt.shape) < 0.25] = 0
    pred = rng.uniform(0.1, 5.0, gt.shape)
    aligned = match_scale_and_shift(torch.from_numpy(pred), torch.from_numpy(gt)).numpy()
    for i in range(3):
        v = gt[i] > 0
        a = np.stack([pred[i][v], np.ones(v.sum())], 1)
        (s, t), *_ = np.linalg.lstsq(a, gt[i][v], rcond=None)
        assert np.allclose(aligned[i], s * pred[i] + t, atol=1e-9)
    # a prediction off by a scale and shift is exact once aligned; invalid pixels do not count
    exact = (torch.from_numpy(gt) - 0.3) / 2.5
    exact[torch.from_numpy(gt) == 0] = 99.0
    back = match_scale_and_shift(exact, torch.from_numpy(gt))
    m = depth_metrics(back, torch.from_numpy(gt))
    assert float(m["rmse"].max()) < 1e-9 and float(m["delta1"].min()) == 1.0
    # a constant prediction (singular system) is left as it is
    flat = torch.full((1, 4, 4), 2.0, dtype=torch.float64)
    assert torch.equal(match_scale_and_shift(flat, torch.rand(1, 4, 4) + 1), flat)


def test_normal_metrics_equal_a_numpy_computation_on_random_normals():
    from loftup.eval.metrics_3d import normal_metrics

    rng = np.random.default_rng(5)
    gt = rng.normal(size=(3, 3, 9, 10))
    gt /= np.linalg.norm(gt, axis=1, keepdims=True)
    pred = gt + rng.normal(scale=0.5, size=gt.shape)  # not unit length: angles only count
    valid = rng.random((3, 9, 10)) < 0.7
    m = normal_metrics(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(valid))
    cos = (pred * gt).sum(1) / np.linalg.norm(pred, axis=1)
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    for i in range(3):
        a = angle[i][valid[i]]
        assert float(m["mean"][i]) == pytest.approx(a.mean(), abs=1e-9)
        assert float(m["rmse"][i]) == pytest.approx(np.sqrt((a**2).mean()), abs=1e-9)
        for t in (11.25, 22.5, 30):
            assert float(m[f"within_{t:g}"][i]) == pytest.approx((a < t).mean(), abs=1e-12)
        assert int(m["valid_pixels"][i]) == valid[i].sum()


def test_what_unscored_pixels_hold_nan_included_counts_for_nothing():
    """A hole marked NaN or infinity in the ground truth (as some depth datasets mark one), or
    a NaN prediction where nothing is scored, made RMSE, AbsRel, the scale-invariant fit and
    the normal angles NaN for the whole image (masks were applied by multiplying: 0 x NaN)."""
    from loftup.eval.metrics_3d import match_scale_and_shift, normal_metrics

    rng = np.random.default_rng(8)
    gt = torch.from_numpy(rng.uniform(0.5, 9.0, (2, 6, 7)))
    pred = gt * torch.from_numpy(rng.uniform(0.7, 1.5, gt.shape))
    gt[0, 0, :3] = 0.0  # the plain hole, the reference
    holed, wild = gt.clone(), pred.clone()
    holed[0, 0, :3] = torch.tensor([math.nan, math.inf, -math.inf])
    wild[0, 0, :3] = torch.tensor([math.nan, math.inf, 0.0])
    want, got = depth_metrics(pred, gt), depth_metrics(wild, holed)
    for key, value in want.items():
        assert torch.allclose(got[key].double(), value.double(), atol=1e-12), key
    assert torch.isfinite(want["rmse"]).all() and int(want["valid_pixels"][0]) == 39
    aligned = match_scale_and_shift(wild, holed)
    assert torch.allclose(aligned[:, 1:], match_scale_and_shift(pred, gt)[:, 1:], atol=1e-9)

    normals = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(2, 3, 6, 7))), dim=1)
    noisy = normals + 0.3 * torch.from_numpy(rng.normal(size=normals.shape))
    valid = torch.ones(2, 6, 7, dtype=torch.bool)
    valid[0, 0, :3] = False
    nan_gt, nan_pred = normals.clone(), noisy.clone()
    nan_gt[0, :, 0, 0], nan_pred[0, :, 0, 1] = math.nan, math.nan
    want, got = normal_metrics(noisy, normals, valid), normal_metrics(nan_pred, nan_gt, valid)
    for key, value in want.items():
        assert torch.allclose(got[key].double(), value.double(), atol=1e-12), key


def test_a_constant_prediction_is_singular_up_to_rounding():
    """A constant that float cannot hold exactly (3.3: a dead depth probe predicts one value
    everywhere) left the system's determinant a rounding error, not 0: its scale and shift
    were anything (3.3 became 1.4, 4.0 and -0.0 on three images), and so were its si_ scores."""
    from loftup.eval.metrics_3d import match_scale_and_shift

    gt = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0)) * 9 + 0.5
    for value in (3.3, 0.1, 5.0005, 7.123456):
        flat = torch.full_like(gt, value)
        assert torch.equal(match_scale_and_shift(flat, gt), flat), value
    # a prediction that does vary, however little float32 can hold, is still aligned
    tilted = 3.3 + 1e-4 * (gt - 5)
    assert torch.allclose(match_scale_and_shift(tilted, gt), gt, atol=1e-2)
