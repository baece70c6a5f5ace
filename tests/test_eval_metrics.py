"""Label-map metrics (segmentation, boundaries, DAVIS J and F) checked against independent
computations and hand-made cases with known answers; depth and normals: test_eval_metrics_3d.py."""

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


def test_boundary_f_leaves_out_255_by_default_as_miou_does():
    """boundary_f_score took no pixel out by default while miou, pixel_accuracy and
    confusion_matrix leave out 255: on the README's labels ("255 = not scored") a prediction
    right everywhere scored is mIoU 1 but boundary F 0.667."""
    gt = torch.zeros(20, 20, dtype=torch.long)
    gt[:, 6:14] = 1
    gt[:, 14:] = 255  # not scored; the prediction carries class 1 on into it
    pred = gt.clone()
    pred[:, 14:] = 1
    assert miou(pred, gt, 2)[0] == 1.0 and pixel_accuracy(pred, gt) == 1.0
    assert boundary_f_score(pred, gt, 2) == 1.0
    assert boundary_f_score(pred, gt, 2, ignore_index=None) < 0.7  # 255 as a label


def test_boundary_f_tolerance_must_be_a_whole_number_of_pixels():
    """2.9 was scored as 2 and -1 as 0.0, both without a word."""
    a = torch.zeros(10, 10, dtype=torch.long)
    a[3:6, 3:6] = 1
    for bad in (2.9, -1, -1.0, True, "2", float("nan")):
        with pytest.raises(ValueError, match=r"tolerance_px must be an integer >= 0"):
            boundary_f_score(a, a, bad)
    assert boundary_f_score(a, a, np.int64(2)) == 1.0 and boundary_f_score(a, a, 0) == 1.0
    assert boundary_f_score(a, a, 2.0) == 1.0  # a whole float is fine


def test_boundary_f_tolerance_takes_whole_numpy_and_torch_scalars():
    """2.0 was taken but np.float32(2.0) and torch.tensor(2.0) raised, and a 0-d tensor that
    is not whole must still be refused, not cut."""
    a = torch.zeros(12, 12, dtype=torch.long)
    a[3:7, 3:7] = 1
    b = torch.roll(a, 2, dims=1)  # boundaries 2 px apart: tolerance 2 matches them, 1 does not
    assert boundary_f_score(a, b, 2) == 1.0 and boundary_f_score(a, b, 1) < 1.0
    for whole in (np.float32(2.0), np.float64(2.0), torch.tensor(2.0), torch.tensor(2),
                  np.array(2.0), np.uint8(2), torch.tensor(2.0, dtype=torch.float16)):  # fmt: skip
        assert boundary_f_score(a, b, whole) == 1.0, whole
    for bad in (np.float32(2.5), torch.tensor(2.5), torch.tensor(-1), torch.tensor(True),
                torch.tensor([2]), np.bool_(True), np.float32("inf")):  # fmt: skip
        with pytest.raises(ValueError, match=r"tolerance_px must be an integer >= 0"):
            boundary_f_score(a, b, bad)


def test_labels_out_of_range_say_the_fix_that_applies():
    """With ignore_index=None the message said "map void pixels to ignore_index=None"; for a
    prediction it offered ignore_index, which never leaves out predicted pixels."""
    gt, pred = torch.tensor([0, 1, 255]), torch.tensor([0, 1, 1])
    with pytest.raises(ValueError, match=r"pass the value of the unscored .* as ignore_index"):
        confusion_matrix(pred, gt, 2, ignore_index=None)
    with pytest.raises(ValueError) as info:
        confusion_matrix(torch.tensor([0, 5, 1]), gt, 2)
    assert "give the num_classes of the probe" in str(info.value)
    assert "ignore_index" not in str(info.value)
