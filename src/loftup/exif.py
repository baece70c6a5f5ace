"""EXIF orientation, as :mod:`loftup.io` reads images: the picture turned upright, also where
its EXIF block is damaged but still tells the orientation."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

from .escaping import printable

#: What Pillow's EXIF parser and writer raise on a damaged block (fuzzed: struct.error,
#: TypeError, ValueError, KeyError, ...); not MemoryError, which is no damage of the file.
EXIF_ERRORS = (
    struct.error, TypeError, ValueError, KeyError, IndexError, SyntaxError, OSError,
    ArithmeticError,
)  # fmt: skip


def transpose(img, orientation: int):
    """A PIL image of stored pixels turned as EXIF ``orientation`` says (as exif_transpose
    turns it); ``img`` itself for 1 or an unknown value."""
    from PIL import Image

    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return img if method is None else img.transpose(method)


def _kind(e: BaseException) -> str:
    kind = type(e).__qualname__  # struct.error, not "error"
    return kind if type(e).__module__ == "builtins" else f"{type(e).__module__}.{kind}"


def upright(img, path: Path):
    """``img`` turned as its EXIF Orientation says, and that orientation (1: none).

    A damaged EXIF block is no reason to lose pixels that decoded fine, nor their
    orientation: Pillow's exif_transpose often fails only after it turned the image, when it
    writes the block back; the orientation it read turns the image then. Only where the
    block cannot be read at all is the image kept as stored (1). Either way a warning names
    the file."""
    from PIL import ImageOps

    try:
        orientation = img.getexif().get(0x0112, 1)
    except EXIF_ERRORS as e:
        warnings.warn(
            printable(
                f"{path}: its EXIF block is damaged ({_kind(e)}: {e}); the image is read as "
                "stored, without the orientation it may record"
            ),
            stacklevel=4,
        )
        return img.copy(), 1
    orientation = orientation if orientation in range(1, 9) else 1
    try:
        return ImageOps.exif_transpose(img), orientation
    except EXIF_ERRORS as e:
        warnings.warn(
            printable(
                f"{path}: its EXIF block is damaged ({_kind(e)}: {e}); the image is turned "
                f"upright by the Orientation it records ({orientation}), the rest of the block "
                "ignored"
            ),
            stacklevel=4,
        )
        turned = transpose(img, orientation)
        turned = turned if turned is not img else img.copy()
        if orientation != 1:
            _forget_orientation(turned.info)
        return turned, orientation


#: An XMP packet's orientation, as an attribute or an element (what exif_transpose removes).
_XMP_ORIENTATION = (r'\s*tiff:Orientation="[0-9]"', r"<tiff:Orientation>[0-9]</tiff:Orientation>")


def _forget_orientation(info: dict) -> None:
    """Drop from a turned image's ``info`` what records its orientation, as exif_transpose
    does for an intact block: the damaged EXIF block, which cannot be written back with
    Orientation 1, and XMP's (a caller saving the image with them, or applying them, turned
    it twice)."""
    import re

    info.pop("exif", None)
    for key in ("XML:com.adobe.xmp", "xmp"):
        value = info.get(key)
        if isinstance(value, (str, bytes)):
            for pattern in _XMP_ORIENTATION:
                pattern = pattern if isinstance(value, str) else pattern.encode()
                value = re.sub(pattern, type(value)(), value)
            info[key] = value


def turned_by_a_map(img) -> bool:
    """Whether Pillow would read the file of ``img`` wrongly through a memory map: an
    uncompressed TIFF whose Orientation (5 to 8) turns it a quarter turn, of a mode Pillow
    maps (grayscale, 16-bit grayscale, RGBA, ...), is mapped with the turned size (its width
    and height swapped) and comes out scrambled (Pillow 13). Read from an open file, which
    is never mapped, it is decoded, then turned."""
    tags = getattr(img, "tag_v2", None)
    return img.format == "TIFF" and tags is not None and tags.get(274) in (5, 6, 7, 8)
