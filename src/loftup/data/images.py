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
    """The centred square ``box`` (left, top, right, bottom) of an image, resized to ``size``;
    ``image``: that image's (width, height), where known."""

    box: tuple[int, int, int, int]
    size: int
    image: tuple[int, int] | None = None

    @classmethod
    def centred(cls, width: int, height: int, size: int) -> SquareCrop:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return cls((left, top, left + side, top + side), size, (width, height))


def load_square(path: str | os.PathLike, size: int) -> tuple[torch.Tensor, SquareCrop]:
    """The image's centred square resized to ``size`` x ``size``: uint8 (3, size, size), and the crop."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            crop = SquareCrop.centred(img.width, img.height, size)
            img = img.resize((size, size), Image.BICUBIC, box=crop.box)
            array = np.asarray(img, dtype=np.uint8)
    except Image.DecompressionBombError as e:  # not an OSError: one of READ_ERRORS instead
        raise ValueError(f"{e} Pillow refuses images this large") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), crop


def crop_mask(mask: np.ndarray, crop: SquareCrop) -> np.ndarray:
    """A full-image boolean mask (H0, W0) -> the crop's (size, size) mask (area-weighted, >= 50%).

    A mask made at another resolution of the image (images resized after their masks were
    made) is cropped to its own centred square, the same part of the picture; one of another
    aspect ratio is not the image's: a ValueError names both sizes.
    """
    from PIL import Image

    h, w = mask.shape
    if crop.image is not None and (w, h) != crop.image:
        width, height = crop.image
        if abs(w * height - h * width) > (w + h + width + height) / 2:  # beyond rounding
            raise ValueError(
                f"its masks are {w}x{h} px but the image is {width}x{height} px, another aspect "
                "ratio: they belong to another picture"
            )
        crop = SquareCrop.centred(w, h, crop.size)
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    small = img.resize((crop.size, crop.size), Image.BOX, box=crop.box)
    return np.asarray(small) >= 128
