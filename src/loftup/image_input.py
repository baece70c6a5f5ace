"""Images already in memory as the RGB (3, H, W) float tensor in [0, 1] the upsampler reads:
a PIL image, a numpy array or a tensor, with what to do for a shape or dtype no image has."""

from __future__ import annotations

import contextlib
import contextvars
import os

import numpy as np
import torch

from .errors import UsageError


class ImageInputError(UsageError, TypeError):
    """An image :func:`to_tensor` cannot read (a shape or dtype no image has, an object that
    is none): a :class:`UsageError` (so a ValueError) and a TypeError, as it was before."""


def _array_fix(shape: tuple) -> str:
    """How to make an array of ``shape`` one :func:`to_tensor` reads, in words."""
    if len(shape) == 3 and shape[-1] == 4:
        return "drop the alpha channel (image[..., :3])"
    if len(shape) == 3 and shape[0] in (1, 3):
        return "it is channels first: image.transpose(1, 2, 0)"
    if len(shape) == 4:
        return _batch_fix(shape)
    return "pass RGB or grayscale pixels"


def _batch_fix(shape: tuple) -> str:
    """How to pass a numpy batch of ``shape`` (B, ...) as the (B, 3, H, W) tensor a batch is,
    by which axis holds the channels: the second (channels first: as it is), or the last
    (channels last: moved; the permute said of any batch turned a channels-first one into
    (B, W, 3, H)). Through ``np.ascontiguousarray``: torch.from_numpy refuses an array of
    negative strides (a BGR batch flipped to RGB, ``a[..., ::-1]``)."""
    tensor = "pass a batch as a (B, 3, H, W) tensor"
    if shape[1] in (1, 3):
        return f"{tensor}: torch.from_numpy(np.ascontiguousarray(a))"
    if shape[-1] in (1, 3):
        return (
            f"{tensor}: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2) (it is "
            "channels last)"
        )
    if shape[-1] == 4:
        return (
            f"{tensor}: torch.from_numpy(np.ascontiguousarray(a[..., :3])).permute(0, 3, 1, 2) "
            "(RGBA, channels last)"
        )
    if shape[1] == 4:
        return f"{tensor}: torch.from_numpy(np.ascontiguousarray(a[:, :3])) (RGBA, channels first)"
    return f"{tensor} of RGB or grayscale pixels"


def _object_fix(image) -> str:
    """What to do with ``image``, an object that is no image :func:`to_tensor` reads: open
    encoded bytes or a file object with PIL (``numpy.asarray`` of them, once said of any, is
    an array of shape () or an object), pass an image where there is None (what cv2.imread
    returns for a file it cannot read), or convert what numpy can."""
    if image is None:
        return (
            "pass the image itself (None is what a failed load returns: cv2.imread of a "
            "missing or unreadable file, say), or its path"
        )
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "open an encoded image's bytes with PIL.Image.open(io.BytesIO(data))"
    if hasattr(image, "read"):
        return "open an image file object with PIL.Image.open(f)"
    if isinstance(image, (str, os.PathLike)):  # to_tensor reads images in memory only
        return (
            "to_tensor takes an image in memory; read a file with "
            "loftup.io.load_image_tensor(path), or pass the path to loftup.upsample(path, ...)"
        )
    if isinstance(image, (list, tuple)) or hasattr(image, "__array__"):  # nested numbers
        return _nested_fix(image)
    return "pass one of those"


def _nested_fix(image) -> str:
    """How to convert nested numbers ``image`` into an array :func:`to_tensor` reads: through
    numpy.asarray with the dtype its values fit (plain ints became int64, refused), or why it
    is no image (a flat sequence, ragged rows)."""
    try:
        a = np.asarray(image)
    except (ValueError, TypeError):
        a = None
    if a is None or a.dtype.kind not in "biuf":
        return "an image is nested rows of numbers, (H, W) or (H, W, 3), of one length each"
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (1, 3)):
        return (
            f"as an array it has shape {a.shape}, which no image has: pass rows of pixels, "
            "(H, W) or (H, W, 3)"
        )
    if a.dtype.kind == "f":
        return "convert it with numpy.asarray(image) (floats in [0, 1])"
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for kind, top in (("uint8", 255), ("uint16", 65535)):
        if 0 <= lo and hi <= top:
            return f"convert it with numpy.asarray(image, dtype=numpy.{kind}) (0-{top} values)"
    return (
        f"its values run from {lo} to {hi}, no pixels' range: scale them to [0, 1] floats, "
        "numpy.asarray(image, dtype=numpy.float32) / MAX"
    )


def _tensor_fix(shape: tuple) -> str:
    """How to make a tensor of ``shape`` one :func:`to_tensor` reads, in words."""
    if len(shape) == 3 and shape[-1] in (1, 3):
        return "it is channels last: image.permute(2, 0, 1)"
    if len(shape) == 3 and shape[0] == 4:
        return "drop the alpha channel (image[:3])"
    if len(shape) == 2:
        return "give a grayscale one as (1, H, W): image[None]"
    return "pass RGB or grayscale pixels, channels first"


#: Integer pixels, by dtype, and the value that is full scale (1.0): 8-bit, and 16-bit as a
#: 16-bit file reads (cv2's IMREAD_UNCHANGED and tifffile give such arrays).
PIXEL_MAX = {torch.uint8: 255.0, torch.uint16: 65535.0}


def _refuse_dtype(dtype: str) -> None:
    """The :class:`ImageInputError` of pixels of ``dtype``, which no image has: of one image
    (:func:`to_tensor`) or of a batch (:func:`loftup.checks.check_images`), in the same words."""
    raise ImageInputError(
        f"expected uint8, uint16 or floating point pixels, got {dtype}; pass 0-255 values "
        "as uint8, 0-65535 ones as uint16, or floats in [0, 1] (image / 255)"
    )


#: What each EXIF Orientation (2-8) asks of a viewer, to show the stored pixels upright.
ORIENTATIONS = {
    2: "mirrored left to right",
    3: "rotated 180 degrees",
    4: "flipped top to bottom",
    5: "mirrored and rotated 90 degrees counter-clockwise",
    6: "rotated 90 degrees clockwise",
    7: "mirrored and rotated 90 degrees clockwise",
    8: "rotated 90 degrees counter-clockwise",
}


def warn_stored_orientation(image, stacklevel: int = 2) -> None:
    """A warning where PIL image ``image`` records an EXIF Orientation other than 1: its pixels
    are read as stored (a user's masks or labels may be of those), not turned upright as
    :func:`loftup.io.load_image` turns a file's, so its features are turned from the same
    photo's read from its path. Nothing for any other image, or one whose EXIF block cannot be
    read (``stacklevel``: :func:`warnings.warn`'s, counted from the caller)."""
    import warnings

    from .exif import EXIF_ERRORS

    if not hasattr(image, "getexif"):
        return
    try:
        orientation = image.getexif().get(0x0112, 1)
    except EXIF_ERRORS:
        return
    if orientation in ORIENTATIONS:
        warnings.warn(
            f"the PIL image records EXIF Orientation {orientation} (to be shown "
            f"{ORIENTATIONS[orientation]}), which is not applied to an image in memory: its "
            "features are of the pixels as stored, turned from those of the same photo read "
            "from its path; pass PIL.ImageOps.exif_transpose(image) to have it upright as "
            "loftup reads a path, or the path (keep it as it is where your masks or labels are "
            "of the stored pixels)",
            stacklevel=stacklevel + 1,
        )


def to_tensor(image) -> torch.Tensor:
    """A PIL image, an (H, W) / (H, W, 3) numpy array (uint8, uint16, or float in [0, 1]) or a
    (3, H, W) tensor (the same) -> RGB (3, H, W) float32 in [0, 1]. Anything else: an
    :class:`ImageInputError` saying how to make it one."""
    if isinstance(image, torch.Tensor):
        t = image
    elif isinstance(image, np.ndarray):
        a = image[..., None] if image.ndim == 2 else image
        if a.ndim != 3 or a.shape[-1] not in (1, 3):
            raise ImageInputError(
                f"expected an (H, W) or (H, W, 3) array, got shape {image.shape}; "
                f"{_array_fix(image.shape)}"
            )
        if a.dtype.kind not in "biufc":  # torch.from_numpy's TypeError ("can't convert ...
            _refuse_dtype(str(a.dtype))  # numpy.object_"): np.array of images of two sizes
        # in this machine's byte order: a big-endian array (np.asarray of Pillow's "I;16B"
        # image, a FITS file's) was torch.from_numpy's ValueError
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
        t = torch.from_numpy(a).permute(2, 0, 1)
    elif hasattr(image, "mode"):  # PIL
        from .io import _to_rgb_array  # read as a file's pixels are

        t = torch.from_numpy(np.ascontiguousarray(_to_rgb_array(image))).permute(2, 0, 1)
    else:
        raise ImageInputError(
            f"expected a path, PIL image, numpy array or tensor, got "
            f"{'None' if image is None else type(image).__name__}; {_object_fix(image)}"
        )
    if t.dtype in PIXEL_MAX:
        t = t.float() / PIXEL_MAX[t.dtype]
    elif not t.is_floating_point():
        _refuse_dtype(str(t.dtype).removeprefix("torch."))
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ImageInputError(
            f"expected a (3, H, W) image tensor, got shape {tuple(t.shape)}; "
            f"{_tensor_fix(tuple(t.shape))}"
        )
    return t.float().expand(3, -1, -1).contiguous()


#: The batch whose pixels :func:`~loftup.checks.check_images` need not scan again in this
#: call (:func:`pixels_checked`)
_CHECKED: contextvars.ContextVar = contextvars.ContextVar("pixels_checked", default=None)


@contextlib.contextmanager
def pixels_checked(images: torch.Tensor):
    """Within the block, ``images`` (this very tensor) passes
    :func:`~loftup.checks.check_images` without its pixels scanned again (a pass over each):
    :func:`loftup.upsample` checked them before it calls the pipeline."""
    token = _CHECKED.set(images)
    try:
        yield
    finally:
        _CHECKED.reset(token)
