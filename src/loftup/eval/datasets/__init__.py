"""Dataset readers for the evaluation tasks, each in its dataset's standard on-disk layout.

``seg``: cocostuff, cityscapes, ade20k, voc (:mod:`.seg`); ``depth`` and ``normals``: nyuv2
(:mod:`.nyu`); ``davis``: davis2017 (:mod:`.davis`). Readers only read: probing and metrics live elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ...escaping import quoted
from ...paths import check_visible
from .common import (
    FIX,
    DatasetError,
    check_label_mode,
    check_same_size,
    home_expanded,
    open_image,
    open_label,
    open_rgb,
    resize_short_crop,
    to_image_tensor,
)
from .davis import DAVIS_HINT, DavisSequence, davis_sequences
from .normals_file import normals_file_for_run, nyu_normals_file, read_normals_pickle
from .nyu import NYU_HINT, NYUv2Depth, NYUv2Normals
from .seg import SEG_DATASETS, SegDatasetSpec, seg_pairs

DEPTH_DATASETS = ("nyuv2",)
VIDEO_DATASETS = ("davis2017",)
TASK_DATASETS = {
    "seg": tuple(SEG_DATASETS),
    "depth": DEPTH_DATASETS,
    "normals": DEPTH_DATASETS,
    "davis": VIDEO_DATASETS,
}


class SegmentationSet(torch.utils.data.Dataset):
    """Items: ``image`` float (3, S, S) in [0, 1], ``label`` long (S, S) (255 = not scored),
    ``key`` the image path, after the FeatUp resize (shorter side to S) and centre crop; with
    ``backbone_size`` also ``backbone_image``, the same crop at that side (for ``highres``).

    Arguments:
      name: a key of :data:`SEG_DATASETS`.
      root: the dataset folder (see :mod:`.seg` for each layout).
      split: 'train' or 'val'.
      size: output side S.
      limit: only the first ``limit`` images of the split.
      backbone_size: side of the image the backbone sees, when it differs from S.
      check: read every file's header first (:func:`check_seg_pairs`), so that a damaged file
        stops the run before any work, not hours into it.

    A file that cannot be read, a label whose size is not its image's, or a label value the
    dataset does not have is a DatasetError naming the file (a run is not scored on a quietly
    smaller split).
    """

    def __init__(
        self,
        name: str,
        root: str | Path,
        split: str,
        size: int,
        limit: int | None = None,
        backbone_size: int | None = None,
        check: bool = True,
    ):
        self.spec: SegDatasetSpec = SEG_DATASETS[name]
        self.pairs = seg_pairs(name, root, split, limit)
        if check:
            check_seg_pairs(self.pairs)
        self.size = size
        self.backbone_size = backbone_size if backbone_size != size else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        image_path, label_path = self.pairs[i]
        rgb = open_rgb(image_path)
        values = open_label(label_path)
        check_same_size(image_path, rgb.size, label_path, values.shape[::-1])
        bad = self.spec.bad_value(values)
        if bad is not None:
            raise DatasetError(
                f"{label_path}: label value {bad} is not a {self.spec.name} label (its labels are "
                f"{self.spec.label_range()}); is --dataset right? Else {FIX}"
            )
        raw = Image.fromarray(values.astype(np.uint8))
        label = self.spec.decode(np.asarray(resize_short_crop(raw, self.size, nearest=True)))
        item = {
            "image": to_image_tensor(resize_short_crop(rgb, self.size, nearest=False)),
            "label": torch.from_numpy(label),
            "key": str(Path(image_path).resolve()),
        }
        if self.backbone_size:
            big = resize_short_crop(rgb, self.backbone_size, nearest=False)
            item["backbone_image"] = to_image_tensor(big)
        return item


def _check_pair(pair: tuple[Path, Path]) -> None:
    image_path, label_path = pair
    with open_image(image_path) as image, open_image(label_path) as label:  # headers only
        check_label_mode(label_path, label)
        check_same_size(image_path, image.size, label_path, label.size)


def check_seg_pairs(pairs: list[tuple[Path, Path]], threads: int = 8) -> None:
    """DatasetError for the first (image, label) pair whose files PIL cannot identify, whose
    label is not single-channel, or whose sizes differ. Reads headers only (a few thousand
    pairs a second, in ``threads`` threads); pixel damage and label values are found when the
    pair is read."""
    if len(pairs) < 64:
        for pair in pairs:
            _check_pair(pair)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(threads)
    try:
        for _ in pool.map(_check_pair, pairs):  # the first failure, in the split's order
            pass
    finally:
        pool.shutdown(cancel_futures=True)


def check_disjoint(name: str, train: list[tuple[Path, Path]], val: list[tuple[Path, Path]]) -> None:
    """DatasetError when an image is in both the ``train`` and the ``val`` pairs of dataset
    ``name``: the probe would be scored on images it was trained on (a split list of one's own,
    VOC's ``train_aug`` under the name ``train.txt`` say; the official lists share none)."""
    seen = {Path(image).resolve() for image, _ in train}
    both = [image for image, _ in val if Path(image).resolve() in seen]
    if both:
        raise DatasetError(
            f"{name}: image {both[0]} is in both the train and the val split ({len(both)} of "
            f"its {len(val)} val images), so the probe would be scored on images it was trained "
            f"on; take them out of one split. {SEG_DATASETS[name].hint}"
        )


def check_dataset(task: str, name: str) -> None:
    """DatasetError unless ``name`` is a dataset of ``task``."""
    known = TASK_DATASETS.get(task, ())
    if name not in known:
        raise DatasetError(f"unknown {task} dataset {quoted(name)}; known: {', '.join(known)}")


def check_root(task: str, name: str, root: str | Path) -> None:
    """DatasetError naming ``--root`` when it is not a folder (missing, or a file), with the
    layout dataset ``name`` of ``task`` expects there: said as the mistyped path it is, not as
    the first file of the layout that is missing under it."""
    path = home_expanded(root, "--root")
    check_visible(path, "--root")
    if os.path.isdir(path):  # os.path: pathlib's raises where a folder is not searchable
        return
    what = "does not exist" if not os.path.exists(path) else "is a file, not a folder"
    hint = SEG_DATASETS[name].hint if task == "seg" else NYU_HINT if name == "nyuv2" else DAVIS_HINT
    raise DatasetError(f"--root {root} {what}; give the folder of the {name} dataset. {hint}")


__all__ = [
    "DatasetError",
    "DavisSequence",
    "NYUv2Depth",
    "NYUv2Normals",
    "SEG_DATASETS",
    "SegmentationSet",
    "TASK_DATASETS",
    "check_dataset",
    "check_disjoint",
    "check_root",
    "check_seg_pairs",
    "davis_sequences",
    "normals_file_for_run",
    "nyu_normals_file",
    "read_normals_pickle",
    "seg_pairs",
]
