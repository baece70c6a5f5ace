"""The SA-1B layout: ``sa_N.jpg`` next to ``sa_N.json`` whose annotations are COCO RLE masks.

Any folder tree works (an extracted tar shard, or many); an image without its JSON is not
listed. Masks are decoded with pycocotools and kept in the file's order, at most ``max_masks`` (those
that fall outside the centred square crop are left out).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import one_line
from .images import SquareCrop, crop_mask, list_images


def list_sa1b(root: str | os.PathLike) -> tuple[list[tuple[Path, Path]], int]:
    """(image, json) pairs under ``root`` sorted by path, and the number of images without JSON."""
    pairs, orphans = [], 0
    for image in list_images(root, extensions=(".jpg", ".jpeg")):
        ann = image.with_suffix(".json")
        if ann.exists():
            pairs.append((image, ann))
        else:
            orphans += 1
    return pairs, orphans


def read_sa1b_masks(json_path: str | os.PathLike, crop: SquareCrop, max_masks: int) -> np.ndarray:
    """The first ``max_masks`` masks of an SA-1B JSON, cropped like the image: bool (K, S, S).

    Raises OSError (a missing file) or a one-line ValueError naming the file and what is wrong
    with it (not JSON, no annotations, a mask that is not COCO RLE or does not decode).
    """
    from pycocotools import mask as mask_utils

    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise _broken(json_path, f"not JSON ({e})") from None
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list):
        raise _broken(json_path, "no 'annotations' list")
    masks = []
    for n, ann in enumerate(annotations[:max_masks]):
        rle = ann.get("segmentation") if isinstance(ann, dict) else None
        if not (isinstance(rle, dict) and "size" in rle and "counts" in rle):
            raise _broken(json_path, f"annotation {n} is not COCO RLE ({{size, counts}})")
        rle = dict(rle)
        try:
            if isinstance(rle["counts"], list):  # uncompressed RLE (COCO's other form)
                rle = mask_utils.frPyObjects(rle, *rle["size"])
            elif isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
            mask = mask_utils.decode(rle).astype(bool)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
            raise _broken(json_path, f"annotation {n} does not decode ({one_line(e)})") from None
        try:
            mask = crop_mask(mask, crop)
        except ValueError as e:
            raise ValueError(f"{json_path}: {e}") from None
        if mask.any():  # masks outside the centred square are of no use
            masks.append(mask)
    if not masks:
        return np.zeros((0, crop.size, crop.size), dtype=bool)
    return np.stack(masks)


def _broken(json_path, why: str) -> ValueError:
    return ValueError(
        f"{json_path}: {why}; not SA-1B annotations (extract the file again, or delete it with "
        "its image)"
    )
