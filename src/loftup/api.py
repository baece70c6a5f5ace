"""Images in, high-resolution features out: :func:`upsample`, the one-call entry point.

    >>> import loftup
    >>> hr = loftup.upsample("photo.jpg", model="loftup_dinov2s", size=448)   # (384, 448, W)

Sizes: the backbone sees the image with its shorter side at ``backbone_size`` (224, what the
released upsamplers were trained on), snapped to the patch grid (:mod:`loftup.featurizers.sizes`);
the upsampled features have the size ``size`` asks for (default: the image's own size).

The pipeline it runs (a backbone and its upsampler, in a precision) is
:class:`loftup.pipeline.FeaturePipeline`; the checks of its arguments are in
:mod:`loftup.checks`. Both are importable from here too, as they always were.
"""

from __future__ import annotations

import functools
import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

import torch

from .checks import (
    DTYPES,
    PIXEL_SLACK,
    Size,
    as_dtype,
    backbone_input,
    check_backbone_size,
    check_batch,
    check_images,
    check_pixels,
    check_size,
    output_size,
    resolve_device,
    same_device,
    shown,
)
from .errors import UsageError
from .featurizers import Featurizer, check_input_norm
from .image_input import pixels_checked
from .model import LoftUp
from .pipeline import (
    FeaturePipeline,
    build_pipeline,
    check_model,
    load_pipeline,
)
from .pipeline_checks import check_backbone_name, checked_options

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

#: What :func:`upsample` reads as an image: a path, a PIL image, an array or a tensor.
ImageLike = Union[str, os.PathLike, "Image.Image", "np.ndarray", torch.Tensor]

__all__ = [
    "DTYPES",
    "PIXEL_SLACK",
    "FeaturePipeline",
    "Size",
    "as_dtype",
    "build_pipeline",
    "check_backbone_size",
    "check_pixels",
    "check_size",
    "checked_options",
    "clear_cache",
    "load_pipeline",
    "output_size",
    "resolve_device",
    "upsample",
]


@functools.lru_cache(maxsize=1)
def _cached_pipeline(
    key, model, backbone, backbone_weights, backbone_size, backbone_norm, device, dtype
) -> FeaturePipeline:
    """:func:`build_pipeline` of checked arguments, kept for the next call with the same ones
    and the same weights (``key``: :func:`_weights_key`)."""
    return build_pipeline(
        model, backbone, backbone_weights, backbone_size, backbone_norm, device, dtype
    )


def clear_cache() -> None:
    """Release what :func:`upsample` keeps between calls: the pipeline it built for the last
    upsampler named by a name, a path or a hub id (its upsampler and backbone, where they run,
    and a backbone module passed with it, which it holds too). The next such call loads them
    again. A pipeline or a LoftUp passed as ``model`` is never kept."""
    _cached_pipeline.cache_clear()


def _weights_key(model: str | os.PathLike, backbone_weights=None) -> tuple:
    """What tells the weights that ``model`` names apart for the cache: a local file or folder
    by its absolute path and the identity of its files (inode, size, time), so that weights
    written again there since the last call (save_pretrained, a training run) and a relative
    path used from another folder are loaded anew; a released name or a hub id as given. So
    too ``backbone_weights`` where given as a path or hub id (a backbone fine-tuned again into
    its folder ran with the weights of the first call), after those of ``model``."""
    if isinstance(backbone_weights, (str, os.PathLike)):
        return (*_weights_key(model), *_weights_key(backbone_weights))
    path = Path(os.fspath(model)).expanduser()
    try:
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        stamps = [(f.name, (s := f.stat()).st_ino, s.st_size, s.st_mtime_ns) for f in files]
    except OSError:  # not a local path (a released name), or one that cannot be read
        return (os.fspath(model),)
    return (str(path.resolve()), *stamps)


def _as_batch(image) -> tuple[torch.Tensor, bool]:
    """Anything :func:`upsample` takes -> ((B, 3, H, W) in [0, 1], was it a batch)."""
    from .image_input import to_tensor, warn_stored_orientation
    from .io import load_image_tensor

    if isinstance(image, (str, os.PathLike)):
        return load_image_tensor(image).unsqueeze(0), False
    if isinstance(image, torch.Tensor) and image.dim() == 4:
        check_batch(image, channels=(1, 3))  # a channels-last batch as one, not its first image
        if image.is_floating_point():  # a grayscale batch as its images one by one: RGB
            return image.expand(-1, 3, -1, -1), True
        # as its images are read one by one: uint8 scaled to [0, 1], other integers refused
        return torch.stack([to_tensor(one) for one in image]), True
    warn_stored_orientation(image, stacklevel=3)  # the caller of upsample
    return to_tensor(image).unsqueeze(0), False


def _refuse_many(image) -> None:
    """An :class:`~loftup.image_input.ImageInputError` where ``image`` is a list or tuple (of
    paths, say), said as such before any weights load: it was "expected a path, PIL image ...,
    got list; convert it with numpy.asarray(image)", which no list of paths can follow; one of
    nested numbers (an image's rows) is told how to convert them."""
    from .image_input import ImageInputError, _nested_fix

    if not isinstance(image, (list, tuple)):
        return
    took = "upsample takes one image (a path, PIL image, numpy array or tensor), got a"
    if _numbers(image):  # one image as nested rows of pixels: to_tensor's advice for them
        raise ImageInputError(f"{took} {type(image).__name__} of numbers; {_nested_fix(image)}")
    raise ImageInputError(
        f"{took} {type(image).__name__} of {len(image)}; call it once per image, pass images of "
        "one size as a (B, 3, H, W) tensor, or write the features of many files with "
        "loftup.extract.upsample_folder(paths, out_dir)"
    )


def _numbers(image) -> bool:
    """Whether ``image`` is numbers nested in lists or tuples (rows of pixels), not a sequence
    of images (paths, PIL images, arrays)."""
    if isinstance(image, (list, tuple)):
        return bool(image) and all(map(_numbers, image))
    return isinstance(image, numbers.Number)


def _check_patches(images: torch.Tensor, backbone_size, featurizer: Featurizer) -> None:
    """An :class:`~loftup.checks.ImageSizeError` where ``featurizer`` would be given more
    patches of ``images`` than it may at ``backbone_size`` (:func:`backbone_input`)."""
    backbone_input(*images.shape[-2:], featurizer.patch_size, backbone_size)


class _Default(int):
    """An int default that :func:`upsample` tells apart from the same value passed: 224 said
    aloud contradicts a pipeline built with another ``backbone_size``, 224 left out does not."""


_BACKBONE_SIZE = _Default(224)


def _check_agrees(pipeline, backbone, weights, backbone_size, norm, device, dtype) -> None:
    """A :class:`UsageError` naming the first argument of :func:`upsample` that contradicts the
    ready ``pipeline`` it was given (which it runs as built); arguments left out agree."""
    from .featurizers import resolve

    featurizer = pipeline.featurizer
    if isinstance(backbone, Featurizer):
        same_backbone = backbone is featurizer
    else:
        same_backbone = backbone is None or resolve(backbone).name == featurizer.name
    if norm is not None:
        check_input_norm(norm, "backbone_norm")
    if backbone_size is not _BACKBONE_SIZE:
        check_backbone_size(backbone_size)
    checks = [
        ("backbone", backbone, same_backbone, f"backbone {featurizer.name}"),
        ("backbone_weights", weights, weights is None, "its backbone loaded already"),
        ("backbone_size", backbone_size,
         backbone_size is _BACKBONE_SIZE or backbone_size == pipeline.backbone_size,
         f"backbone_size={pipeline.backbone_size}"),
        ("backbone_norm", norm, norm in (None, featurizer.input_norm),
         f"backbone_norm={featurizer.input_norm!r}"),
        ("device", device, device is None or same_device(resolve_device(device), pipeline.device),
         f"device {pipeline.device}"),
        ("dtype", dtype, dtype is None or as_dtype(dtype) == pipeline.dtype,
         f"dtype {str(pipeline.dtype).removeprefix('torch.')}"),
    ]  # fmt: skip
    for name, value, agrees, has in checks:
        if not agrees:
            if name == "dtype":  # the name load_pipeline's own check prints: float16, not fp16
                value = str(as_dtype(value)).removeprefix("torch.")
            raise UsageError(
                f"upsample(..., {name}={shown(value)}) contradicts the pipeline passed as model, "
                f"which has {has}; leave {name} out, or build the pipeline with "
                f"load_pipeline(..., {name}={shown(value)})"
            )


def upsample(
    image_or_path: ImageLike,
    model: str | os.PathLike | LoftUp | FeaturePipeline = "loftup_dinov2s",
    size: Size = None,
    *,
    backbone: str | Featurizer | None = None,
    backbone_weights: str | os.PathLike | None = None,
    backbone_size: int | None = _BACKBONE_SIZE,
    backbone_norm: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> torch.Tensor:
    """High-resolution features of an image.

    Arguments:
      image_or_path: a file path, a PIL image, an (H, W) or (H, W, 3) array, or a tensor
        (3, H, W) or (B, 3, H, W) of RGB values in [0, 1] (not normalised) or uint8 (1 channel
        for grayscale); at least 1 x 1 px (sizes: :func:`output_size`,
        :func:`loftup.checks.backbone_input`). A file is read upright by its EXIF orientation,
        a PIL image as stored (a warning where it records one: ``exif_transpose`` it).
      model: a released upsampler name, a weights file or folder, the hub id ``ORG/NAME`` of
        an upsampler save_pretrained wrote (what :func:`loftup.load_upsampler` takes), a
        LoftUp, or a :class:`FeaturePipeline` (run as built: an argument below that contradicts
        it is a :class:`UsageError`; names are cached between calls, until
        :func:`clear_cache`).
      size: output size: None (the image's), N (shorter side N) or (H, W).
      backbone, backbone_weights, backbone_size, backbone_norm, device, dtype: see
        :func:`load_pipeline`
        (``dtype`` None: float32, or a pipeline's or LoftUp's own dtype; ``device`` None: the
        auto device, or where a LoftUp or backbone module passed in is). A LoftUp or backbone
        module passed in is changed in place: put in eval mode (at each call, a backbone
        put back in training mode between calls too), and moved to ``device`` and converted
        to ``dtype`` where those are given.

    Returns features (C, H, W), or (B, C, H, W) for a batch, on the pipeline's device, in its
    dtype.
    """
    check_size(size)  # before any weights are loaded
    _refuse_many(image_or_path)
    # the models' own checks first (a typo in a name, missing weights: said after a missing
    # image, which they were before it), then the image, refused before a LoftUp or backbone
    # module passed in is converted in place (a lossy float16, say), then the pipeline built
    pipeline = model if isinstance(model, FeaturePipeline) else None
    if pipeline is not None:
        _check_agrees(
            pipeline, backbone, backbone_weights, backbone_size, backbone_norm, device, dtype
        )
    else:
        if not isinstance(model, LoftUp):
            check_model(model, ("a LoftUp", "a FeaturePipeline"))
        options = checked_options(backbone_size, backbone_norm, device, dtype)
        check_backbone_name(backbone, model)
        if not isinstance(model, LoftUp) and not isinstance(backbone, torch.nn.Module):
            # nothing of the caller's to convert: the weights read now, as they were
            key = _weights_key(model, backbone_weights)
            pipeline = _cached_pipeline(key, model, backbone, backbone_weights, *options)
    images, batched = _as_batch(image_or_path)
    check_images(images, size)
    fits = functools.partial(_check_patches, images, backbone_size)
    if isinstance(model, LoftUp):
        pipeline = build_pipeline(model, backbone, backbone_weights, *options, fits=fits)
    elif pipeline is None:  # a backbone module passed with a name: converted by the build
        if isinstance(backbone, Featurizer):
            fits(backbone)
        key = _weights_key(model, backbone_weights)
        pipeline = _cached_pipeline(key, model, backbone, backbone_weights, *options)
    if not isinstance(model, FeaturePipeline) and isinstance(backbone, torch.nn.Module):
        backbone.eval()  # at every call, as a LoftUp's path does (cached from an earlier one)
    with pixels_checked(images):  # (checked above: not scanned again by the pipeline)
        _, hr_feats = pipeline(images, size)
    return hr_feats if batched else hr_feats[0]
