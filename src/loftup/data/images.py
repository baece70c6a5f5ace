"""Image files: listing, and loading as a centred square of a given side (masks follow the same crop)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io import IMAGE_READ_ERRORS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

#: What a broken image (loftup.io's list) or annotation file (json, pycocotools, numpy) raises.
READ_ERRORS = (*IMAGE_READ_ERRORS, KeyError, TypeError, IndexError)


def list_images(root: str | os.PathLike, extensions=IMAGE_EXTENSIONS) -> list[Path]:
    """Every image file under ``root`` (recursively, hidden folders skipped), sorted by path."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.lower().endswith(extensions) and not name.startswith("."):
                found.append(Path(dirpath) / name)
    return sorted(found)


@dataclass(frozen=True)
class SquareCrop:
    """The centred square ``box`` (left, top, right, bottom) of an image, resized to ``size``."""

    box: tuple[int, int, int, int]
    size: int

    @classmethod
    def centred(cls, width: int, height: int, size: int) -> SquareCrop:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return cls((left, top, left + side, top + side), size)


def load_square(path: str | os.PathLike, size: int) -> tuple[torch.Tensor, SquareCrop]:
    """The image's centred square resized to ``size`` x ``size``: uint8 (3, size, size), and the crop."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        crop = SquareCrop.centred(img.width, img.height, size)
        img = img.resize((size, size), Image.BICUBIC, box=crop.box)
        array = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), crop


def crop_mask(mask: np.ndarray, crop: SquareCrop) -> np.ndarray:
    """A full-image boolean mask (H0, W0) -> the crop's (size, size) mask (area-weighted, >= 50%)."""
    from PIL import Image

    img = Image.fromarray(mask.astype(np.uint8) * 255)
    small = img.resize((crop.size, crop.size), Image.BOX, box=crop.box)
    return np.asarray(small) >= 128
