"""DAVIS 2017 video object segmentation by label propagation (see :mod:`.propagation`).

Scores follow the DAVIS benchmark (davis2017-evaluation, semi-supervised): per object and per
frame, J (mask IoU) and F (boundary F with a tolerance of ceil(0.008 x diagonal) pixels),
first and last frames excluded; each object's mean, recall and decay over its frames; J and F
mean, recall and decay average over all objects of all sequences; J&F is the mean of J mean
and F mean.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import printable
from ..stops import check as check_stop
from .config import EvalConfig, check_start, feature_side
from .datasets import DavisSequence, davis_sequences
from .datasets.common import open_rgb, resize_square, to_image_tensor
from .figures import davis_figure
from .mask_folder import check_mask_names as check_mask_names
from .mask_staging import MaskStaging
from .metrics import contour_accuracy, region_similarity
from .pipeline import FeaturePipeline, make_loader
from .propagation import one_hot, propagate_video, soft_to_mask
from .report import figure_title, run_info
from .results import finish

POLICY = "resize-square-bicubic"
N_EXAMPLES = 4


class FrameSet(torch.utils.data.Dataset):
    """The frames of ``sequences``, in order, as the pipeline takes them: ``image`` resized to
    ``size`` x ``size`` (bicubic), ``backbone_image`` to the backbone's ``input_size`` where
    that differs (highres; as the segmentation sets name it), and ``key``, the file's absolute
    path (the feature cache's key). Read in ``--workers`` processes by :func:`frame_loader`."""

    def __init__(self, sequences: list[DavisSequence], size: int, input_size: int) -> None:
        self.paths = [p for seq in sequences for p in seq.frames]
        self.size, self.input_size = size, input_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        img = open_rgb(self.paths[i])

        def resized(side):
            return to_image_tensor(resize_square(img, side, nearest=False, bicubic=True))

        item = {"image": resized(self.size), "key": str(Path(self.paths[i]).resolve())}
        if self.input_size != self.size:
            item["backbone_image"] = resized(self.input_size)
        return item


def frame_loader(sequences: list[DavisSequence], pipe: FeaturePipeline, cfg: EvalConfig):
    """The frames of ``sequences`` in batches of at most ``cfg.batch_size`` frames of one
    sequence each (:func:`frame_features` takes a sequence's), read by ``cfg.workers``
    processes while the main one propagates."""
    batches, start = [], 0
    for seq in sequences:
        n = len(seq.frames)
        batches += [list(range(start + i, start + min(n, i + cfg.batch_size)))
                    for i in range(0, n, cfg.batch_size)]  # fmt: skip
        start += n
    frames = FrameSet(sequences, cfg.size, pipe.input_size)
    return make_loader(frames, cfg, shuffle=False, batches=batches)


def frame_features(
    seq: DavisSequence, pipe: FeaturePipeline, cfg: EvalConfig, batches=None
) -> Iterator[torch.Tensor]:
    """Upsampled features (C, h, w) of each frame, computed ``batch_size`` frames at a time.

    ``batches``: an iterator over :func:`frame_loader`'s batches, of which this sequence's
    are the next ones (None: read them here)."""
    if batches is None:
        batches = iter(frame_loader([seq], pipe, cfg))
    out = feature_side(cfg)
    for _ in range(0, len(seq.frames), cfg.batch_size):
        batch = next(batches)
        _, hr = pipe(batch["image"], batch["key"], out, batch.get("backbone_image"))
        yield from hr


def first_frame_labels(gt: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, int]:
    """(H0, W0) object ids -> ((K, h, w) one-hot at the feature size, number of objects)."""
    n_obj = int(gt.max())
    small = F.interpolate(gt[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    return one_hot(small, n_obj + 1), n_obj


def frame_statistics(values: list[float]) -> tuple[float, float, float]:
    """The benchmark's statistics (``db_statistics``) of one object's per-frame J or F: the
    mean, the recall (the fraction of frames above 0.5) and the decay (the mean over the
    first of 4 bins of frames minus that over the last; the bins' edges are
    ``round(linspace(1, n, 5)) - 1``, each bin including its end edge)."""
    v = np.asarray(values, dtype=np.float64)
    ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.int64)
    first, last = v[ids[0] : ids[1] + 1], v[ids[3] : ids[4] + 1]
    return float(v.mean()), float((v > 0.5).mean()), float(first.mean() - last.mean())


def davis_statistics(per_object: dict[str, dict[str, list[float]]]) -> dict:
    """J and F mean, recall and decay (each object's, then the mean over the objects) and
    J&F (the mean of J mean and F mean) from per-object lists of per-frame J and F values."""
    out: dict = {}
    for key in ("J", "F"):
        stats = [frame_statistics(v[key]) for v in per_object.values() if v[key]]
        for i, name in enumerate(("mean", "recall", "decay")):
            out[f"{key}_{name}"] = float(np.mean([st[i] for st in stats])) if stats else math.nan
    out["J&F_mean"] = (out["J_mean"] + out["F_mean"]) / 2
    out["num_objects"] = sum(1 for v in per_object.values() if v["J"])
    return out


def track_sequence(
    seq: DavisSequence,
    pipe: FeaturePipeline,
    cfg: EvalConfig,
    examples: list,
    bar=None,
    batches=None,
    masks: MaskStaging | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Propagate the first frame's objects through ``seq``; per-object J and F lists
    (``batches``: see :func:`frame_features`; ``masks``: where the predicted masks are
    staged, None for nowhere)."""
    feats = frame_features(seq, pipe, cfg, batches)
    first = next(feats)
    gt0 = seq.annotation(0)
    labels0, n_obj = first_frame_labels(gt0, tuple(first.shape[-2:]))
    if n_obj < 1:
        seq.check()  # says which file and why
    scores = {f"{seq.name}_{k}": {"J": [], "F": []} for k in range(1, n_obj + 1)}
    palette = seq.palette() if masks is not None else None
    if masks is not None:
        masks.save(gt0, seq.name, seq.frames[0].stem, palette)
    last = len(seq.frames) - 1
    softs = propagate_video(_chain(first, feats), labels0.to(first.device), cfg.propagation)
    for t, soft in enumerate(softs, start=1):
        check_stop()  # one a finaliser swallowed (a bar's, a generator's): loftup.stops
        if bar is not None:
            bar.update(1)
        gt = seq.annotation(t)
        pred = soft_to_mask(soft.cpu(), cfg.size, tuple(gt.shape))
        if masks is not None:
            masks.save(pred, seq.name, seq.frames[t].stem, palette)
        if t != last:  # the benchmark leaves out the first and the last frame
            # void (255) is background in ``gt`` and the prediction is scored there as
            # anywhere: davis2017-evaluation's semi-supervised scorer takes out no pixel
            for k in range(1, n_obj + 1):
                scores[f"{seq.name}_{k}"]["J"].append(region_similarity(pred == k, gt == k))
                scores[f"{seq.name}_{k}"]["F"].append(contour_accuracy(pred == k, gt == k))
        if len(examples) < N_EXAMPLES and t in {1, max(1, last // 2), last}:
            image = to_image_tensor(open_rgb(seq.frames[t]))
            examples.append({"image": image, "gt": gt, "pred": pred, "name": f"{seq.name} #{t}"})
    return scores


def _chain(first, rest):
    yield first
    yield from rest


def run_davis(cfg: EvalConfig, report=None) -> dict:
    """Label propagation on DAVIS 2017 val: J mean, F mean and J&F.
    ``report``: see :func:`loftup.eval.evaluate`."""
    from tqdm.auto import tqdm

    from ..bars import bar_settings

    check_start(cfg, "davis")
    start = time.time()
    sequences = davis_sequences(cfg.root, "val", cfg.limit, cfg.max_frames, check=True)
    if cfg.save_masks:
        check_mask_names(sequences, cfg.save_masks)
    # DIR's lock taken and held to the end; the masks go into place at the end
    names = [seq.name for seq in sequences]
    staging = MaskStaging(cfg.save_masks, cfg.root, names) if cfg.save_masks else None
    per_object: dict[str, dict[str, list[float]]] = {}
    per_sequence = {}
    examples: list[dict] = []
    total = sum(len(seq.frames) - 1 for seq in sequences)
    try:
        pipe = FeaturePipeline(cfg, policy=POLICY)
        batches = iter(frame_loader(sequences, pipe, cfg))  # one set of workers for all
        bar = tqdm(
            total=total,
            desc="davis frames",
            leave=False,
            **bar_settings(shown=cfg.progress),
        )
        with bar, contextlib.closing(batches):  # closed: the workers end with the run
            for seq in sequences:
                check_stop()
                bar.set_postfix(sequence=printable(seq.name), refresh=False)  # a folder's name
                scores = track_sequence(seq, pipe, cfg, examples, bar, batches, staging)
                per_object.update(scores)
                per_sequence[seq.name] = davis_statistics(scores)
        metrics = davis_statistics(per_object)
        results = {
            "task": cfg.task,
            "dataset": cfg.dataset,
            "backbone": cfg.backbone,
            "upsampler": cfg.upsampler,
            "num_sequences": len(sequences),
            "num_frames": {"total": sum(len(seq.frames) for seq in sequences),
                           "scored": sum(len(seq.frames) - 2 for seq in sequences)},
            "features": pipe.record(),
            "settings": {**cfg.to_dict(), "policy": POLICY},
            "run": run_info(cfg.device),
            "metrics": metrics,
            "per_sequence": per_sequence,
            "per_object": {
                k: {"J": float(np.mean(v["J"])) if v["J"] else None,
                    "F": float(np.mean(v["F"])) if v["F"] else None}
                for k, v in per_object.items()
            },
            "cache": pipe.cache.record(),
            "elapsed_s": round(time.time() - start, 2),
        }  # fmt: skip
        title = figure_title("davis", f"DAVIS {cfg.backbone} + {cfg.upsampler}", metrics)
        check_stop()  # (before the scores are written and the masks put in place)
        # the scores written first: a failure to put the masks in place loses none
        finish(cfg, results, lambda path: davis_figure(examples, path, title=title), report)
        check_stop()  # one swallowed as the scores and figure were written (their finalisers)
        if staging is not None:  # (inside: a Ctrl-C just before it, too, discards the masks)
            staging.publish(results)
    except BaseException:  # a failed or interrupted run leaves --save-masks as it was
        if staging is not None:
            staging.discard()  # (after publish: what it left and named is kept)
        raise
    return results
