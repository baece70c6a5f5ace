"""Evaluation on the paper's tasks: linear probes, label propagation, metrics, dataset readers.

Pure functions that work on in-memory tensors::

    from loftup.eval import fit_linear_probe, predict, miou, pixel_accuracy, boundary_f_score

    probe = fit_linear_probe(feats, labels, num_classes=27)   # (N, C, H, W), (N, H, W)
    pred = predict(probe, test_feats)                          # (N, H, W)
    score, per_class = miou(pred, test_labels, 27, ignore_index=255)
    f = boundary_f_score(pred[0], test_labels[0], tolerance_px=2)

Whole runs on datasets on disk (what ``loftup eval`` calls): :func:`evaluate` with an
:class:`EvalConfig`; readers in :mod:`loftup.eval.datasets`.
"""

from __future__ import annotations

from ..errors import UsageError, require
from .metrics import (
    SegmentationScores,
    boundary_f_score,
    boundary_map,
    confusion_matrix,
    contour_accuracy,
    davis_tolerance,
    miou,
    pixel_accuracy,
    region_similarity,
)
from .metrics_3d import depth_metrics, match_scale_and_shift, normal_metrics
from .pipeline import EvalConfig
from .probe import (
    DEPTH_PROBE,
    NORMAL_PROBE,
    SEG_PROBE,
    DepthProbe,
    NormalProbe,
    ProbeConfig,
    fit_depth_probe,
    fit_linear_probe,
    fit_normal_probe,
    predict,
    predict_depth,
    predict_normals,
    train_probe,
)
from .propagation import PropagationConfig, propagate_labels, propagate_video
from .report import summary


def evaluate(cfg, report=None) -> dict:
    """Run ``cfg.task`` ('seg', 'depth', 'normals' or 'davis') as set in ``cfg`` (an EvalConfig).

    Settings out of range (:meth:`EvalConfig.check`) and output paths that cannot be written
    are a UsageError before any work. ``report(results)``, when given, gets the results once
    the scores are known, before any file is written (the command line prints them there:
    a file that cannot be written then loses no numbers).
    """
    from .dense import run_depth, run_normals, run_seg
    from .video import run_davis

    runners = {"seg": run_seg, "depth": run_depth, "normals": run_normals, "davis": run_davis}
    if cfg.task not in runners:
        raise UsageError(f"unknown task {cfg.task!r}; choose one of {', '.join(runners)}")
    cfg.check()
    from dataclasses import replace

    from ..checks import resolve_device

    # "auto" (or None) becomes the device it picks, and the results record that one
    cfg = replace(cfg, device=str(resolve_device(cfg.device)))
    # said now, not after the features and the probe
    needs = {"PIL": "loftup eval (reading images)", "matplotlib": "loftup eval (its figure)"}
    if cfg.task == "davis":
        needs["scipy"] = "loftup eval davis (the boundary measure F)"
    elif cfg.task in ("depth", "normals"):  # NYUv2: splits.mat, then the HDF5 labelled set
        needs["scipy"] = f"loftup eval {cfg.task} (NYUv2's splits.mat)"
        needs["h5py"] = f"loftup eval {cfg.task} (NYUv2's nyu_depth_v2_labeled.mat)"
    require(needs)
    return runners[cfg.task](cfg, report=report)


__all__ = [
    "DEPTH_PROBE",
    "NORMAL_PROBE",
    "SEG_PROBE",
    "DepthProbe",
    "NormalProbe",
    "EvalConfig",
    "ProbeConfig",
    "PropagationConfig",
    "SegmentationScores",
    "boundary_f_score",
    "boundary_map",
    "confusion_matrix",
    "contour_accuracy",
    "davis_tolerance",
    "depth_metrics",
    "evaluate",
    "fit_depth_probe",
    "fit_linear_probe",
    "fit_normal_probe",
    "match_scale_and_shift",
    "miou",
    "normal_metrics",
    "pixel_accuracy",
    "predict",
    "predict_depth",
    "predict_normals",
    "propagate_labels",
    "propagate_video",
    "region_similarity",
    "summary",
    "train_probe",
]
