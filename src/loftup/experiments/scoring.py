"""Scoring an upsampler on the held-out set: the demo's probe and metrics, plus small vs large regions.

A **region** is a connected component (8-neighbourhood) of one class in the ground-truth label
map. It is **small** when its area is under ``small_patches`` backbone patches (default 4: a
region that 2 x 2 patches could cover), measured at the backbone's input resolution, and
**large** otherwise. Small regions are what low-resolution features cannot resolve (in the
offline world at 64 px: thin lines and slivers of occluded shapes, about 14% of the pixels);
``miou_small`` and ``miou_large`` are the mIoU over the pixels of each kind (classes that occur
there, in the prediction or the ground truth).
"""

from __future__ import annotations

import numpy as np
import torch

from .data import EvalSet

METRICS = {
    "miou": "mIoU",
    "pixel_accuracy": "pixel accuracy",
    "boundary_f_2px": "boundary F (2 px)",
}
REGION_METRICS = {"miou_small": "mIoU small regions", "miou_large": "mIoU large regions"}


def small_regions(labels: torch.Tensor, min_area: float, ignore_index: int = 255) -> torch.Tensor:
    """(N, H, W) bool: pixels whose region (same-class 8-connected component) is under ``min_area``.

    Pixels labelled ``ignore_index`` are never small.
    """
    from skimage.measure import label as components

    out = np.zeros(tuple(labels.shape), dtype=bool)
    for i, lab in enumerate(labels.numpy()):
        lab = lab.astype(np.int64)
        ids = components(lab + 1, background=0, connectivity=2)  # +1: class 0 is not background
        ids[lab == ignore_index] = 0
        areas = np.bincount(ids.ravel())
        areas[0] = np.iinfo(np.int64).max  # ignored pixels: never small
        out[i] = areas[ids] < min_area
    return torch.from_numpy(out)


def region_miou(pred: torch.Tensor, gt: torch.Tensor, small: torch.Tensor, classes: int) -> dict:
    """mIoU over the pixels of small regions and over those of large ones."""
    from ..eval.metrics import miou

    out = {}
    for key, where in (("miou_small", small), ("miou_large", ~small)):
        masked = gt.clone()
        masked[~where] = 255
        out[key] = miou(pred, masked, classes, ignore_index=255)[0] if where.any() else float("nan")
    return out


def small_area(patch: int, label_side: int, backbone_side: int, small_patches: float) -> float:
    """The area (label pixels) under which a region is small: ``small_patches`` patches."""
    return small_patches * (patch * label_side / backbone_side) ** 2


def score_upsampler(
    fn,
    lr_feats: torch.Tensor,
    guidance: torch.Tensor,
    evalset: EvalSet,
    demo_cfg,
    small: torch.Tensor | None = None,
) -> dict:
    """Upsample, fit the probe on the first half, score the second half.

    ``fn(lr_feats, guidance)``: the upsampler. ``demo_cfg``: a DemoConfig (probe recipe and seed).
    ``small``: (N, H, W) small-region pixels (adds ``miou_small``/``miou_large``). Returns the
    demo's scores plus ``pred`` (N/2, H, W), the probe's labels on the scored half.
    """
    from ..world.heldout import score

    # in batches of 8, as the demo's upsampled_features, without its progress bar: one per
    # upsampler, seed and cell, it drew a bar even under --no-progress
    with torch.no_grad():
        parts = [fn(lr_feats[i : i + 8], guidance[i : i + 8]) for i in range(0, len(lr_feats), 8)]
    hr = torch.cat(parts).float()
    result = score(hr, evalset.labels, evalset.classes, demo_cfg)
    if small is not None:
        half = len(hr) // 2
        result.update(
            region_miou(result["pred"], evalset.labels[half:], small[half:], evalset.classes)
        )
    return result
