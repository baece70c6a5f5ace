"""Dense probing runs: semantic segmentation, depth and surface normals with linear probes on
frozen features.

Each run: read the train and val/test splits, fit the probe on upsampled features (computed
batch by batch from cached backbone features), score the held-out split, write the results
JSON and a figure. Returns the results as a dict. The steps the runs share are in
:mod:`loftup.eval.probe_runs`.
"""

from __future__ import annotations

import time

import torch

from ..stops import check as check_stop
from .config import EvalConfig, backbone_size, check_start
from .datasets import NYUv2Depth, NYUv2Normals, SegmentationSet, check_disjoint
from .figures import depth_figure, normals_figure, seg_figure
from .metrics import SegmentationScores
from .metrics_3d import depth_metrics, match_scale_and_shift, normal_metrics
from .pipeline import FeaturePipeline, make_loader
from .probe import (
    DepthProbe,
    NormalProbe,
    make_seg_probe,
    predict,
    predict_depth,
    predict_normals,
)
from .probe_losses import depth_loss, normal_loss, seg_loss
from .probe_runs import (
    N_EXAMPLES,
    POLICY,
    _fit,
    _header,
    _pca,
    _probe_config,
    _probe_per_image,
    _what,
)
from .probe_training import DEPTH_PROBE, NORMAL_PROBE, SEG_PROBE
from .report import figure_title
from .results import finish


def run_seg(cfg: EvalConfig, report=None) -> dict:
    """Linear-probe semantic segmentation: mIoU and pixel accuracy on the val split.
    ``report``: see :func:`loftup.eval.evaluate`.

    The spec's "labels resized to the feature size with nearest", read as FeatUp's and
    LoftUp's code run it: images and labels go to S x S (``--size``, 224; shorter side, then
    the centre), the upsampler's output is S x S too, so training and scoring both happen at
    the feature size; a label map of another size than the logits is resized to them by
    nearest for the loss, and the class map to the labels' size for scoring. The scores come
    from one confusion matrix over all val pixels (not a mean over images); mIoU averages
    the classes that occur in the ground truth or the prediction.
    """
    from tqdm.auto import tqdm

    from ..bars import bar_settings

    check_start(cfg, "seg")
    start = time.time()
    big = backbone_size(cfg)
    train_set = SegmentationSet(cfg.dataset, cfg.root, "train", cfg.size, cfg.limit, big)
    val_set = SegmentationSet(cfg.dataset, cfg.root, "val", cfg.size, cfg.limit, big)
    check_disjoint(cfg.dataset, train_set.pairs, val_set.pairs)
    spec = train_set.spec
    pipe = FeaturePipeline(cfg, policy=POLICY)
    pcfg = _probe_config(SEG_PROBE, cfg)
    probe = make_seg_probe(pipe.dim, spec.num_classes, cfg.seed).to(pipe.device)
    per_epoch = _fit(probe, train_set, pipe, cfg, "label", lambda o, y: seg_loss(o, y, 255), pcfg)

    scores = SegmentationScores(spec.num_classes, ignore_index=255)
    examples = []
    loader = make_loader(val_set, cfg, shuffle=False)
    # closed on an error too, so that the error's line is not the bar's
    with tqdm(loader, desc="seg val", leave=False, **bar_settings(shown=cfg.progress)) as bar:
        for batch in bar:
            check_stop()  # one a finaliser swallowed: loftup.stops
            lr, hr = pipe(batch["image"], batch["key"], cfg.size, batch.get("backbone_image"))
            pred = predict(probe, hr, size=tuple(batch["label"].shape[-2:])).cpu()
            scores.update(pred, batch["label"])
            for i in range(min(len(pred), N_EXAMPLES - len(examples))):
                examples.append(
                    {"image": batch["image"][i], "label": batch["label"][i], "pred": pred[i],
                     "pca": _pca(lr[i], hr[i])}
                )  # fmt: skip
    metrics = scores.result()
    results = _header(cfg, pcfg, per_epoch, {"train": len(train_set), "val": len(val_set)}, pipe)
    results["metrics"] = metrics
    if spec.class_names:
        results["class_names"] = list(spec.class_names)
    results["cache"] = pipe.cache.record()
    results["elapsed_s"] = round(time.time() - start, 2)
    title = figure_title("seg", _what(cfg), metrics)
    return finish(
        cfg, results, lambda path: seg_figure(examples, spec.num_classes, path, title=title), report
    )


def _depth_score(probe, batch: dict, hr: torch.Tensor):
    """Probe3D's two sets of figures: the prediction as it is (scale-aware: ``delta1``...)
    and after a per-image least-squares scale and shift (scale-invariant: ``si_delta1``...)."""
    gt = batch["depth"]
    pred = predict_depth(probe, hr, size=tuple(gt.shape[-2:])).cpu()
    shown = [{"image": im, "depth": d, "pred": p} for im, d, p in zip(batch["image"], gt, pred)]
    values = depth_metrics(pred, gt)
    aligned = depth_metrics(match_scale_and_shift(pred, gt), gt)
    values.update({f"si_{k}": v for k, v in aligned.items() if k != "valid_pixels"})
    return values, shown


def run_depth(cfg: EvalConfig, report=None) -> dict:
    """Linear-probe depth (Probe3D style): delta1, RMSE, AbsRel on the test split.
    ``report``: see :func:`loftup.eval.evaluate`.

    The spec gives no resolution for depth ("linear probes as in Probe3D"): we read it as the
    segmentation protocol's S x S FeatUp crop (Probe3D itself scores 480 x 640 frames), with
    Probe3D's probe, loss, schedule and metrics: each metric per image over its valid
    pixels (0 < depth <= 10 m), then the mean over the images (not over all pixels); and, as
    Probe3D reports both, once more after a per-image least-squares scale and shift
    (``si_delta1``, ``si_rmse``, ``si_abs_rel``).
    """
    check_start(cfg, "depth")
    start = time.time()
    big = backbone_size(cfg)
    sets = tuple(
        NYUv2Depth(cfg.root, split, cfg.size, cfg.limit, big) for split in ("train", "test")
    )
    return _probe_per_image(
        cfg, report, start, sets, DEPTH_PROBE, lambda dim: DepthProbe(dim, seed=cfg.seed),
        "depth", depth_loss, _depth_score, depth_figure,
        lambda m: figure_title("depth", _what(cfg), m),
    )  # fmt: skip


def _normal_target(batch: dict) -> torch.Tensor:
    """(B, 4, S, S): the normal and where it is scored (the sensor's depth is valid)."""
    return torch.cat([batch["normals"], (batch["depth"] > 0)[:, None].float()], 1)


def _normals_score(probe, batch: dict, hr: torch.Tensor):
    gt, valid = batch["normals"], batch["depth"] > 0
    pred = predict_normals(probe, hr, size=tuple(gt.shape[-2:])).cpu()
    shown = [
        {"image": im, "normals": g, "valid": v, "pred": p}
        for im, g, v, p in zip(batch["image"], gt, valid, pred)
    ]
    return normal_metrics(pred, gt, valid), shown


def run_normals(cfg: EvalConfig, report=None) -> dict:
    """Linear-probe surface normals (Probe3D style) on NYUv2's test split: angular RMSE, mean,
    and the fraction within 11.25, 22.5 and 30 degrees. ``report``: see
    :func:`loftup.eval.evaluate`."""
    from .datasets import normals_file_for_run
    from .datasets.normals_file import normals_source

    check_start(cfg, "normals")
    start = time.time()
    big = backbone_size(cfg)
    # converted once, before any model; with --no-cache into a temporary folder, not the cache
    with normals_file_for_run(cfg.root, cfg.cache_dir) as normals:
        source = normals_source(cfg.root)
        # the file read, where it stays: --no-cache's conversion is removed when the run ends
        kept = normals == source or cfg.cache_dir is not None
        read = {"normals_source": str(source), "normals_file": str(normals) if kept else None}
        sets = tuple(
            NYUv2Normals(cfg.root, split, cfg.size, cfg.limit, big, normals=normals)
            for split in ("train", "test")
        )
        return _probe_per_image(
            cfg, report, start, sets, NORMAL_PROBE, lambda dim: NormalProbe(dim, seed=cfg.seed),
            _normal_target, normal_loss, _normals_score, normals_figure,
            lambda m: figure_title("normals", _what(cfg), m),
            extra=read,
        )  # fmt: skip
