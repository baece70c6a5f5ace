"""Metrics of the paper's label-map protocols, as pure functions on tensors.

Segmentation: a confusion matrix accumulated over a whole split, mIoU (mean over the classes
that occur in the prediction or the ground truth) and pixel accuracy. Boundaries: the DAVIS
boundary map (a pixel whose label differs from its right, bottom or bottom-right neighbour,
the image border not counting as a boundary) and the boundary F score with a tolerance disk,
for binary masks (DAVIS F) and multi-class maps alike. DAVIS region similarity J is the IoU
of two binary masks (1 when both are empty).

Depth and surface-normal metrics live in :mod:`.metrics_3d`; their names are importable from
here too, as they always were. Tensors of the wrong shapes raise plain ValueErrors, as torch's
functions do (see :mod:`loftup.errors`); the evaluation commands check their data before it
gets here.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

# re-exported (``X as X``): importable from here, as they always were
from .metrics_3d import NORMAL_THRESHOLDS as NORMAL_THRESHOLDS
from .metrics_3d import depth_metrics as depth_metrics
from .metrics_3d import match_scale_and_shift as match_scale_and_shift
from .metrics_3d import normal_metrics as normal_metrics

#: DAVIS boundary tolerance as a fraction of the image diagonal (davis2017-evaluation).
DAVIS_BOUND_TH = 0.008


# -- segmentation ------------------------------------------------------------------------------


def confusion_matrix(
    pred: torch.Tensor, gt: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Counts (K, K) int64, rows = ground-truth class, columns = predicted class.

    ``pred`` and ``gt`` are integer label maps of the same shape (any shape); pixels where
    ``gt == ignore_index`` are left out. Predictions must lie in [0, K).
    """
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape")
    pred, gt = pred.reshape(-1).long(), gt.reshape(-1).long()
    keep = torch.ones_like(gt, dtype=torch.bool) if ignore_index is None else gt != ignore_index
    pred, gt = pred[keep], gt[keep]
    for name, t in (("pred", pred), ("gt", gt)):
        if t.numel() and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(
                f"{name} has labels outside [0, {num_classes}) (min {int(t.min())}, max "
                f"{int(t.max())}); {_label_fix(name, num_classes, ignore_index)}"
            )
    flat = gt * num_classes + pred
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _label_fix(name: str, num_classes: int, ignore_index: int | None) -> str:
    """What to do about labels outside [0, K) in ``pred`` or ``gt`` (no pixel of ``pred`` is
    ever left out, so ignore_index is no fix there)."""
    if name == "pred":
        return (
            f"a prediction is scored everywhere, so it must be a class id below num_classes="
            f"{num_classes}: give the num_classes of the probe that made it"
        )
    if ignore_index is None:
        return (
            "pass the value of the unscored (void) pixels as ignore_index (255 in the "
            "datasets loftup reads), or a num_classes that covers every class"
        )
    return (
        f"only ignore_index={ignore_index} is left out: pass the value of the unscored "
        "(void) pixels as ignore_index, or a num_classes that covers every class"
    )


def iou_from_confusion(cm: torch.Tensor) -> torch.Tensor:
    """Per-class IoU (K,) float64 from a (K, K) confusion matrix; NaN where a class never occurs."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def miou_from_confusion(cm: torch.Tensor) -> float:
    """Mean IoU over the classes that occur (NaN-mean of :func:`iou_from_confusion`)."""
    iou = iou_from_confusion(cm)
    return float(iou[~iou.isnan()].mean()) if (~iou.isnan()).any() else float("nan")


def accuracy_from_confusion(cm: torch.Tensor) -> float:
    """Fraction of counted pixels whose prediction is right."""
    total = cm.sum()
    return float(cm.diag().sum().double() / total) if total > 0 else float("nan")


def miou(
    pred: torch.Tensor, gt: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> tuple[float, torch.Tensor]:
    """(mIoU, per-class IoU (K,) with NaN for absent classes) of label maps ``pred``, ``gt``."""
    cm = confusion_matrix(pred, gt, num_classes, ignore_index)
    return miou_from_confusion(cm), iou_from_confusion(cm)


def pixel_accuracy(pred: torch.Tensor, gt: torch.Tensor, ignore_index: int | None = 255) -> float:
    """Fraction of non-ignored pixels where ``pred == gt``."""
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape")
    keep = torch.ones_like(gt, dtype=torch.bool) if ignore_index is None else gt != ignore_index
    n = int(keep.sum())
    return float((pred[keep] == gt[keep]).sum()) / n if n else float("nan")


class SegmentationScores:
    """Accumulates a confusion matrix over batches: ``update(pred, gt)``, then ``result()``."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        self.cm += confusion_matrix(pred.cpu(), gt.cpu(), self.num_classes, self.ignore_index)

    def result(self) -> dict:
        iou = iou_from_confusion(self.cm)
        return {
            "miou": miou_from_confusion(self.cm),
            "pixel_accuracy": accuracy_from_confusion(self.cm),
            "per_class_iou": [None if math.isnan(v) else float(v) for v in iou.tolist()],
        }


# -- boundaries --------------------------------------------------------------------------------


def _boundary_np(lab: np.ndarray) -> np.ndarray:
    right = np.concatenate([lab[:, 1:], lab[:, -1:]], 1)
    below = np.concatenate([lab[1:], lab[-1:]], 0)
    diag = np.concatenate([below[:, 1:], below[:, -1:]], 1)
    return (lab != right) | (lab != below) | (lab != diag)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def boundary_map(labels: torch.Tensor) -> torch.Tensor:
    """(H, W) label map (bool or integer) -> (H, W) bool boundary pixels.

    A pixel is on a boundary when its label differs from its right, bottom or bottom-right
    neighbour; neighbours outside the image repeat the edge, so the border is no boundary. For
    binary masks this is the DAVIS benchmark's ``seg2bmap``.
    """
    if labels.ndim != 2:
        raise ValueError(f"expected an (H, W) label map, got shape {tuple(labels.shape)}")
    return torch.from_numpy(_boundary_np(_numpy(labels)))


def _distance_np(mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return np.full(mask.shape, np.inf)
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~mask)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(H, W) bool mask dilated by a disk of ``radius`` pixels (offsets dy^2 + dx^2 <= r^2)."""
    return torch.from_numpy(_distance_np(_numpy(mask).astype(bool)) <= radius)


def _f_from_boundaries(pred_b: np.ndarray, gt_b: np.ndarray, tolerance_px: int) -> float:
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0  # precision or recall is 0 (DAVIS: P=1, R=0 or P=0, R=1 -> F=0)
    # a pixel is matched when a boundary pixel of the other map lies within the tolerance disk
    precision = float((_distance_np(gt_b)[pred_b] <= tolerance_px).sum()) / n_pred
    recall = float((_distance_np(pred_b)[gt_b] <= tolerance_px).sum()) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def boundary_f_score(
    pred: torch.Tensor, gt: torch.Tensor, tolerance_px: int, ignore_index: int | None = 255
) -> float:
    """Boundary F score of two (H, W) label maps (binary masks or class maps).

    Precision: the fraction of predicted boundary pixels within ``tolerance_px`` (a disk; an
    integer >= 0) of a ground-truth boundary pixel; recall: the converse; F: their harmonic
    mean. Both maps without boundaries give 1. Where ``gt == ignore_index`` (255 by default,
    as :func:`miou` and :func:`pixel_accuracy`; None: no pixel left out), boundary pixels
    touching the ignored area (3 x 3 neighbourhood) are not scored.
    """
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"expected two (H, W) maps, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    tolerance_px = _tolerance(tolerance_px)
    p, g = _numpy(pred), _numpy(gt)
    pred_b, gt_b = _boundary_np(p), _boundary_np(g)
    if ignore_index is not None:
        void = g == ignore_index
        if void.any():
            from scipy.ndimage import binary_dilation

            near_void = binary_dilation(void, structure=np.ones((3, 3), dtype=bool))
            pred_b, gt_b = pred_b & ~near_void, gt_b & ~near_void
    return _f_from_boundaries(pred_b, gt_b, tolerance_px)


def _tolerance(value) -> int:
    """``tolerance_px`` as an int, or a ValueError (2.9 was scored as 2 and -1 as 0.0): any
    real number whose value is whole and >= 0 (2, 2.0, np.float32(2.0), np.int64(2)), a 0-d
    tensor or array of one too; not a bool."""
    v = value.item() if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0 else value
    if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
        if math.isfinite(v) and v >= 0 and float(v).is_integer():
            return int(v)
    raise ValueError(f"tolerance_px must be an integer >= 0 (pixels), got {value!r}")


def davis_tolerance(shape: tuple[int, int], bound_th: float = DAVIS_BOUND_TH) -> int:
    """DAVIS boundary tolerance in pixels: ceil(bound_th * image diagonal) (8 px at 480x854)
    for a fraction, or ``bound_th`` itself when it is 1 or more (pixels), as the benchmark's
    ``f_measure`` reads it."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def region_similarity(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """DAVIS J: IoU of two (H, W) binary masks; 1 when both are empty."""
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape")
    p, g = _numpy(pred).astype(bool), _numpy(gt).astype(bool)
    union = int((p | g).sum())
    return 1.0 if union == 0 else int((p & g).sum()) / union


def contour_accuracy(
    pred: torch.Tensor, gt: torch.Tensor, bound_th: float = DAVIS_BOUND_TH
) -> float:
    """DAVIS F: boundary F of two (H, W) binary masks with the DAVIS tolerance
    (:func:`davis_tolerance`: ``bound_th`` a fraction of the diagonal, or pixels when >= 1)."""
    tolerance = davis_tolerance(tuple(gt.shape), bound_th)
    return boundary_f_score(pred.bool(), gt.bool(), tolerance, ignore_index=None)  # no void
