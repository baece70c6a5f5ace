"""Metrics checked against independent computations and hand-made cases with known answers."""

import math

import numpy as np
import pytest
import torch

from davis_scorer import db_statistics, f_measure, seg2bmap
from loftup.eval.metrics import (
    SegmentationScores,
    boundary_f_score,
    boundary_map,
    confusion_matrix,
    contour_accuracy,
    davis_tolerance,
    dilate,
    miou,
    pixel_accuracy,
    region_similarity,
)
from loftup.eval.metrics_3d import depth_metrics


def test_miou_and_accuracy_match_torchmetrics_on_random_maps():
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    k = 7
    gt = torch.randint(0, k, (3, 40, 50), generator=g)
    pred = torch.where(
        torch.rand(gt.shape, generator=g) < 0.6, gt, torch.randint(0, k, gt.shape, generator=g)
    )
    gt[torch.rand(gt.shape, generator=g) < 0.1] = 255  # not scored
    score, per_class = miou(pred, gt, k, ignore_index=255)
    ref = MulticlassJaccardIndex(k, average="none", ignore_index=255)(pred, gt)
    assert torch.allclose(per_class.float(), ref, atol=1e-6)
    ref_mean = MulticlassJaccardIndex(k, average="macro", ignore_index=255)(pred, gt)
    assert score == pytest.approx(float(ref_mean), abs=1e-6)
    absent = miou(pred.clamp(max=3), gt.clamp(max=3), k)[0]  # classes 4..6 never occur
    ref_absent = MulticlassJaccardIndex(k, average="macro")(pred.clamp(max=3), gt.clamp(max=3))
    assert absent == pytest.approx(float(ref_absent), abs=1e-6)
    acc = MulticlassAccuracy(k, average="micro", ignore_index=255)(pred, gt)
    assert pixel_accuracy(pred, gt, 255) == pytest.approx(float(acc), abs=1e-6)


def test_miou_and_accuracy_by_hand():
    # gt 0 0 1 1 void, pred 0 1 1 1 0: class 0 IoU 1/2 (1 hit, 1 missed), class 1 IoU 2/3
    # (2 hits, 1 false alarm), class 2 occurs nowhere and is left out; the void pixel is not
    # counted, whatever is predicted there
    gt, pred = torch.tensor([0, 0, 1, 1, 255]), torch.tensor([0, 1, 1, 1, 0])
    score, per_class = miou(pred, gt, 3)
    assert score == pytest.approx((1 / 2 + 2 / 3) / 2) and math.isnan(per_class[2])
    assert pixel_accuracy(pred, gt) == pytest.approx(3 / 4)
    # a class predicted but in no ground truth counts, with IoU 0
    score, per_class = miou(torch.tensor([0, 2, 1, 1, 0]), gt, 3)
    assert per_class.tolist() == [0.5, 1.0, 0.0] and score == pytest.approx(0.5)


def test_streaming_scores_equal_one_shot_and_absent_classes_are_left_out():
    g = torch.Generator().manual_seed(1)
    gt = torch.randint(0, 3, (4, 10, 10), generator=g)  # classes 3 and 4 never occur
    pred = torch.randint(0, 3, (4, 10, 10), generator=g)
    acc = SegmentationScores(5)
    for i in range(4):
        acc.update(pred[i], gt[i])
    res = acc.result()
    whole, per_class = miou(pred, gt, 5)
    assert res["miou"] == pytest.approx(whole)
    assert res["per_class_iou"][3] is None and math.isnan(per_class[4])
    assert whole == pytest.approx(float(per_class[:3].mean()))


def test_confusion_matrix_rejects_labels_outside_the_classes():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(torch.tensor([0, 5]), torch.tensor([0, 1]), 3)


def test_boundary_map_is_the_davis_rule_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((23, 31)) < 0.4
        mask[0, :] |= rng.random(31) < 0.5  # objects touching the border
        ours = boundary_map(torch.from_numpy(mask)).numpy()
        assert (ours == seg2bmap(mask)).all()


def test_dilation_matches_scipy_with_the_skimage_disk():
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk as sk_disk

    rng = np.random.default_rng(1)
    mask = rng.random((30, 40)) < 0.02
    for r in (1, 4, 8):
        ours = dilate(torch.from_numpy(mask), r).numpy()
        assert (ours == binary_dilation(mask, structure=sk_disk(r))).all()
    assert not dilate(torch.zeros(5, 5, dtype=torch.bool), 3).any()


def test_davis_j_and_f_on_a_shifted_square():
    gt = torch.zeros(480, 854, dtype=torch.bool)
    gt[100:200, 300:400] = True
    pred = torch.roll(gt, shifts=5, dims=1)
    assert davis_tolerance((480, 854)) == 8  # ceil(0.008 * 979.7)
    assert region_similarity(pred, gt) == pytest.approx(95 * 100 / (105 * 100))
    assert contour_accuracy(pred, gt) == 1.0  # every boundary pixel within 8 px
    assert contour_accuracy(gt, gt) == 1.0 and region_similarity(gt, gt) == 1.0
    far = torch.roll(gt, shifts=200, dims=1)
    assert region_similarity(far, gt) == 0.0 and contour_accuracy(far, gt) == 0.0


def test_boundary_f_on_a_thin_line_at_known_tolerances():
    # gt: a 1-px vertical line at column 10; its boundary is columns 9 and 10, rows 4..24
    # (42 pixels). The prediction is the line 3 columns to the right (boundary: 12 and 13).
    gt = torch.zeros(32, 32, dtype=torch.long)
    gt[5:25, 10] = 1
    pred = torch.roll(gt, shifts=3, dims=1)
    assert int(boundary_map(gt).sum()) == 42
    assert boundary_f_score(pred, gt, 3) == 1.0  # column 13 is 3 px from column 10
    assert boundary_f_score(pred, gt, 2) == pytest.approx(0.5)  # half of each side matches
    assert boundary_f_score(pred, gt, 1) == 0.0
    assert region_similarity(pred, gt) == 0.0


def test_boundary_f_edge_cases_and_ignored_pixels():
    empty = torch.zeros(10, 10, dtype=torch.long)
    square = empty.clone()
    square[3:6, 3:6] = 1
    assert boundary_f_score(empty, empty, 2) == 1.0
    assert boundary_f_score(square, empty, 2) == 0.0 and boundary_f_score(empty, square, 2) == 0.0
    # multi-class maps: a class edge moved by 1 px is fully matched with a 2-px tolerance
    a = torch.zeros(20, 20, dtype=torch.long)
    a[:, 10:] = 2
    b = torch.roll(a, 1, dims=1)
    b[:, 0] = 0
    assert boundary_f_score(b, a, 2) == 1.0 and boundary_f_score(b, a, 0) == 0.0
    # a wrong edge entirely inside an ignored band is not scored
    gt = a.clone()
    gt[:, 4:8] = 255
    pred = a.clone()
    pred[:, 5] = 1
    assert boundary_f_score(pred, gt, 0, ignore_index=255) == 1.0


def test_depth_metrics_by_hand():
    gt = torch.tensor([[[1.0, 2.0], [4.0, 0.0]]])  # the 0 is invalid
    pred = torch.tensor([[[1.0, 3.0], [4.0, 9.0]]])
    m = depth_metrics(pred, gt)
    assert float(m["delta1"][0]) == pytest.approx(2 / 3)  # 3/2 = 1.5 fails
    assert float(m["rmse"][0]) == pytest.approx(math.sqrt(1 / 3))
    assert float(m["abs_rel"][0]) == pytest.approx((0 + 0.5 + 0) / 3)


def test_a_davis_threshold_of_one_or_more_is_pixels_as_in_the_benchmark():
    """davis2017-evaluation's f_measure: ``bound_pix = bound_th if bound_th >= 1 else
    ceil(bound_th * diagonal)``; a threshold of 3 was taken as 3 diagonals (2938 px at 480p),
    which matched every boundary pixel of any two masks."""
    assert davis_tolerance((480, 854), 3) == 3
    assert davis_tolerance((480, 854), 1) == 1
    assert davis_tolerance((480, 854), 0.008) == 8
    gt = torch.zeros(60, 80, dtype=torch.bool)
    gt[10:40, 10:40] = True
    pred = torch.roll(gt, shifts=5, dims=1)  # every vertical edge 5 px away
    assert contour_accuracy(pred, gt, bound_th=5) == 1.0
    assert contour_accuracy(pred, gt, bound_th=3) < 0.6


def test_region_similarity_refuses_masks_of_two_shapes():
    """numpy broadcast a (1, W) mask against an (H, W) one and scored J = 1."""
    with pytest.raises(ValueError, match=r"pred \(1, 5\) and gt \(4, 5\) differ"):
        region_similarity(torch.ones(1, 5, dtype=torch.bool), torch.ones(4, 5, dtype=torch.bool))


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


def test_davis_f_equals_the_benchmarks_f_measure_on_random_blobs():
    """Blobs from smoothed noise at an odd size, the tolerance ceil(0.008 x diagonal) = 2 px
    here, and at 1 and 4 px: our F is the benchmark's, value for value."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(6)
    shape = (97, 181)
    for i in range(6):
        gt = gaussian_filter(rng.normal(size=shape), 4) > 0.05
        pred = gaussian_filter(rng.normal(size=shape), 4) > 0.05 if i % 2 else np.roll(gt, 3, 1)
        for th in (0.008, 1, 4):
            ours = contour_accuracy(torch.from_numpy(pred), torch.from_numpy(gt), bound_th=th)
            assert ours == pytest.approx(f_measure(pred, gt, th), abs=1e-12), (i, th)


def test_davis_mean_recall_and_decay_are_the_benchmarks():
    from loftup.eval.video import davis_statistics, frame_statistics

    rng = np.random.default_rng(7)
    objects = {}
    for n in (1, 2, 5, 7, 48, 103):  # DAVIS val sequences have 25 to 104 frames
        values = rng.uniform(0, 1, n)
        assert frame_statistics(values.tolist()) == pytest.approx(db_statistics(values))
        objects[f"seq{n}_1"] = {"J": values.tolist(), "F": (1 - values).tolist()}
    # by hand: 8 frames, edges round(1, 2.75, 4.5, 6.25, 8) - 1 = 0, 2, 4, 5, 7: the first bin
    # is frames 0..2 (mean 0.8), the last 5..7 (mean 0.8 / 3)
    values = [1, 1, 0.4, 0.6, 0.6, 0.6, 0, 0.2]
    assert frame_statistics(values) == pytest.approx((0.55, 0.625, 0.8 - 0.8 / 3))
    stats = davis_statistics(objects)
    ref = [db_statistics(np.array(v["J"])) for v in objects.values()]
    assert stats["J_recall"] == pytest.approx(np.mean([r[1] for r in ref]))
    assert stats["J_decay"] == pytest.approx(np.mean([r[2] for r in ref]))
    assert stats["J&F_mean"] == pytest.approx((stats["J_mean"] + stats["F_mean"]) / 2)
    assert stats["num_objects"] == 6


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
