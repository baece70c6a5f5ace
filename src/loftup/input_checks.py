"""What a forward takes: the checks of its low-resolution features and guidance image, shared
by the model's forward and the tiled paths that start or stream it (:mod:`loftup.tiling`).
"""

from __future__ import annotations

import os
import warnings

import torch

from .cpu import _caller_level
from .errors import UsageError
from .finite import all_finite


class ForwardInputError(UsageError, TypeError):
    """Inputs a forward cannot take: a :class:`loftup.errors.LoftUpError` (one line, for the
    user), a ValueError and a TypeError (what the forward raised for a shape and for a dtype
    before it was one)."""


def check_inputs(
    lr_feats: torch.Tensor, image: torch.Tensor, dim: int, device: torch.device | None = None
) -> None:
    """Raise a :class:`ForwardInputError` naming what is wrong with a forward's inputs;
    ``device``: the model's, which both must be on (torch's own error came from deep inside a
    layer, naming neither input)."""
    for name, t in (("lr_feats", lr_feats), ("image", image)):
        check_tensor(name, t, device)
    if lr_feats.shape[0] != image.shape[0]:
        raise ForwardInputError(
            f"batch sizes differ: lr_feats has {lr_feats.shape[0]}, image has {image.shape[0]}; "
            "give one guidance image per feature map, in the same order"
        )
    if lr_feats.shape[1] != dim:
        raise ForwardInputError(_wrong_channels(lr_feats, image, dim))
    if image.shape[1] != 3:
        fix = (
            f"it is channels last, {tuple(image.shape)}: image.permute(0, 3, 1, 2)"
            if image.shape[-1] == 3
            else "convert grayscale or RGBA images to RGB first (PIL: img.convert('RGB'))"
        )
        raise ForwardInputError(f"image must have 3 channels (RGB), got {image.shape[1]}; {fix}")
    if image.dtype in (torch.float16, torch.bfloat16):
        warnings.warn(
            f"the guidance image is {str(image.dtype).removeprefix('torch.')}: the Fourier "
            "encoding multiplies colours by up to e^10, so its rounding becomes phase noise "
            "in the output; pass the image in float32 (the model may be in half precision)",
            stacklevel=_caller_level(),  # the user's line, not the forward's (nor torch's)
        )
    # the image first: one NaN pixel makes every feature of it NaN, and the fix is where the
    # image was read, not the backbone's precision. On the CPU only: reading the answer back
    # from a GPU would wait for all queued work (twice per call), which is what start_upsample
    # and a busy GPU pipeline must avoid
    for name, t in (("image", image), ("lr_feats", lr_feats)):
        if t.device.type == "cpu" and not all_finite(t):
            raise ForwardInputError(f"{name} contains NaN or Inf values; {_NON_FINITE_FIX[name]}")


def _wrong_channels(lr_feats: torch.Tensor, image: torch.Tensor, dim: int) -> str:
    """What is said where ``lr_feats`` has not ``dim`` channels: the inputs given the other way
    round, or features channels last (B, h, w, C), are told so; other features are another
    backbone's."""
    got = f"lr_feats has {lr_feats.shape[1]} channels but this upsampler expects C={dim}"
    if lr_feats.shape[1] == 3 and image.shape[1] == dim:
        return (
            f"{got}, and image has {dim}: the two are swapped; pass the features first, then "
            "the image: model(lr_feats, image)"
        )
    if lr_feats.shape[-1] == dim:
        return (
            f"{got}; they are channels last, {tuple(lr_feats.shape)}: lr_feats.permute(0, 3, 1, 2)"
        )
    return f"{got}; use the upsampler trained for your backbone"


#: What to look at where a forward's input holds NaN or Inf values.
_NON_FINITE_FIX = {
    "lr_feats": "check the backbone's output (float16 features can overflow: compute them in "
    "bfloat16 or float32)",
    "image": "check how it was read and normalised (a TIFF's no-data pixels are NaN: fill them)",
}


def check_tensor(name: str, t, device: torch.device | None = None) -> None:
    """The checks of :func:`check_inputs` that each input passes on its own (a floating-point
    4-D tensor with a non-empty grid, on ``device`` when given), for ``name``: also run on the
    guidance image alone by :func:`loftup.early_start.start_upsample`, before any work."""
    if not isinstance(t, torch.Tensor):
        raise ForwardInputError(
            f"{name} must be a torch.Tensor, got {type(t).__name__}; convert it with "
            "torch.as_tensor(...) (for an image file or a PIL image: loftup.upsample)"
        )
    if not t.is_floating_point():
        raise ForwardInputError(
            f"{name} must be floating point, got {t.dtype}; convert with .float() "
            "(images must also be ImageNet-normalised, not uint8 pixels)"
        )
    if t.dim() != 4:
        raise ForwardInputError(
            f"{name} must be 4-D (B, C, H, W), got shape {tuple(t.shape)}; "
            "add a batch axis with .unsqueeze(0)"
        )
    if 0 in t.shape[2:]:
        raise ForwardInputError(
            f"{name} has an empty grid, shape {tuple(t.shape)}: its height and width "
            "must be at least 1"
        )
    if device is not None and t.device != device:
        raise ForwardInputError(
            f"{name} is on {t.device}, the upsampler on {device}; move it there with "
            f"{name}.to({str(device)!r}) (or the upsampler with .to({str(t.device)!r}))"
        )


def check_loftup(model, who: str) -> None:
    """A UsageError unless ``model`` is a LoftUp, for ``who``, a function that takes one: a
    released name or a pipeline was an AttributeError from inside it (``'str' object has no
    attribute 'head'``), naming neither what was given nor what to pass."""
    from .model import LoftUp  # here: the model's own module imports this one

    if isinstance(model, LoftUp):
        return
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        raise UsageError(
            f"{who} takes a LoftUp, got the name or path {path!r}: load it first, "
            f"model = loftup.load_upsampler({path!r})"
        )
    if isinstance(getattr(model, "upsampler", None), LoftUp):  # a FeaturePipeline
        got = f"a {type(model).__name__} (for a pipeline pass its upsampler: pipeline.upsampler)"
    else:
        from .checks import shown

        got = shown(model)
    raise UsageError(f"{who} takes a LoftUp (loftup.load_upsampler(name)), got {got}")


def require_eval(model, who: str, why: str = "", name: str = "model", also: str = "") -> None:
    """A UsageError unless ``model`` is a LoftUp (:func:`check_loftup`) that normalises by its
    running statistics (eval mode), for ``who``, a function that computes it as in eval mode
    (``why``: what more its output depends on in training mode; ``name``: what the caller
    calls the model, in the fix; ``also``: the fix's end, another way out)."""
    check_loftup(model, who)
    if model.uses_batch_statistics():
        raise UsageError(
            f"{who} computes the model as in eval mode, and this one is in training mode (its "
            f"output differs there{why}); call {name}.eval() first{also}"
        )
