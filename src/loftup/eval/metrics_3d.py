"""Metrics of the paper's depth and surface-normal protocols (Probe3D's), as pure functions on
tensors.

Depth: per-image delta1 (delta2, delta3) recall, RMSE and AbsRel on the valid pixels (finite
ground truth > 0), averaged over images (Probe3D), as predicted ("scale-aware") and after a
per-image least-squares scale and shift (:func:`match_scale_and_shift`, Probe3D's
"scale-invariant" figures). Normals: per-image angular error (RMSE, mean, fractions within
11.25, 22.5 and 30 degrees) over the valid pixels.

The label-map metrics (segmentation, boundaries, DAVIS J and F) are in :mod:`.metrics`.
Tensors of the wrong shapes raise plain ValueErrors, as torch's functions do (see
:mod:`loftup.errors`); the evaluation commands check their data before it gets here.
"""

from __future__ import annotations

import torch

# -- depth -------------------------------------------------------------------------------------


def valid_depth(gt: torch.Tensor) -> torch.Tensor:
    """Where a depth map is scored: a finite depth > 0 (0 is no sensor reading; a NaN or an
    infinity, how some datasets mark a hole, is none either)."""
    return (gt > 0) & gt.isfinite()


def depth_metrics(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image delta1-3, RMSE and AbsRel of (B, H, W) depth maps over valid pixels (finite
    gt > 0, :func:`valid_depth`; what the other pixels hold, NaN included, counts for nothing).

    Returns a dict of (B,) tensors: ``delta1`` (fraction with max(p/g, g/p) < 1.25; ``delta2``
    and ``delta3``: < 1.25^2 and 1.25^3, the other two Probe3D reports), ``rmse``
    (in the depth unit), ``abs_rel`` (mean |p - g| / g), and ``valid_pixels``, how many pixels
    each was scored on. Average over the images of a split that have a valid pixel (an image
    without one has nothing to score: its zeros are no score).
    """
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape")
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    mask = valid_depth(gt)
    # an invalid pixel is a perfect 1 m prediction of 1 m: its NaN or infinity (a hole in the
    # ground truth, or in a prediction where nothing is scored) cannot reach a sum (0 x NaN)
    gt, pred = (torch.where(mask, t.double(), 1.0) for t in (gt, pred))
    valid = mask.double()
    n = valid.sum((-2, -1)).clamp_min(1)
    ratio = torch.maximum(gt / pred.clamp_min(1e-9), pred / gt)
    deltas = {
        f"delta{k}": ((ratio < 1.25**k).double() * valid).sum((-2, -1)) / n for k in (1, 2, 3)
    }
    rmse = (((pred - gt) ** 2 * valid).sum((-2, -1)) / n).sqrt()
    abs_rel = (((pred - gt).abs() / gt) * valid).sum((-2, -1)) / n
    pixels = valid.sum((-2, -1)).long()
    return {**deltas, "rmse": rmse, "abs_rel": abs_rel, "valid_pixels": pixels}


def match_scale_and_shift(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B, H, W) ``pred`` mapped by the per-image scale s and shift t that minimise
    sum over valid pixels (finite gt > 0) of (s * pred + t - gt)^2 (least squares), as Probe3D's
    scale-invariant depth metrics align a prediction first. An image whose system is
    singular (no valid pixel, or a constant prediction, up to rounding) keeps s = 1, t = 0, as
    there."""
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape")
    squeeze = pred.ndim == 2
    p, g = (pred[None], gt[None]) if squeeze else (pred, gt)
    valid = valid_depth(g)
    # the sums over valid pixels only: what the others hold (NaN x 0 is NaN) is replaced first
    pv, gv = (torch.where(valid, t.double(), 0.0) for t in (p, g))
    m = valid.double()
    a00, a01, a11 = (m * pv * pv).sum((-2, -1)), (m * pv).sum((-2, -1)), m.sum((-2, -1))
    b0, b1 = (m * pv * gv).sum((-2, -1)), (m * gv).sum((-2, -1))
    det = a00 * a11 - a01 * a01
    # singular up to rounding too: a constant 3.3 left det a rounding error, not 0, and its
    # "scale" anything (1.4, 4.0, 0.0 on three images); det / (a00 a11) is the prediction's
    # variance over its mean square, which float32 cannot resolve below about 1e-14
    ok = det > 1e-12 * a00 * a11
    safe = torch.where(ok, det, torch.ones_like(det))
    scale = torch.where(ok, (a11 * b0 - a01 * b1) / safe, torch.ones_like(det))
    shift = torch.where(ok, (a00 * b1 - a01 * b0) / safe, torch.zeros_like(det))
    out = (p.double() * scale[:, None, None] + shift[:, None, None]).to(pred.dtype)
    return out[0] if squeeze else out


# -- surface normals ---------------------------------------------------------------------------

#: Angular thresholds (degrees) of the normal recalls: Probe3D's, after Fouhey et al.
NORMAL_THRESHOLDS = (11.25, 22.5, 30.0)


def normal_metrics(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per-image angular error of (B, 3, H, W) normals over ``valid`` (B, H, W) pixels
    (default: all; what the others hold, NaN included, counts for nothing), as Probe3D
    computes it: the angle between prediction and ground truth in degrees, its RMSE and mean
    per image, and the fraction within 11.25, 22.5 and 30 degrees.

    Returns a dict of (B,) tensors: ``rmse``, ``mean``, ``within_11.25``, ``within_22.5``,
    ``within_30``, and ``valid_pixels``. Average over the images of a split that have a valid
    pixel.
    """
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"expected two (B, 3, H, W) normal maps, got {tuple(pred.shape)} and "
                         f"{tuple(gt.shape)}")  # fmt: skip
    if valid is None:
        valid = torch.ones(gt.shape[0], *gt.shape[2:], dtype=torch.bool, device=gt.device)
    valid = valid.bool()
    cos = torch.nn.functional.cosine_similarity(pred.double(), gt.double(), dim=1)
    angle = torch.rad2deg(cos.clamp(-1, 1).acos())
    weight = valid.double()
    angle = torch.where(valid, angle, 0.0)  # a NaN where nothing is scored counts for nothing
    n = weight.sum((-2, -1)).clamp_min(1)
    out = {
        "rmse": ((angle.pow(2) * weight).sum((-2, -1)) / n).sqrt(),
        "mean": (angle * weight).sum((-2, -1)) / n,
    }
    for t in NORMAL_THRESHOLDS:
        out[f"within_{t:g}"] = ((angle < t).double() * weight).sum((-2, -1)) / n
    out["valid_pixels"] = weight.sum((-2, -1)).long()
    return out
