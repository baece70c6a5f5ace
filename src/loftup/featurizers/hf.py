"""What every transformers-based backbone shares: transformers' model classes, checked to run
beside the installed torch, and turning an ImageNet-normalised batch into the grid of patch
tokens.

Loading the weights strictly (and naming what is wrong with them) is
:mod:`loftup.featurizers.hf_loading`'s; finding them (a local folder in the Hugging Face
layout, the Hugging Face cache, a download; ``HF_HUB_OFFLINE=1`` honoured) and checking what a
folder holds, :mod:`loftup.featurizers.hf_weights`'s. Their names are importable from here too.
"""

from __future__ import annotations

import torch

from ..errors import MissingDependencyError, require
from ..stops import first
from . import IMAGENET_MEAN, IMAGENET_STD, Featurizer
from .hf_loading import load_strict, quiet_transformers  # noqa: F401  (as before the split)
from .hf_weights import (  # noqa: F401  (importable from here, as before the split)
    CONFIG_FILE,
    HUB_FILES,
    WEIGHTS_FILE,
    check_model_type,
    download,
    find_weights,
    read_config,
    resolve_weights,
    where_from,
)
from .sizes import check_backbone_batch, check_finite_images, to_patch_multiple


def from_transformers(*names: str) -> tuple:
    """The named classes of transformers, once it is known to be installed and to run its
    PyTorch models beside the installed torch. transformers 5 switches them off below torch
    2.6 (with a log line) and fails only when a model is built, telling the user to install
    PyTorch; this names both releases and what to install instead."""
    require({"transformers": "this"})  # installed; a package it needs keeps its own error
    import transformers
    from transformers.utils import is_torch_available

    if not is_torch_available():
        raise MissingDependencyError(
            f"transformers {transformers.__version__} does not run its models with torch "
            f"{torch.__version__} (it needs a newer torch): upgrade torch, or install a "
            f"transformers release that supports this one: pip install '{TRANSFORMERS_PIN},<5'"
        )
    found = []
    for name in names:
        try:
            found.append(getattr(transformers, name))
        except AttributeError:  # an older release than pyproject allows, installed already
            from ..hub.files import SAFE_PICKLE_TORCH, torch_release

            # below torch 2.6 the newest transformers (5) would be refused above: the last 4
            below = torch_release() < SAFE_PICKLE_TORCH
            raise MissingDependencyError(
                f"transformers {transformers.__version__} has no {name}, which this backbone is "
                f"built on (it came in a later release): pip install -U "
                f"'{TRANSFORMERS_PIN}{',<5' if below else ''}'"
            ) from None
    return tuple(found)


#: The oldest transformers that holds every backbone's model (DINOv3 came in 4.56), as
#: pyproject's ``backbones`` extra asks for it.
TRANSFORMERS_PIN = "transformers>=4.56"


class HFFeaturizer(Featurizer):
    """A transformers vision model as a featurizer.

    ``forward(images)`` takes an ImageNet-normalised batch (B, 3, H, W), the same tensor the
    upsampler is guided by, and returns patch features (B, dim, H'/p, W'/p), where (H', W') is
    the size snapped to the patch grid (:func:`loftup.featurizers.sizes.snap_to_patches`).
    Backbones trained with other constants (CLIP, SigLIP: ``mean``/``std``) are given it as it
    is, or converted to their own with ``input_norm="own"`` (:meth:`to_native`).
    Subclasses implement :meth:`tokens`: the backbone's input (B, 3, H', W') -> (B, h*w, dim).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        name: str,
        patch_size: int,
        dim: int,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.name, self.patch_size, self.dim = name, patch_size, dim
        self.mean, self.std = tuple(mean), tuple(std)

    def to_native(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised (B, 3, H, W) -> what the backbone is given: the same tensor, or
        with ``input_norm="own"`` normalised with this backbone's own mean/std instead (in at
        least float32, then rounded once to the images' precision: four steps in bfloat16
        erred up to 7 times as much as the rounding alone)."""
        if not self.converts_input():
            return images
        x = images.float() if images.element_size() < 4 else images
        kw = {"device": x.device, "dtype": x.dtype}
        in_mean, in_std = (
            torch.tensor(v, **kw).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD)
        )
        mean, std = (torch.tensor(v, **kw).view(1, 3, 1, 1) for v in (self.mean, self.std))
        return ((x * in_std + in_mean - mean) / std).to(images.dtype)

    def train(self, mode: bool = True):
        """Backbones are frozen: they stay in eval mode (no dropout, no RoPE jitter) always."""
        return super().train(False)

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised (B, 3, H, W) -> patch features (B, dim, h, w)."""
        weight = first(self.model.parameters())  # (closed: loftup.stops)
        check_backbone_batch(images, weight.device)
        images = to_patch_multiple(images, self.patch_size)
        check_finite_images(images)  # what the backbone is given, after the resize
        b, _, height, width = images.shape
        h, w = height // self.patch_size, width // self.patch_size
        dtype = weight.dtype
        if not b:  # transformers' attention cannot reshape an empty batch: empty in, empty out
            return images.new_empty(0, self.dim, h, w, dtype=dtype)
        tokens = self.tokens(self.to_native(images).to(dtype))  # converted before the cast
        return tokens.transpose(1, 2).reshape(b, self.dim, h, w)
