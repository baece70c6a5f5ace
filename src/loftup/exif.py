"""EXIF orientation, as :mod:`loftup.io` reads images: the picture turned upright, and kept as
stored where its EXIF block is damaged."""

from __future__ import annotations

import warnings
from pathlib import Path


def upright(img, path: Path):
    """``img`` turned as its EXIF Orientation says, and that orientation (1: none). A damaged
    EXIF block (Pillow raises struct.error, TypeError and more on some) is no reason to lose
    pixels that decoded fine: the image as stored (1), and a warning naming the file."""
    from PIL import ImageOps

    try:
        orientation = img.getexif().get(0x0112, 1)
        return ImageOps.exif_transpose(img), orientation if orientation in range(1, 9) else 1
    except Exception as e:  # noqa: BLE001  (whatever Pillow's EXIF parser raises)
        kind = type(e).__qualname__  # struct.error, not "error"
        kind = kind if type(e).__module__ == "builtins" else f"{type(e).__module__}.{kind}"
        warnings.warn(
            f"{path}: its EXIF block is damaged ({kind}: {e}); "
            "the image is read as stored, without the orientation it may record",
            stacklevel=4,
        )
        return img.copy(), 1


def turned_by_a_map(img) -> bool:
    """Whether Pillow would read the file of ``img`` wrongly through a memory map: an
    uncompressed TIFF whose Orientation (5 to 8) turns it a quarter turn, of a mode Pillow
    maps (grayscale, 16-bit grayscale, RGBA, ...), is mapped with the turned size (its width
    and height swapped) and comes out scrambled (Pillow 13). Read from an open file, which
    is never mapped, it is decoded, then turned."""
    tags = getattr(img, "tag_v2", None)
    return img.format == "TIFF" and tags is not None and tags.get(274) in (5, 6, 7, 8)
