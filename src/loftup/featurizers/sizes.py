"""Image sizes for a backbone: the one policy for sizes that are not a multiple of the patch.

Policy: the image the backbone sees is **resized** (bilinear, antialiased) to the nearest
multiple of the patch size in each direction (at least one patch), never cropped or padded. The
low-resolution grid then covers the whole image exactly, which is what the upsampler assumes: it
places the grid's tokens evenly over the full guidance image. A crop would drop a border the
grid is believed to cover, and padding would add a border that is not in the guidance image;
both shift the features against the image. Positional embeddings are interpolated to the grid.

Every part of the package (featurizers, :func:`loftup.upsample`, training, evaluation) goes
through these functions, so one image gives one grid everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UsageError
from ..finite import all_finite


def snap_to_patches(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """(height, width) rounded to the nearest multiples of ``patch_size`` (at least one patch).

    Halves round up: 21 px with patch 14 -> 28 px, 20 px -> 14 px.
    """
    if patch_size < 1:
        raise UsageError(f"patch_size must be >= 1, got {patch_size}")
    if height < 1 or width < 1:
        raise UsageError(
            f"image size must be positive, got {height}x{width}; pass an image at least 1 px "
            "high and wide"
        )

    def snap(n: int) -> int:
        return max(1, (2 * n + patch_size) // (2 * patch_size)) * patch_size

    return snap(height), snap(width)


def shorter_side_to(height: int, width: int, short: int) -> tuple[int, int]:
    """(height, width) scaled so that the shorter side is ``short``, aspect ratio kept (rounded)."""
    if short < 1:
        raise UsageError(f"size must be >= 1, got {short}")
    scale = short / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def backbone_input_size(
    height: int, width: int, patch_size: int, short_side: int | None = 224
) -> tuple[int, int]:
    """Size the backbone sees for an image of (height, width): shorter side ``short_side``
    (None: the image's own size), then snapped to the patch grid (:func:`snap_to_patches`)."""
    if short_side is not None:
        height, width = shorter_side_to(height, width, short_side)
    return snap_to_patches(height, width, patch_size)


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, *size), bilinear with antialiasing; unchanged if already that size.

    CUDA's antialiased kernel refuses to shrink an axis by more than about 94x (190x for one
    axis: its filter no longer fits in shared memory), a 1-pixel-wide output of a large image or
    a small ``size`` of a photo: such a resize is computed on the CPU (the same numbers) and
    moved back."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    try:
        return _resize(images, size)
    except RuntimeError as e:
        if images.device.type == "cpu" or "shared memory" not in str(e):
            raise
    return _resize(images.cpu(), size).to(images.device)


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if images.device.type == "cpu" and images.dtype in (torch.float16, torch.bfloat16):
        # torch's antialiased resize has no half-precision kernel on the CPU (a
        # NotImplementedError): computed in float32, then rounded to the images' precision
        return _resize(images.float(), size).to(images.dtype)
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def check_backbone_batch(images: torch.Tensor, device: torch.device | None = None) -> None:
    """A :class:`UsageError` unless ``images`` (what a featurizer is called on) is a
    floating-point batch (B, 3, H, W) on ``device`` (the backbone's); one image without its
    batch axis, or channels last, is told the fix, and so are integer pixels (uint8 0-255
    values were cast to float and ran as if normalised, without a word) and images on another
    device than the backbone (torch's error came from inside its first layer)."""
    shape = tuple(images.shape)
    if len(shape) == 4 and shape[1] == 3:
        if not images.is_floating_point():
            raise UsageError(
                f"a backbone takes floating-point images, got "
                f"{str(images.dtype).removeprefix('torch.')} {shape}; pass "
                "featurizer.normalize(images01) of RGB values in [0, 1] (uint8 pixels: "
                "images.float() / 255)"
            )
        if device is not None and images.device != device:
            raise UsageError(
                f"the images are on {images.device}, the backbone on {device}; move them there "
                f"with images.to({str(device)!r}) (or the backbone with "
                f".to({str(images.device)!r}))"
            )
        return
    if len(shape) == 3 and shape[0] == 3:
        fix = "one image needs its batch axis: image[None]"
    elif len(shape) == 4 and shape[-1] == 3:
        fix = "it is channels last: images.permute(0, 3, 1, 2)"
    else:
        fix = "pass RGB images normalised by featurizer.normalize"
    raise UsageError(f"a backbone takes an image batch (B, 3, H, W), got {shape}; {fix}")


def check_finite_images(images: torch.Tensor) -> None:
    """A :class:`UsageError` where the images a backbone is given (after
    :func:`to_patch_multiple`) hold a NaN or an infinity: one such pixel made every feature of
    its image NaN without a word, and the upsampler then blamed the features. On the CPU only:
    on a GPU the answer would wait for all the work queued before it."""
    if images.device.type == "cpu" and not all_finite(images):
        bad = (~torch.isfinite(images)).flatten(1).any(1).nonzero()[:, 0].tolist()
        which = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise UsageError(
            f"the images given to the backbone contain NaN or Inf values (at batch index "
            f"{which} of {len(images)}; one makes every feature of its image NaN): check how "
            "they were read and normalised (a TIFF's no-data pixels are NaN: fill them)"
        )


def to_patch_multiple(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, H', W') with H', W' from :func:`snap_to_patches`."""
    return resize_images(images, snap_to_patches(*images.shape[-2:], patch_size))
