"""Images in, high-resolution features out: :func:`upsample` and the pipeline behind it.

    >>> import loftup
    >>> hr = loftup.upsample("photo.jpg", model="loftup_dinov2s", size=448)   # (384, 448, W)

Sizes: the backbone sees the image with its shorter side at ``backbone_size`` (224, what the
released upsamplers were trained on), snapped to the patch grid (:mod:`loftup.featurizers.sizes`);
the upsampled features have the size ``size`` asks for (default: the image's own size).

Precision: ``dtype`` (float32 by default, the reference's numbers) runs the backbone and the
upsampler in bfloat16 or float16 instead (the GPU's fast path: about 4x float32 on an H200).
The guidance image stays float32 whatever the precision: the Fourier encoding multiplies the
colours by up to e^10, so a half-precision image would turn its rounding into phase noise.
"""

from __future__ import annotations

import functools
import numbers
import os
from dataclasses import dataclass

import torch

from .errors import LoftUpError, UsageError, WeightsNotFoundError
from .featurizers import Featurizer, check_input_norm, get_featurizer, imagenet_normalize
from .featurizers.sizes import backbone_input_size, resize_images, shorter_side_to
from .hub import check_source, load_upsampler
from .model import LoftUp
from .tiling import start_upsample

Size = int | tuple[int, int] | None

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
    if isinstance(size, numbers.Integral):
        return shorter_side_to(height, width, int(size))
    return int(size[0]), int(size[1])


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
    if size is not None and not (integer and size >= 1):
        raise UsageError(
            f"{name} is the shorter side in pixels the backbone sees (>= 1; 224 by default; "
            f"None: the image's own), got {size!r}"
        )


#: How far outside [0, 1] pixel values may lie (a resampling's overshoot): ImageNet-normalised
#: images (about -2.1 to 2.6) and 0-255 values lie further out.
PIXEL_SLACK = 0.25


def check_pixels(images: torch.Tensor) -> None:
    """A :class:`UsageError` unless ``images`` hold RGB values in [0, 1] (give or take
    :data:`PIXEL_SLACK`): an ImageNet-normalised or 0-255 image gave wrong features without a
    word (the pipeline normalises them itself), and a NaN one an error about the features."""
    lo, hi = (float(v) for v in torch.aminmax(images))
    if not -PIXEL_SLACK <= lo <= hi <= 1 + PIXEL_SLACK:  # NaN fails too
        raise UsageError(
            f"expected RGB values in [0, 1], got values from {lo:.4g} to {hi:.4g}: pass the "
            "image before ImageNet normalisation (the pipeline normalises it), 0-255 values "
            "divided by 255 (or as uint8), and no NaN or infinite pixels"
        )


@dataclass
class FeaturePipeline:
    """A backbone and the upsampler trained on its features.

    Arguments:
      upsampler: a :class:`loftup.LoftUp` (from :func:`loftup.load_upsampler`).
      featurizer: the backbone whose features it upsamples (:func:`loftup.get_featurizer`).
      backbone_size: shorter side of the image the backbone sees (None: the image's own size).

    Both models run in their own dtype (:func:`load_pipeline` sets it); the guidance image is
    always float32 and the features come out in the upsampler's dtype.
    """

    upsampler: LoftUp
    featurizer: Featurizer
    backbone_size: int | None = 224

    @property
    def device(self) -> torch.device:
        return next(self.upsampler.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The upsampler's dtype: that of the features it returns."""
        return next(self.upsampler.parameters()).dtype

    @torch.inference_mode()
    def __call__(
        self, images: torch.Tensor, size: Size = None, *, callback=None, progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """RGB images (B, 3, H0, W0) in [0, 1] -> (low-res (B, C, h, w), upsampled (B, C, H, W)).

        ``callback``: ``fn(tile, feats)`` gets the upsampled features tile by tile instead
        (``feats`` (b, C, th, tw) on the device for images ``tile.batch``, rows ``tile.rows``,
        columns ``tile.cols``; see :func:`loftup.tiling.upsample`) and None is returned in
        their place: features of any size in the memory of one tile, the same values.
        ``progress``: a bar over the tiles of an output of several.
        """
        if images.dim() != 4 or images.shape[1] != 3 or 0 in images.shape:
            raise UsageError(
                f"expected RGB images (B, 3, H, W) in [0, 1] with B, H, W >= 1, got "
                f"{tuple(images.shape)}"
            )
        h0, w0 = images.shape[-2:]
        x = images.to(self.device, torch.float32)
        check_pixels(x)
        bb_hw = backbone_input_size(h0, w0, self.featurizer.patch_size, self.backbone_size)
        guide = imagenet_normalize(resize_images(x, output_size(size, h0, w0)))
        # the image's half of the upsampler first: on a GPU it runs while the backbone's
        # kernels are being launched (the same output as self.upsampler(lr_feats, guide))
        pending = start_upsample(self.upsampler, guide)
        lr_feats = self.featurizer(imagenet_normalize(resize_images(x, bb_hw)))
        return lr_feats, pending.finish(lr_feats, callback=callback, progress=progress)


def load_pipeline(
    model: str | os.PathLike | LoftUp = "loftup_dinov2s",
    *,
    backbone: str | Featurizer | None = None,
    backbone_weights: str | os.PathLike | None = None,
    backbone_size: int | None = 224,
    backbone_norm: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> FeaturePipeline:
    """The upsampler ``model`` (released name, file or folder) with its backbone.

    The backbone is ``backbone`` when given, else the one the upsampler records (every released
    name does, and so does a ``save_pretrained`` folder); ``backbone_weights`` is a hub id or a
    local Hugging Face folder (default: the backbone's official hub id). ``backbone_norm``:
    what a backbone trained with other constants than ImageNet's (CLIP, SigLIP) is given,
    "imagenet" (the ImageNet-normalised image as it is, as the paper's code gives it: the
    features the released upsamplers were trained on) or "own" (its own normalisation; see
    :func:`loftup.get_featurizer`'s ``input_norm``); None: what the upsampler records (its
    training run's), else "imagenet". It applies to a backbone built here.

    ``dtype``: the precision of both models (float32, bfloat16 or float16; see
    :func:`as_dtype`). None: float32 for what is loaded here; a LoftUp or a featurizer passed in
    keeps its own dtype unless ``dtype`` is given (like the device, it is converted in place).
    On the CPU, bfloat16 has fast kernels and float16 does not (it runs, slowly).
    """
    if not isinstance(model, LoftUp):
        check_source(model, "model", ("a LoftUp",))
    check_backbone_size(backbone_size)
    backbone_size = None if backbone_size is None else int(backbone_size)
    if backbone_norm is not None:
        check_input_norm(backbone_norm, "backbone_norm")
    device = resolve_device(device)
    want = None if dtype is None else as_dtype(dtype)
    if isinstance(model, LoftUp):
        upsampler = model.to(device, want) if want is not None else model.to(device)
    else:
        try:
            upsampler = load_upsampler(model, device=device)
        except WeightsNotFoundError as e:
            raise _with_missing_backbone(e, model, backbone, backbone_weights) from None
        upsampler = upsampler.to(device, want or torch.float32)
    upsampler = upsampler.eval()
    if isinstance(backbone, Featurizer):
        featurizer = backbone.to(device, want) if want is not None else backbone.to(device)
        featurizer = featurizer.eval()
    else:
        name = backbone or getattr(upsampler, "backbone", None)
        if name is None:
            where = getattr(upsampler, "source", None) or "passed in"  # not a module's repr
            raise LoftUpError(
                f"the upsampler {where} does not record its backbone; "
                f"name it with backbone=NAME (CLI: --backbone NAME), {_backbones_of(upsampler.dim)}"
            )
        norm = backbone_norm or getattr(upsampler, "backbone_norm", None) or "imagenet"
        featurizer = get_featurizer(name, weights=backbone_weights, device=device, input_norm=norm)
        featurizer = featurizer.to(device, want or torch.float32)
    if featurizer.dim != upsampler.dim:
        raise LoftUpError(
            f"backbone {featurizer.name} gives {featurizer.dim}-d features but the upsampler "
            f"expects {upsampler.dim}-d ones; pass the backbone it was trained with"
        )
    return FeaturePipeline(upsampler, featurizer, backbone_size)


def _backbones_of(dim: int) -> str:
    """The registered backbones that give ``dim``-d features, as advice: the example that was
    given for every upsampler (dinov2_vits14, 384-d) failed again for any other width."""
    from .featurizers import backbones_of_dim

    names = backbones_of_dim(dim)
    if not names:
        return f"or pass a Featurizer of {dim}-d features (no registered backbone gives them)"
    return f"one of the backbones of its {dim}-d features: {', '.join(names)}"


def _with_missing_backbone(
    error: WeightsNotFoundError, model, backbone, backbone_weights
) -> WeightsNotFoundError:
    """``error`` (the upsampler's weights were not found), naming the backbone's weights too
    where they cannot be found either: offline with nothing cached, a user who provided the
    upsampler's file learnt only on the next run that the backbone's were missing as well."""
    from .featurizers.hf import find_weights
    from .hub import ALIASES, RELEASED

    name = backbone if isinstance(backbone, str) else None
    if name is None and isinstance(model, (str, os.PathLike)):
        released = RELEASED.get(ALIASES.get(os.fspath(model), os.fspath(model)))
        name = released.backbone if released is not None else None
    if name is None:  # which backbone is recorded in the weights that are missing
        return error
    try:
        find_weights(name, backbone_weights)
    except LoftUpError as e:
        return WeightsNotFoundError(f"{error}; and the backbone's weights are missing too: {e}")
    return error


@functools.lru_cache(maxsize=1)
def _cached_pipeline(
    model, backbone, backbone_weights, backbone_size, backbone_norm, device, dtype
) -> FeaturePipeline:
    return load_pipeline(
        model,
        backbone=backbone,
        backbone_weights=backbone_weights,
        backbone_size=backbone_size,
        backbone_norm=backbone_norm,
        device=device,
        dtype=dtype,
    )


def _as_batch(image) -> tuple[torch.Tensor, bool]:
    """Anything :func:`upsample` takes -> ((B, 3, H, W) in [0, 1], was it a batch)."""
    from .io import load_image_tensor, to_tensor

    if isinstance(image, (str, os.PathLike)):
        return load_image_tensor(image).unsqueeze(0), False
    if isinstance(image, torch.Tensor) and image.dim() == 4:
        if image.is_floating_point():
            return image, True
        # as its images are read one by one: uint8 scaled to [0, 1], other integers refused
        return torch.stack([to_tensor(one) for one in image]), True
    return to_tensor(image).unsqueeze(0), False


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
        ("device", device, device is None or _same_device(resolve_device(device), pipeline.device),
         f"device {pipeline.device}"),
        ("dtype", dtype, dtype is None or as_dtype(dtype) == pipeline.dtype,
         f"dtype {str(pipeline.dtype).removeprefix('torch.')}"),
    ]  # fmt: skip
    for name, value, agrees, has in checks:
        if not agrees:
            if name == "dtype":  # the name load_pipeline's own check prints: float16, not fp16
                value = str(as_dtype(value)).removeprefix("torch.")
            shown = (
                f"{type(value).__name__}(...)"
                if isinstance(value, torch.nn.Module)
                else repr(value)
            )
            raise UsageError(
                f"upsample(..., {name}={shown}) contradicts the pipeline passed as model, which "
                f"has {has}; leave {name} out, or build the pipeline with "
                f"load_pipeline(..., {name}={shown})"
            )


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether ``a`` and ``b`` are the same device ("cuda" is the current GPU, "cuda:N")."""
    if a.type != b.type:
        return False
    return a.type != "cuda" or (
        (a.index if a.index is not None else torch.cuda.current_device())
        == (b.index if b.index is not None else torch.cuda.current_device())
    )


def upsample(
    image_or_path,
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
      image_or_path: a file path, a PIL image, an (H, W, 3) array, or a tensor (3, H, W) or
        (B, 3, H, W) of RGB values in [0, 1] (not normalised).
      model: a released upsampler name, a weights file or folder, a LoftUp, or a
        :class:`FeaturePipeline` (run as built: an argument below that contradicts it is a
        :class:`UsageError`; names are cached between calls).
      size: output size: None (the image's), N (shorter side N) or (H, W).
      backbone, backbone_weights, backbone_size, backbone_norm, device, dtype: see
        :func:`load_pipeline`
        (``dtype`` None: float32, or a pipeline's or LoftUp's own dtype).

    Returns features (C, H, W), or (B, C, H, W) for a batch, on the pipeline's device, in its
    dtype.
    """
    check_size(size)  # before any weights are loaded
    if isinstance(model, FeaturePipeline):
        pipeline = model
        _check_agrees(
            pipeline, backbone, backbone_weights, backbone_size, backbone_norm, device, dtype
        )
    elif isinstance(model, LoftUp):
        pipeline = load_pipeline(
            model,
            backbone=backbone,
            backbone_weights=backbone_weights,
            backbone_size=backbone_size,
            backbone_norm=backbone_norm,
            device=device,
            dtype=dtype,
        )
    else:
        check_source(model, "model", ("a LoftUp", "a FeaturePipeline"))
        key = (
            os.fspath(model),
            backbone,
            backbone_weights,
            backbone_size,
            backbone_norm,
            str(resolve_device(device)),
            as_dtype(dtype),
        )
        pipeline = _cached_pipeline(*key)
    images, batched = _as_batch(image_or_path)
    _, hr_feats = pipeline(images, size)
    return hr_feats if batched else hr_feats[0]
