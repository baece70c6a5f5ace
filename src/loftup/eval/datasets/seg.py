"""Semantic segmentation datasets in their standard on-disk layouts.

Each reader lists (image, label) file pairs of a split and decodes a raw label PNG into class
ids in [0, K) with 255 for pixels that are not scored.

- ``cocostuff`` (27 coarse classes, the FeatUp / STEGO protocol)::

      ROOT/images/{train2017,val2017}/ID.jpg
      ROOT/annotations/{train2017,val2017}/ID.png        stuffthingmaps: 0..181, 255 unlabelled
      ROOT/curated/{train2017,val2017}/Coco164kFull_Stuff_Coarse.txt   image ids, one a line

  The 182 fine ids map to 27 coarse ones by the COCO-Stuff hierarchy (12 thing and 15 stuff
  super-categories).
- ``cityscapes`` (19 classes)::

      ROOT/leftImg8bit/{train,val}/CITY/CITY_SEQ_FRAME_leftImg8bit.png
      ROOT/gtFine/{train,val}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png   labelIds -> trainIds

- ``ade20k`` (150 classes)::

      ROOT/images/{training,validation}/ADE_*_NNNNNNNN.jpg
      ROOT/annotations/{training,validation}/ADE_*_NNNNNNNN.png   0 = other (not scored), k -> k-1

- ``voc`` (21 classes, Pascal VOC 2012)::

      ROOT/JPEGImages/ID.jpg
      ROOT/SegmentationClass/ID.png              palette indices 0..20, 255 = border (not scored)
      ROOT/ImageSets/Segmentation/{train,val}.txt

ROOT may also be the folder above (``cocostuff/``, ``cityscapes/``, ``ADEChallengeData2016/``,
``VOCdevkit/VOC2012/``), as unpacked from the official archives.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...paths import check_visible, there
from .common import IGNORE, DatasetError, home_expanded, limited, listed, read_lines, require

COCO_FINE_TO_COARSE = np.array(
    [
        9, 11, 11, 11, 11, 11, 11, 11, 11, 8, 8, 8, 8, 8, 8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6,
        6, 6, 6, 6, 6, 6, 6, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 5, 5, 5, 5, 5, 5, 5, 5, 2,
        2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0, 1,
        1, 1, 1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 4, 17, 17, 22, 20, 20, 22, 15, 25, 16, 13, 12, 12, 17,
        17, 23, 15, 15, 17, 15, 21, 15, 25, 13, 13, 13, 13, 13, 22, 26, 14, 14, 15, 22, 21, 21, 24, 20, 22, 15,
        17, 16, 15, 22, 24, 21, 17, 25, 16, 21, 17, 22, 16, 21, 21, 25, 21, 26, 21, 24, 20, 17, 14, 21, 26, 15,
        23, 20, 21, 24, 15, 24, 22, 25, 15, 20, 17, 17, 22, 14, 18, 18, 18, 18, 18, 18, 18, 26, 26, 19, 19, 24,
    ],
    dtype=np.int64,
)  # fmt: skip
COCO_COARSE_NAMES = (
    "electronic", "appliance", "food", "furniture", "indoor", "kitchen", "accessory", "animal",
    "outdoor", "person", "sports", "vehicle", "ceiling", "floor", "food-stuff",
    "furniture-stuff", "raw-material", "textile", "wall", "window", "building", "ground",
    "plant", "sky", "solid", "structural", "water",
)  # fmt: skip

#: Cityscapes labelIds of the 19 evaluated classes, in trainId order.
CITYSCAPES_EVAL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
CITYSCAPES_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
VOC_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def _table(mapping: dict[int, int]) -> np.ndarray:
    table = np.full(256, 255, dtype=np.int64)
    for raw, cls in mapping.items():
        table[raw] = cls
    return table


COCO_TABLE = _table({fine: int(c) for fine, c in enumerate(COCO_FINE_TO_COARSE)})
CITYSCAPES_TABLE = _table({raw: i for i, raw in enumerate(CITYSCAPES_EVAL_IDS)})
ADE_TABLE = _table({k: k - 1 for k in range(1, 151)})
VOC_TABLE = _table({k: k for k in range(21)})


@dataclass(frozen=True)
class SegDatasetSpec:
    """A segmentation dataset: how to find its pairs and decode its labels."""

    name: str
    num_classes: int
    splits: dict[str, str]
    find_root: Callable[[Path], Path]
    list_pairs: Callable[[Path, str], list[tuple[Path, Path]]]
    table: np.ndarray = field(repr=False)
    class_names: tuple[str, ...] | None = None
    hint: str = ""
    #: raw values the label files hold are 0 .. raw_values - 1, and 255 (not scored)
    raw_values: int = 256
    #: a folder only this dataset's layout has (under ``find_root(root)``): tells one
    #: dataset's folder given for another apart from a folder that holds none
    marker: str = ""

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Raw label values (H, W) -> class ids in [0, K), 255 not scored."""
        return self.table[np.clip(raw.astype(np.int64), 0, 255)]

    def bad_value(self, raw: np.ndarray) -> int | None:
        """A raw value of ``raw`` that no label file of this dataset holds (None if none)."""
        values = raw.astype(np.int64)
        bad = ((values < 0) | (values >= self.raw_values)) & (values != IGNORE)
        return int(values[bad][0]) if bad.any() else None

    def label_range(self) -> str:
        """The raw values a label file may hold, in words."""
        return f"0..{self.raw_values - 1}, and 255 for pixels not scored"


def _descend(root: Path, *children: str) -> Path:
    """``root`` or the first existing ``root/child`` that holds the dataset."""
    for child in children:
        if _folder_there(root / child):
            return root / child
    return root


def _folder_there(path: Path) -> bool:
    """Whether ``path``, of a dataset root, is a folder; a PathPermissionError where a folder
    this user may not search hides it (pathlib's is_dir raised a bare PermissionError naming a
    folder the layout guessed)."""
    return there(path, "dataset root", test=os.path.isdir)


# -- COCO-Stuff --------------------------------------------------------------------------------

COCO_LIST = "Coco164kFull_Stuff_Coarse.txt"
COCO_HINT = (
    "Expected ROOT/images/<split>2017, ROOT/annotations/<split>2017 (stuffthingmaps PNGs) and "
    f"ROOT/curated/<split>2017/{COCO_LIST} (see the README's Evaluation section)."
)


def _coco_pairs(root: Path, folder: str) -> list[tuple[Path, Path]]:
    ids = read_lines(root / "curated" / folder / COCO_LIST, "COCO-Stuff curated list", COCO_HINT)
    return [
        (root / "images" / folder / f"{i}.jpg", root / "annotations" / folder / f"{i}.png")
        for i in ids
    ]


# -- Cityscapes --------------------------------------------------------------------------------

CITYSCAPES_HINT = "Expected ROOT/leftImg8bit/<split>/<city>/*_leftImg8bit.png and ROOT/gtFine/..."


def _cityscapes_pairs(root: Path, folder: str) -> list[tuple[Path, Path]]:
    images = require(root / "leftImg8bit" / folder, "Cityscapes images", CITYSCAPES_HINT)
    pairs = []
    for img in listed(images, "*/*_leftImg8bit.png"):
        stem = img.name[: -len("_leftImg8bit.png")]
        pairs.append(
            (img, root / "gtFine" / folder / img.parent.name / f"{stem}_gtFine_labelIds.png")
        )
    return pairs


# -- ADE20K ------------------------------------------------------------------------------------

ADE_HINT = "Expected ROOT/images/<training|validation>/*.jpg and ROOT/annotations/... (*.png)."


def _ade_pairs(root: Path, folder: str) -> list[tuple[Path, Path]]:
    images = require(root / "images" / folder, "ADE20K images", ADE_HINT)
    return [
        (img, root / "annotations" / folder / f"{img.stem}.png") for img in listed(images, "*.jpg")
    ]


# -- Pascal VOC --------------------------------------------------------------------------------

VOC_HINT = "Expected ROOT/JPEGImages, ROOT/SegmentationClass and ROOT/ImageSets/Segmentation/."


def _voc_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    ids = read_lines(
        root / "ImageSets" / "Segmentation" / f"{split}.txt", "VOC split list", VOC_HINT
    )
    return [
        (root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png") for i in ids
    ]


def _coco_root(root: Path) -> Path:
    return _descend(root, "cocostuff")


def _cityscapes_root(root: Path) -> Path:
    return _descend(root, "cityscapes")


def _ade_root(root: Path) -> Path:
    return _descend(root, "ADEChallengeData2016")


def _voc_root(root: Path) -> Path:
    return _descend(_descend(root, "VOCdevkit"), "VOC2012")


# module-level functions only, so that DataLoader workers can pickle a dataset
SEG_DATASETS: dict[str, SegDatasetSpec] = {
    s.name: s
    for s in [
        SegDatasetSpec(
            "cocostuff", 27, {"train": "train2017", "val": "val2017"}, _coco_root, _coco_pairs,
            COCO_TABLE, COCO_COARSE_NAMES, COCO_HINT, 182, "curated",
        ),
        SegDatasetSpec(
            "cityscapes", 19, {"train": "train", "val": "val"}, _cityscapes_root,
            _cityscapes_pairs, CITYSCAPES_TABLE, CITYSCAPES_NAMES, CITYSCAPES_HINT, 34,
            "leftImg8bit",
        ),
        SegDatasetSpec(
            "ade20k", 150, {"train": "training", "val": "validation"}, _ade_root, _ade_pairs,
            ADE_TABLE, None, ADE_HINT, 151, "images/training",
        ),
        SegDatasetSpec(
            "voc", 21, {"train": "train", "val": "val"}, _voc_root, _voc_pairs, VOC_TABLE,
            VOC_NAMES, VOC_HINT, 21, "SegmentationClass",
        ),
    ]
}  # fmt: skip


def _check_not_another(name: str, root: str | Path) -> None:
    """DatasetError when ``root``, which lacks dataset ``name``'s layout, holds another
    dataset's: the fix is the dataset's name (``--dataset`` has a default), not the folder."""
    path = home_expanded(root, "dataset root")
    for other, spec in SEG_DATASETS.items():
        if other != name and _folder_there(spec.find_root(path) / spec.marker):
            raise DatasetError(
                f"{root} holds the {other} layout, not the {name} one: pass --dataset {other}, "
                f"or a --root that holds {name}. {SEG_DATASETS[name].hint}"
            )


#: How many of the listed (image, label) pairs :func:`seg_pairs` checks exist (the run's
#: check then reads every header of the pairs it uses).
CHECKED_PAIRS = 1000


def seg_pairs(
    name: str, root: str | Path, split: str, limit: int | None = None
) -> list[tuple[Path, Path]]:
    """(image, label) paths of ``split`` ('train' or 'val') of dataset ``name`` under ``root``
    (``limit``: the first ``limit`` of them only, and only their files must exist)."""
    spec = SEG_DATASETS[name]
    if split not in spec.splits:
        raise DatasetError(f"{name} has splits {sorted(spec.splits)}, not {split!r}")
    given = home_expanded(root, "dataset root")
    check_visible(given, "dataset root")  # the root named, not the first folder guessed in it
    base = spec.find_root(given)
    if base == given and not _folder_there(base / spec.marker):
        _check_not_another(name, root)  # no folder of its own there: another dataset's?
    pairs = spec.list_pairs(base, spec.splits[split])
    if not pairs:
        raise DatasetError(f"{name} {split}: no images found under {base}. {spec.hint}")
    pairs = limited(pairs, limit)  # a file the run never reads is not asked for
    checked = (p for pair in pairs[:CHECKED_PAIRS] for p in pair)
    missing = [str(p) for p in checked if not there(p, f"{name} file")]
    if missing:
        count = f"{len(missing)}" if len(pairs) <= CHECKED_PAIRS else f"at least {len(missing)}"
        raise DatasetError(
            f"{name} {split}: {count} listed files are missing, e.g. {missing[0]}. {spec.hint}"
        )
    return pairs
