"""Reading images from disk the way a user expects them to look.

EXIF orientation is applied (a damaged EXIF block: turned by the Orientation it still
records, or as stored where it cannot be read at all, with a warning naming the file);
grayscale, palette, RGBA (composited over white), CMYK and 16-bit images become RGB. :func:`load_image` gives an 8-bit PIL image, :func:`load_image_tensor` a
float tensor (3, H, W) in [0, 1] that keeps the full precision of 16-bit grayscale files
(Pillow itself reads 16-bit colour files as 8-bit). A float image is taken as [0, 1] and a
32-bit integer one as 16-bit; one whose values say otherwise (0-255 floats, 8-bit values in 32
bits) is refused, never read as a white or black picture. A file that cannot be read raises
:class:`ImageReadError` naming it. Images already in memory (PIL, numpy, torch) are read by
:func:`~loftup.image_input.to_tensor` (importable from here).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import exif
from .errors import LoftUpError, PathPermissionError, UsageError
from .image_input import PIXEL_MAX, ImageInputError, to_tensor  # noqa: F401  (importable from here)
from .listing import special_kind, where_it_leads
from .paths import check_visible
from .read_refusal import read_refused

if TYPE_CHECKING:
    from PIL import Image

#: File name endings taken as images when a folder or glob is expanded.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


#: What reading a damaged image file raises: PIL's UnidentifiedImageError and "image file is
#: truncated" are OSErrors; a broken header can be a SyntaxError or a ValueError; a file cut
#: short can end in an EOFError. Every image reader of the package catches these (the training
#: data adds what broken annotations raise).
IMAGE_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


class ImageReadError(LoftUpError, ValueError):
    """A file is missing, not an image, truncated, or in a mode that cannot be converted."""


class ImagePermissionError(ImageReadError, PathPermissionError):
    """An image file this user may not read (:func:`loftup.read_refusal.read_refused`): an
    :class:`ImageReadError`, so that a run skipping unreadable images skips it with that
    reason, and a :class:`PathPermissionError`."""


#: How ``loftup upsample`` and Python read an image above Pillow's limit (ImageTooLargeError).
UPSAMPLE_FIX = (
    "loftup upsample --max-image-pixels N (0: no limit), "
    "or loftup.io.set_max_image_pixels(N) in Python"
)


class ImageTooLargeError(ImageReadError):
    """An image above Pillow's decompression-bomb limit; ``reason``: Pillow's message. Made
    from its message alone, as every LoftUpError (a DataLoader remakes a worker's so);
    :meth:`of` writes it with the fix of the command that read the image."""

    reason = ""

    @classmethod
    def of(cls, path, reason: str, fix: str = UPSAMPLE_FIX) -> ImageTooLargeError:
        # Pillow says twice its MAX_IMAGE_PIXELS, a float for an odd limit: "limit of 1.0
        # pixels" for --max-image-pixels 1
        reason = re.sub(r"\b(\d+)\.0 pixels\b", r"\1 pixels", reason)
        reason = re.sub(r"\b1 pixels\b", "1 pixel", reason)
        e = cls(f"cannot read image {path}: {reason} If you trust the file, raise the limit: {fix}")
        e.reason = reason
        return e


def _pillow_limit(limit: int | None):
    """Pillow's MAX_IMAGE_PIXELS for reading up to ``limit`` pixels (None: any)."""
    number = isinstance(limit, (int, float)) and not isinstance(limit, bool)
    if limit is not None and not (number and limit >= 1):  # NaN, "1e9" and True too
        raise UsageError(f"limit must be >= 1 pixel, or None for any size; got {limit!r}")
    # Pillow refuses above twice this (an int when it can be, for its message)
    return None if limit is None else (limit // 2 if limit % 2 == 0 else limit / 2)


def set_max_image_pixels(limit: int | None) -> None:
    """Read images of up to ``limit`` pixels (None: any size), for this process.

    By default Pillow refuses images above about 179 million pixels (and warns above half
    that), a guard against decompression bombs in untrusted files; an aerial or scanned image
    you trust can be larger, and the upsampler handles any size.
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = _pillow_limit(limit)
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@contextlib.contextmanager
def max_image_pixels(limit: int | None):
    """Within it, images of up to ``limit`` pixels (None: any size) are read, as after
    :func:`set_max_image_pixels`; the process's limit is put back after. For the thread that
    reads (the limit is Pillow's, for the whole process): a training dataset's reads, in
    whichever process a DataLoader runs them."""
    from PIL import Image

    pillow = _pillow_limit(limit)
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = pillow
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def _open(path: str | os.PathLike):
    """The decoded PIL image with EXIF orientation applied (:func:`loftup.exif.upright`), the sample
    depth its file declares (:func:`_declared_depth`, which the turned copy no longer tells),
    and the orientation applied (1: none)."""
    from PIL import Image

    path = Path(os.fspath(path)).expanduser()  # "~/photo.jpg", as the command line reads it
    if not os.path.isfile(path):  # os.path: pathlib's raises where a folder is not searchable
        check_visible(path, "image")  # the folder not searchable named (one file's stat)
        raise ImageReadError(_not_a_file(path))

    def upright(img):
        img.load()
        turned, orientation = exif.upright(img, path)
        return turned, _declared_depth(img), orientation

    try:
        # a name, not a Path: Pillow before 10.3 resolves a Path, one more stat of every image
        with Image.open(os.fspath(path)) as img:
            if not exif.turned_by_a_map(img):
                return upright(img)
        with open(path, "rb") as f, Image.open(f) as img:  # read from a file: no map
            return upright(img)
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError.of(path, str(e)) from None
    except IMAGE_READ_ERRORS as e:  # UnidentifiedImageError is an OSError
        refused = read_refused(path, e, "image", ImagePermissionError)  # not "Permission denied"
        raise refused or ImageReadError(f"cannot read image {path}: {_why(path, e)}") from None


def _why(path: Path, e: BaseException) -> str:
    """Why PIL could not read ``path``: an empty file said as such (Pillow's "cannot identify
    image file" read as a format it does not know), else its message (:func:`_without`)."""
    with contextlib.suppress(OSError):
        if os.path.getsize(path) == 0:
            return "the file is empty (0 bytes)"
    return _without(path, e)


def _without(path: Path, e: BaseException) -> str:
    """``e``'s message less the path it names (Pillow's "cannot identify image file '...'",
    an OSError's "Permission denied: '...'"), which the line already begins with. Pillow
    10.3 to 11 name it by its real path (a relative one made absolute, a link its target):
    that form is taken out too."""
    text = str(e)
    for named in dict.fromkeys([str(path), os.path.realpath(path)]):
        quoted = repr(named)
        text = text.replace(f": {quoted}", "").replace(f" {quoted}", "")
    return text.removesuffix(f": {path}")  # as an OSError ends, unquoted: never a word of it


def _not_a_file(path: Path) -> str:
    """Why ``path``, no regular file, is no image: missing, a folder, a link to nothing or
    round a loop of links, or a pipe, socket or device (all were "no such image file", a
    folder or a pipe that is there too)."""
    if os.path.isdir(path):
        return f"{path} is a folder, not an image file; pass an image in it"
    if os.path.islink(path) and not os.path.exists(path):
        return f"{path} is {where_it_leads(path)}; pass the image itself"
    if os.path.exists(path):
        kind = special_kind(os.stat(path).st_mode)
        return f"{path} is not a regular file ({kind}); save the image to a file first"
    return f"no such image file: {path}"


def _declared_depth(img) -> tuple[int | None, bool]:
    """(bits per sample, signed) of a Pillow mode "I" (32-bit integer) image's file: a TIFF's
    BitsPerSample and SampleFormat, 16 unsigned for the PNG and PGM files Pillow reads as "I",
    (None, False) when nothing says (an image made in memory)."""
    tags = getattr(img, "tag_v2", None)
    if tags is not None and 258 in tags:  # BitsPerSample: one per channel, or a single value
        bits, form = tags[258], tags.get(339, 1)  # SampleFormat 2: signed integers
        bits = max(bits) if isinstance(bits, tuple) else int(bits)
        return bits, 2 in (form if isinstance(form, tuple) else (form,))
    return (16 if img.format in ("PNG", "PPM") else None), False


#: How to make an image of integers or floats one loftup reads, in words.
_SAVE_FIX = "save it as an 8-bit (0-255) or 16-bit (0-65535) image"


def _gray_float(img, what) -> np.ndarray:
    """A Pillow mode "F" image -> (H, W) float32 in [0, 1]: its values are taken as [0, 1],
    give or take :data:`loftup.checks.PIXEL_SLACK` (a resampling's overshoot, clipped); NaN,
    infinite and further values (0-255 ones, say) are refused, never clipped to white."""
    from .checks import PIXEL_SLACK

    gray = np.asarray(img, dtype=np.float32)
    bad = int((~np.isfinite(gray)).sum())  # "no data" in a float TIFF: no colour to clip it to
    if bad:
        raise ImageReadError(
            f"cannot read {what}: {bad} of its pixels are NaN or infinite (no value); "
            "fill them with a value in [0, 1] first"
        )
    lo, hi = (float(gray.min()), float(gray.max())) if gray.size else (0.0, 0.0)
    if not -PIXEL_SLACK <= lo <= hi <= 1 + PIXEL_SLACK:
        raise ImageReadError(
            f"cannot read {what}: a floating-point image holds values in [0, 1], this "
            f"one's run from {lo:.4g} to {hi:.4g}; scale them to [0, 1] (divide 0-255 values "
            f"by 255) or {_SAVE_FIX}"
        )
    return np.clip(gray, 0, 1)


def _gray_int(img, what, depth: tuple[int | None, bool]) -> np.ndarray:
    """A Pillow mode "I" image (16-bit PNG or PGM, a 16- or 32-bit integer TIFF) -> (H, W)
    float32 in [0, 1], read as 16-bit (0-65535); ``depth``: :func:`_declared_depth`. Values
    outside 0-65535 are refused, and so are 8-bit ones (at most 255) in a file of more than 16
    bits or of unknown depth (as 16-bit a near-black picture, as 8-bit a guess), and signed
    16-bit files (white is 32767 or anything: as 16-bit they would be half as bright)."""
    bits, signed = depth
    values = np.asarray(img)
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    kind = f"{'signed ' * signed}{bits}-bit integer" if bits else "integer"
    if signed and bits is not None and bits <= 16:
        raise ImageReadError(
            f"cannot read {what}: its {kind} pixels (from {lo} to {hi}) have no white level "
            f"loftup knows; scale them and {_SAVE_FIX}"
        )
    if lo < 0 or hi > 65535:
        raise ImageReadError(
            f"cannot read {what}: its {kind} pixels run from {lo} to {hi}, outside "
            f"the 16-bit range 0-65535 loftup reads; scale them and {_SAVE_FIX}"
        )
    if (bits is None or bits > 16) and 0 < hi <= 255:
        raise ImageReadError(
            f"cannot read {what}: its {kind} pixels run from {lo} to {hi}, 8-bit "
            f"values in a wider image (read as 16-bit they would be near black); {_SAVE_FIX}"
        )
    return values.astype(np.float32) / 65535.0


def _to_rgb_array(img, path=None, depth: tuple[int | None, bool] | None = None) -> np.ndarray:
    """A PIL image of any mode -> (H, W, 3) float32 in [0, 1] (``path``: its file, named in
    errors; ``depth``: the sample depth the file declared, :func:`_declared_depth` of ``img``
    if None)."""
    what = "the image" if path is None else f"image {path}"
    mode = img.mode
    if _eight_bit(img):
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    if mode.startswith("I;16"):  # 16-bit grayscale (PNG, TIFF)
        gray = np.asarray(img, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=2)
    if mode in ("I", "F"):
        if mode == "F":
            gray = _gray_float(img, what)
        else:
            gray = _gray_int(img, what, _declared_depth(img) if depth is None else depth)
        return np.repeat(gray[..., None], 3, axis=2)
    # what is left has an alpha channel: P with transparency, PA, LA, La, RGBa and RGBA
    rgba = np.asarray(img if mode == "RGBA" else img.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + (1.0 - alpha)  # over white


def _eight_bit(img) -> bool:
    """Whether ``img`` is read as its 8-bit RGB conversion (no alpha to composite, no 16-bit
    or float samples): most photos."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F", "PA", "LA", "La", "RGBa", "RGBA"):
        return False
    return not (mode == "P" and "transparency" in img.info)


def load_image_tensor(path: str | os.PathLike) -> torch.Tensor:
    """The image at ``path`` as RGB (3, H, W) float32 in [0, 1], upright."""
    img, depth, _ = _open(path)
    if _eight_bit(img):  # 8-bit until the one float copy: half the memory, a third the time
        rgb = np.asarray(img.convert("RGB"))
        del img  # the decoded file (3 bytes a pixel)
        out = np.empty((3, *rgb.shape[:2]), dtype=np.float32)
        out[...] = rgb.transpose(2, 0, 1)
        out /= 255.0  # as _to_rgb_array divides: the same values
        return torch.from_numpy(out)
    array = _to_rgb_array(img, path, depth)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def load_image(path: str | os.PathLike) -> Image.Image:
    """The image at ``path`` as an upright 8-bit RGB PIL image."""
    return _load_image(path)[0]


def _load_image(path: str | os.PathLike) -> tuple[Image.Image, int]:
    """:func:`load_image`'s image, and the EXIF orientation applied to it (1: none)."""
    from PIL import Image

    img, depth, orientation = _open(path)
    if img.mode == "RGB":
        return img, orientation
    array = np.round(_to_rgb_array(img, path, depth) * 255.0).astype(np.uint8)
    return Image.fromarray(array, mode="RGB"), orientation
