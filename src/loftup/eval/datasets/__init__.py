"""Dataset readers for the evaluation tasks, each in its dataset's standard on-disk layout.

``seg``: cocostuff, cityscapes, ade20k, voc (:mod:`.seg`); ``depth``: nyuv2 (:mod:`.nyu`);
``davis``: davis2017 (:mod:`.davis`). Readers only read: probing and metrics live elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .common import DatasetError, limited, open_label, open_rgb, resize_short_crop, to_image_tensor
from .davis import DavisSequence, davis_sequences
from .nyu import NYUv2Depth
from .seg import SEG_DATASETS, SegDatasetSpec, seg_pairs

DEPTH_DATASETS = ("nyuv2",)
VIDEO_DATASETS = ("davis2017",)
TASK_DATASETS = {"seg": tuple(SEG_DATASETS), "depth": DEPTH_DATASETS, "davis": VIDEO_DATASETS}


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
    """

    def __init__(
        self,
        name: str,
        root: str | Path,
        split: str,
        size: int,
        limit: int | None = None,
        backbone_size: int | None = None,
    ):
        self.spec: SegDatasetSpec = SEG_DATASETS[name]
        self.pairs = limited(seg_pairs(name, root, split), limit)
        self.size = size
        self.backbone_size = backbone_size if backbone_size != size else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        image_path, label_path = self.pairs[i]
        rgb = open_rgb(image_path)
        raw = Image.fromarray(open_label(label_path).astype(np.uint8))
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


def check_dataset(task: str, name: str) -> None:
    """DatasetError unless ``name`` is a dataset of ``task``."""
    known = TASK_DATASETS.get(task, ())
    if name not in known:
        raise DatasetError(f"unknown {task} dataset {name!r}; known: {', '.join(known)}")


__all__ = [
    "DatasetError",
    "DavisSequence",
    "NYUv2Depth",
    "SEG_DATASETS",
    "SegmentationSet",
    "TASK_DATASETS",
    "check_dataset",
    "davis_sequences",
    "seg_pairs",
]
