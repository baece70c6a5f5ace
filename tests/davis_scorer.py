"""The DAVIS 2017 semi-supervised scorer (davis2017-evaluation), written out in numpy as an
independent check of :mod:`loftup.eval.video`: skimage's disk and scipy's binary dilation
stand in for OpenCV's; its void mask is empty (it is computed from boolean masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """The benchmark's boundary map of a binary mask."""
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1], s[:-1, :], se[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def f_measure(fg: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """The benchmark's boundary F of two binary masks."""
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk

    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(fg.shape))
    fg_b, gt_b = seg2bmap(fg), seg2bmap(gt)
    fg_dil = binary_dilation(fg_b, structure=disk(int(bound_pix)))
    gt_dil = binary_dilation(gt_b, structure=disk(int(bound_pix)))
    n_fg, n_gt = fg_b.sum(), gt_b.sum()
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision, recall = (fg_b & gt_dil).sum() / n_fg, (gt_b & fg_dil).sum() / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def iou(fg: np.ndarray, gt: np.ndarray) -> float:
    union = (fg | gt).sum()
    return 1.0 if union == 0 else (fg & gt).sum() / union


def db_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """Mean, recall and decay of one object's per-frame values."""
    m, o = np.nanmean(per_frame), np.nanmean(per_frame > 0.5)
    ids = (np.round(np.linspace(1, len(per_frame), 5) + 1e-10) - 1).astype(np.uint8)
    bins = [per_frame[ids[i] : ids[i + 1] + 1] for i in range(4)]
    return m, o, np.nanmean(bins[0]) - np.nanmean(bins[3])


def score_results(davis_root: Path, results: Path, sequences: list[str]) -> dict:
    """J-Mean, F-Mean and J&F-Mean of the result PNGs in ``results/SEQ/`` against
    ``davis_root/Annotations/480p/SEQ/`` (first and last frames left out, objects 1..max
    id of the first annotation). LoftUpError where ``results`` is a ``--save-masks`` folder
    whose mark says its masks are incomplete (a run killed while moving them in); no run
    into it starts while they are read."""
    from loftup.eval.mask_lock import reading_masks

    with reading_masks(results):
        return _score(davis_root, results, sequences)


def _score(davis_root: Path, results: Path, sequences: list[str]) -> dict:
    j_means, f_means = [], []
    for seq in sequences:
        files = sorted((davis_root / "Annotations" / "480p" / seq).glob("*.png"))
        gt = np.stack([np.array(Image.open(f)) for f in files]).astype(np.int64)
        gt[gt == 255] = 0
        n_obj = int(gt[0].max())
        res = np.stack([np.array(Image.open(results / seq / f.name)) for f in files[1:-1]])
        for k in range(1, n_obj + 1):
            gk, rk = gt[1:-1] == k, res == k
            j = np.array([iou(r, g) for r, g in zip(rk, gk)])
            f = np.array([f_measure(r, g) for r, g in zip(rk, gk)])
            j_means.append(db_statistics(j)[0])
            f_means.append(db_statistics(f)[0])
    j, f = float(np.mean(j_means)), float(np.mean(f_means))
    return {"J_mean": j, "F_mean": f, "J&F_mean": (j + f) / 2}
