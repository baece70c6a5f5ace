"""What the pipeline's entry points take, read and checked: the device, the precision, the
output and backbone sizes, and the pixels.

Each check raises a :class:`loftup.errors.UsageError` (a ValueError) that says what was wrong
and what to pass instead; :func:`loftup.upsample`, :func:`loftup.load_pipeline` and the command
line call them at their boundary, once, before any weights load.
"""

from __future__ import annotations

import math
import numbers
import os

import torch

from .errors import UsageError
from .featurizers.sizes import backbone_input_size, shorter_side_to
from .image_input import _CHECKED, PIXEL_MAX, _refuse_dtype

Size = int | tuple[int, int] | None


class ImageSizeError(UsageError):
    """One image (or batch) whose size cannot be run with the sizes asked: an output of more
    pixels than a square of side :data:`MAX_OUTPUT_SIDE`, a backbone input of more than
    :data:`MAX_BACKBONE_PATCHES`. A run over many images can skip that one by name."""


#: An output may hold up to MAX_OUTPUT_SIDE x MAX_OUTPUT_SIDE pixels (4.3 billion; its guidance
#: image alone is 52 GB); ``backbone_size`` is at most this. A size meant for another axis, or a
#: shorter side on a very elongated image, asked for terabytes that only the allocator refused,
#: deep inside torch.
MAX_OUTPUT_SIDE = 1 << 16

#: The most patches the backbone may be given for an image resized to ``backbone_size``: a
#: 1x4000 image at 224 became 224x896000 pixels, a million patches (an attention that never
#: ends); 65536 allows an aspect ratio of 256:1 at 224.
MAX_BACKBONE_PATCHES = 1 << 16

#: The precisions the pipeline runs in, by name (``as_dtype`` also takes fp32 / fp16 / half / bf16).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}


def as_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``"float32"``, ``"bfloat16"``, ``"float16"`` (or fp32, bf16, fp16, half, or the torch
    dtype itself) -> the torch dtype; None -> float32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
    elif isinstance(dtype, str):
        name = dtype.lower().removeprefix("torch.")
        if _ALIASES.get(name, name) in DTYPES:
            return DTYPES[_ALIASES.get(name, name)]
    raise UsageError(f"unknown precision {dtype!r}; choose one of {', '.join(DTYPES)}")


def output_size(size: Size, height: int, width: int) -> tuple[int, int]:
    """The (H, W) of the upsampled features for an image of (height, width).

    ``size``: None -> the image's own size; N -> shorter side N, aspect ratio kept; (H, W) -> as is.
    """
    check_size(size)
    if size is None:
        return height, width
    if not isinstance(size, numbers.Integral):
        return int(size[0]), int(size[1])
    try:
        return shorter_side_to(height, width, int(size))
    except OverflowError:  # 10**400: past a float, and past any output
        raise ImageSizeError(
            f"size {shown(size)} is too large for any output; pass a smaller size"
        ) from None


def check_output_size(size: Size, height: int, width: int) -> tuple[int, int]:
    """:func:`output_size`, or an :class:`ImageSizeError` where it holds more pixels than a
    square of side :data:`MAX_OUTPUT_SIDE`: what a caller that computes the features in memory (not
    streamed to a file, which a run over many images checks against the disk) asks first."""
    out = output_size(size, height, width)
    if out[0] * out[1] > MAX_OUTPUT_SIDE**2:
        raise ImageSizeError(
            f"size {shown(size)} asks for {out[0]}x{out[1]} features of a {height}x{width} image, "
            f"over {MAX_OUTPUT_SIDE} x {MAX_OUTPUT_SIDE} px; pass a smaller size (or None: the "
            "image's own)"
        )
    return out


def check_size(size) -> None:
    """A :class:`UsageError` unless ``size`` is an output size :func:`output_size` takes."""
    if size is None or (isinstance(size, numbers.Integral) and not isinstance(size, bool)):
        ok = size is None or size >= 1
    else:  # a string is a sequence too: "32" was read as 3x2
        ok = (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in size
            )
        )
    if not ok:
        raise UsageError(
            "size is None (the image's own), N (shorter side N >= 1) or (H, W) (positive "
            f"integers), got {size!r}"
        )


def resolve_device(
    device: str | torch.device | None, local_rank: int | None = None
) -> torch.device:
    """The device to run on, or a :class:`UsageError` (a ValueError) saying why it cannot be used.

    ``None``/``"auto"``: CUDA when available, else the CPU. Device types other than cpu and
    cuda (mps, xpu, meta...) are refused: loftup's kernels and tests cover those two.
    ``local_rank`` (a torchrun process's rank on its node): a CUDA device is that process's own
    GPU, ``cuda:local_rank`` (NCCL takes one GPU per process), so a node needs a GPU for each
    process it starts.
    """
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":  # mps, xpu, meta...: a device type loftup does not run on
        raise UsageError(
            f"device {device} is not supported: loftup runs on cpu and cuda (cuda:N for GPU N); "
            "use auto, cpu, cuda or cuda:N"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UsageError(
            f"device {device} was asked for, but no CUDA device is available here; use cpu"
        )
    if local_rank is not None:
        device = torch.device("cuda", local_rank)
    if (device.index or 0) >= count:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = f"{count} GPU(s) visible" + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible else "")
        fix = (
            f"start at most {count} process(es) per node (torchrun --nproc_per_node {count})"
            if local_rank is not None
            else ("use cuda:0" if count == 1 else f"use one of cuda:0 to cuda:{count - 1}")
        )
        who = (
            f"the process of local rank {local_rank} needs {device}"
            if local_rank is not None
            else f"device {device} was asked for"
        )
        raise UsageError(f"{who}, but this machine has {seen}; {fix}")
    return device


def check_backbone_size(size, name: str = "backbone_size") -> None:
    """A :class:`UsageError` unless ``size`` is a shorter side the backbone can see: an int
    >= 1, or None (the image's own); ``name``: what the caller calls it (a CLI flag, say)."""
    integer = isinstance(size, numbers.Integral) and not isinstance(size, bool)
    if size is not None and not (integer and 1 <= size <= MAX_OUTPUT_SIDE):
        own = "" if name.startswith("--") else "; None: the image's own"  # no flag value says it
        raise UsageError(
            f"{name} is the shorter side in pixels the backbone sees (1 to {MAX_OUTPUT_SIDE}; "
            f"224 by default{own}), got {shown(size)}"
        )


def backbone_input(
    height: int, width: int, patch_size: int, backbone_size: int | None, name: str = "backbone_size"
):
    """(H, W) the backbone sees for a (height, width) image (:func:`backbone_input_size`), or a
    :class:`UsageError` where the resize to ``backbone_size`` would give it more than
    :data:`MAX_BACKBONE_PATCHES` patches (an elongated image, or a huge ``backbone_size``);
    None (the image's own size, snapped) is taken as asked, and so is a ``backbone_size`` that
    gives no more patches than None would (a large photo at its own shorter side). ``name``:
    what the caller calls ``backbone_size`` (a CLI flag, say)."""
    check_backbone_size(backbone_size, name)  # a FeaturePipeline made by hand is not checked
    bb_h, bb_w = backbone_input_size(height, width, patch_size, backbone_size)
    patches = (bb_h // patch_size) * (bb_w // patch_size)
    if backbone_size is not None and patches > MAX_BACKBONE_PATCHES:
        own_h, own_w = backbone_input_size(height, width, patch_size, None)
        if patches <= (own_h // patch_size) * (own_w // patch_size):
            return bb_h, bb_w
        raise ImageSizeError(
            f"image is {height}x{width} px: at {name} {backbone_size} the backbone would "
            f"see it at {bb_h}x{bb_w} px, {patches} patches of {patch_size} (at most "
            f"{MAX_BACKBONE_PATCHES}); crop it to a less elongated shape or pass a smaller "
            f"{name}" + (" (None: the image's own size)" if name == "backbone_size" else "")
        )
    return bb_h, bb_w


#: How far outside [0, 1] pixel values may lie (a resampling's overshoot): ImageNet-normalised
#: images (about -2.1 to 2.6) and 0-255 values lie further out.
PIXEL_SLACK = 0.25


def check_batch(images: torch.Tensor, channels: tuple[int, ...] = (3,)) -> None:
    """A :class:`UsageError` unless ``images`` is a batch (B, C, H, W), C in ``channels``,
    none of its sides 0; a channels-last batch (B, H, W, 3), a NumPy habit, is told the
    permute that makes it one."""
    shape = tuple(images.shape)
    if len(shape) == 4 and shape[1] in channels and 0 not in shape:
        return
    fix = ""
    if len(shape) == 4 and shape[-1] in channels and shape[1] not in channels:
        fix = "; it is channels last: images.permute(0, 3, 1, 2)"
    elif len(shape) == 4 and shape[1] == 1 and 0 not in shape:
        fix = "; grayscale: images.expand(-1, 3, -1, -1)"
    elif len(shape) == 4 and shape[1] == 4 and 0 not in shape:
        fix = "; RGBA: composite it over a background, or drop the alpha: images[:, :3]"
    elif len(shape) == 4 and shape[1] in channels and shape[0] == 0:
        fix = ": an empty batch; pass at least one image"
    elif len(shape) == 4 and shape[1] in channels:
        fix = ": an empty image; pass images at least 1 px high and wide"
    raise UsageError(
        f"expected RGB images (B, 3, H, W) in [0, 1] with B, H, W >= 1, got {shape}{fix}"
    )


def check_pixels(images: torch.Tensor) -> None:
    """A :class:`UsageError` unless ``images`` hold RGB values in [0, 1] (give or take
    :data:`PIXEL_SLACK`): an ImageNet-normalised or 0-255 image gave wrong features without a
    word (the pipeline normalises them itself), and a NaN one an error about the features."""
    lo, hi = (float(v) for v in torch.aminmax(images))
    if not (math.isfinite(lo) and math.isfinite(hi)):  # aminmax of a NaN image is NaN, NaN
        bad = int((~torch.isfinite(images)).sum())
        raise UsageError(
            f"the image has {bad} NaN or infinite value{'s' * (bad != 1)}: pixels must be RGB "
            "values in [0, 1] (fill or drop the missing pixels before upsampling)"
        )
    if not -PIXEL_SLACK <= lo <= hi <= 1 + PIXEL_SLACK:
        raise UsageError(
            f"expected RGB values in [0, 1], got values from {lo:.4g} to {hi:.4g}: pass the "
            "image before ImageNet normalisation (the pipeline normalises it), 0-255 values "
            "divided by 255 (or as uint8), and no NaN or infinite pixels"
        )


def check_images(images: torch.Tensor, size: Size, *, streamed: bool = False) -> tuple[int, int]:
    """The (H, W) of the features of ``images`` at ``size``, or a :class:`UsageError` where the
    batch cannot be run whatever the models: not (B, 3, H, W) (:func:`check_batch`), pixels of
    another dtype than uint8, uint16 or floating point (the
    :class:`~loftup.image_input.ImageInputError` that :func:`loftup.upsample` gives them, a
    UsageError and a TypeError), floats outside [0, 1]
    (:func:`check_pixels`), an output too large to hold (:func:`check_output_size`; none is
    where it is ``streamed`` tile by tile). What depends on the backbone (its patches,
    :func:`backbone_input`) is checked apart: this is said before any module is converted."""
    check_batch(images)
    if not (images.is_floating_point() or images.dtype in PIXEL_MAX):
        _refuse_dtype(str(images.dtype).removeprefix("torch."))
    h0, w0 = images.shape[-2:]
    out_hw = (output_size if streamed else check_output_size)(size, h0, w0)
    # integers divided by their largest value are in [0, 1]; a batch upsample checked is not
    # scanned again by the pipeline it calls (a pass over every pixel: pixels_checked)
    if images.is_floating_point() and _CHECKED.get() is not images:
        check_pixels(images)
    return out_hw


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether ``a`` and ``b`` are the same device ("cuda" is the current GPU, "cuda:N")."""
    if a.type != b.type:
        return False
    return a.type != "cuda" or (
        (a.index if a.index is not None else torch.cuda.current_device())
        == (b.index if b.index is not None else torch.cuda.current_device())
    )


#: The longest repr :func:`shown` gives as it is.
SHOWN_CHARS = 80


def shown(value) -> str:
    """``value`` in a few words for a one-line error: a module as ``Linear(...)``, a tensor or
    an array by its shape (their reprs run to dozens of lines), anything else by its repr, or
    as ``dict(...)`` where that repr runs over lines or past :data:`SHOWN_CHARS`."""
    if isinstance(value, torch.nn.Module):
        return f"{type(value).__name__}(...)"
    if isinstance(value, torch.Tensor):
        return f"a Tensor of shape {tuple(value.shape)}"
    if isinstance(getattr(value, "shape", None), tuple):  # a NumPy array, say
        return f"an array of shape {value.shape}"
    text = repr(value)
    if "\n" in text or len(text) > SHOWN_CHARS:
        return f"{type(value).__name__}(...)"
    return text
