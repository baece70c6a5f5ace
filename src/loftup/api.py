"""Images in, high-resolution features out: :func:`upsample` and the pipeline behind it.

    >>> import loftup
    >>> hr = loftup.upsample("photo.jpg", model="loftup_dinov2s", size=448)   # (384, 448, W)

Sizes: the backbone sees the image with its shorter side at ``backbone_size`` (224, what the
released upsamplers were trained on), snapped to the patch grid (:mod:`loftup.featurizers.sizes`);
the upsampled features have the size ``size`` asks for (default: the image's own size).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from .errors import LoftUpError
from .featurizers import Featurizer, get_featurizer, imagenet_normalize
from .featurizers.sizes import backbone_input_size, resize_images, shorter_side_to
from .hub import load_upsampler
from .model import LoftUp
from .tiling import start_upsample

Size = int | tuple[int, int] | None


def output_size(size: Size, height: int, width: int) -> tuple[int, int]:
    """The (H, W) of the upsampled features for an image of (height, width).

    ``size``: None -> the image's own size; N -> shorter side N, aspect ratio kept; (H, W) -> as is.
    """
    if size is None:
        return height, width
    if isinstance(size, int):
        return shorter_side_to(height, width, size)
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"output size must be positive, got {h}x{w}")
    return h, w


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LoftUpError("--device cuda was asked for, but no CUDA device is available; use cpu")
    return device


@dataclass
class FeaturePipeline:
    """A backbone and the upsampler trained on its features.

    Arguments:
      upsampler: a :class:`loftup.LoftUp` (from :func:`loftup.load_upsampler`).
      featurizer: the backbone whose features it upsamples (:func:`loftup.get_featurizer`).
      backbone_size: shorter side of the image the backbone sees (None: the image's own size).
    """

    upsampler: LoftUp
    featurizer: Featurizer
    backbone_size: int | None = 224

    @property
    def device(self) -> torch.device:
        return next(self.upsampler.parameters()).device

    @torch.inference_mode()
    def __call__(
        self, images: torch.Tensor, size: Size = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB images (B, 3, H0, W0) in [0, 1] -> (low-res (B, C, h, w), upsampled (B, C, H, W))."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected RGB images (B, 3, H, W) in [0, 1], got {tuple(images.shape)}"
            )
        h0, w0 = images.shape[-2:]
        x = images.to(self.device, torch.float32)
        bb_hw = backbone_input_size(h0, w0, self.featurizer.patch_size, self.backbone_size)
        guide = imagenet_normalize(resize_images(x, output_size(size, h0, w0)))
        # the image's half of the upsampler first: on a GPU it runs while the backbone's
        # kernels are being launched (the same output as self.upsampler(lr_feats, guide))
        pending = start_upsample(self.upsampler, guide)
        lr_feats = self.featurizer(imagenet_normalize(resize_images(x, bb_hw)))
        return lr_feats, pending.finish(lr_feats)


def load_pipeline(
    model: str | os.PathLike | LoftUp = "loftup_dinov2s",
    *,
    backbone: str | Featurizer | None = None,
    backbone_weights: str | os.PathLike | None = None,
    backbone_size: int | None = 224,
    device: str | torch.device | None = None,
) -> FeaturePipeline:
    """The upsampler ``model`` (released name, file or folder) with its backbone.

    The backbone is ``backbone`` when given, else the one the upsampler records (every released
    name does, and so does a ``save_pretrained`` folder); ``backbone_weights`` is a hub id or a
    local Hugging Face folder (default: the backbone's official hub id).
    """
    device = resolve_device(device)
    upsampler = model if isinstance(model, LoftUp) else load_upsampler(model, device=device)
    upsampler = upsampler.to(device).eval()
    if isinstance(backbone, Featurizer):
        featurizer = backbone.to(device).eval()
    else:
        name = backbone or getattr(upsampler, "backbone", None)
        if name is None:
            raise LoftUpError(
                f"the upsampler {getattr(upsampler, 'source', model)} does not record its backbone; "
                "name it with backbone='dinov2_vits14' (CLI: --backbone NAME)"
            )
        featurizer = get_featurizer(name, weights=backbone_weights, device=device)
    if featurizer.dim != upsampler.dim:
        raise LoftUpError(
            f"backbone {featurizer.name} gives {featurizer.dim}-d features but the upsampler "
            f"expects {upsampler.dim}-d ones; pass the backbone it was trained with"
        )
    return FeaturePipeline(upsampler, featurizer, backbone_size)


@functools.lru_cache(maxsize=1)
def _cached_pipeline(model, backbone, backbone_weights, backbone_size, device) -> FeaturePipeline:
    return load_pipeline(
        model,
        backbone=backbone,
        backbone_weights=backbone_weights,
        backbone_size=backbone_size,
        device=device,
    )


def _as_batch(image) -> tuple[torch.Tensor, bool]:
    """Anything :func:`upsample` takes -> ((B, 3, H, W) in [0, 1], was it a batch)."""
    from .io import load_image_tensor, to_tensor

    if isinstance(image, (str, os.PathLike)):
        return load_image_tensor(image).unsqueeze(0), False
    if isinstance(image, torch.Tensor) and image.dim() == 4:
        return image, True
    return to_tensor(image).unsqueeze(0), False


def upsample(
    image_or_path,
    model: str | os.PathLike | LoftUp | FeaturePipeline = "loftup_dinov2s",
    size: Size = None,
    *,
    backbone: str | None = None,
    backbone_weights: str | os.PathLike | None = None,
    backbone_size: int | None = 224,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """High-resolution features of an image.

    Arguments:
      image_or_path: a file path, a PIL image, an (H, W, 3) array, or a tensor (3, H, W) or
        (B, 3, H, W) of RGB values in [0, 1] (not normalised).
      model: a released upsampler name, a weights file or folder, a LoftUp, or a
        :class:`FeaturePipeline` (reused as is; names are cached between calls).
      size: output size: None (the image's), N (shorter side N) or (H, W).
      backbone, backbone_weights, backbone_size, device: see :func:`load_pipeline`.

    Returns features (C, H, W), or (B, C, H, W) for a batch, on the pipeline's device.
    """
    if isinstance(model, FeaturePipeline):
        pipeline = model
    elif isinstance(model, LoftUp):
        pipeline = load_pipeline(
            model,
            backbone=backbone,
            backbone_weights=backbone_weights,
            backbone_size=backbone_size,
            device=device,
        )
    else:
        key = (
            os.fspath(model),
            backbone,
            backbone_weights,
            backbone_size,
            str(resolve_device(device)),
        )
        pipeline = _cached_pipeline(*key)
    images, batched = _as_batch(image_or_path)
    _, hr_feats = pipeline(images, size)
    return hr_feats if batched else hr_feats[0]
