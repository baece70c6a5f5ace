"""DINOv3 ViT-S/16, ViT-S+/16 and ViT-B/16 on transformers (DINOv3ViTModel).

Features: the last layer's patch tokens after the final LayerNorm (``last_hidden_state``), the
class token and the register tokens dropped, as (B, dim, H/16, W/16). DINOv3 encodes positions
with rotary embeddings computed for the grid at hand, so any grid works without interpolation.

ViT-S/16 and ViT-S+/16 share every number of their config.json but one: both are 384 wide, 12
layers of 6 heads, with 4 registers and ``intermediate_size`` 1536 (ViT-S+'s SwiGLU of ratio 6
is 2/3 of 6 x 384 wide). ViT-S+ has the gated MLP (``use_gated_mlp: true``, ``hidden_act``
silu), ViT-S the plain one: that flag tells their folders apart (:func:`check_variant`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError
from . import FeaturizerSpec, register
from .hf import HFFeaturizer, check_model_type, from_transformers, load_strict, resolve_weights
from .hf_weights import CONFIG_FILE, read_config


class Dinov3Featurizer(HFFeaturizer):
    """DINOv3 ViT: ``last_hidden_state`` without the class and register tokens."""

    def __init__(self, model, *, name: str) -> None:
        cfg = model.config
        super().__init__(model, name=name, patch_size=cfg.patch_size, dim=cfg.hidden_size)
        self.skip = 1 + cfg.num_register_tokens

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state[:, self.skip :]


#: name -> (width, hub repo, label, whether its MLP is gated (SwiGLU))
_VARIANTS = {
    "dinov3_vits16": (384, "facebook/dinov3-vits16-pretrain-lvd1689m", "S", False),
    "dinov3_vits16plus": (384, "facebook/dinov3-vits16plus-pretrain-lvd1689m", "S+", True),
    "dinov3_vitb16": (768, "facebook/dinov3-vitb16-pretrain-lvd1689m", "B", False),
}


#: widths of DINOv3 ViTs Meta released that loftup registers no backbone for (their own
#: features, not a small test model of a registered one's architecture)
_UNREGISTERED = {1024: "ViT-L/16", 1280: "ViT-H+/16", 4096: "ViT-7B/16"}


def _load(name: str, weights, device, default: str) -> Dinov3Featurizer:
    (DINOv3ViTModel,) = from_transformers("DINOv3ViTModel")

    folder = resolve_weights(weights, default, name)
    check_model_type(folder, name, ("dinov3_vit",))
    check_variant(folder, name)
    return Dinov3Featurizer(load_strict(DINOv3ViTModel, folder, name), name=name).to(device)


def check_variant(folder: Path, name: str) -> None:
    """A CheckpointError where ``folder``'s config.json describes another DINOv3 than backbone
    ``name``: the other MLP (``use_gated_mlp``: a ViT-S+/16 folder given as ``dinov3_vits16``
    loaded without a word, being as wide, and its features were taken for ViT-S/16's), or the
    width of another registered one; naming the backbone that reads it. A width that none
    has (a small model of the same architecture, as the tests build) is held to the MLP
    alone; the width of a released DINOv3 that none is (:data:`_UNREGISTERED`) is refused."""
    config = read_config(folder, name)
    gated = bool(config.get("use_gated_mlp", False))  # transformers' default: the plain MLP
    width = config.get("hidden_size")
    dim, _, label, wanted = _VARIANTS[name]
    if width in _UNREGISTERED:  # it loaded as the name's backbone, its features taken for those
        raise CheckpointError(
            f"{folder} holds a DINOv3 model {width} wide (its {CONFIG_FILE}'s hidden_size: "
            f"DINOv3 {_UNREGISTERED[width]}), but backbone {name} is ViT-{label}/16, {dim} "
            f"wide, and loftup has no backbone name for {_UNREGISTERED[width]} (it reads "
            f"{', '.join(_VARIANTS)}); pass the folder of {name}"
        )
    if all(v[0] != width for v in _VARIANTS.values()):  # a test model: the name's size
        width = dim
    if (width, gated) == (dim, wanted):
        return
    fits = [n for n, v in _VARIANTS.items() if (v[0], v[3]) == (width, gated)]
    fix = f"pass it as backbone {fits[0]}, or" if fits else "pass"

    def mlp(is_gated: bool) -> str:
        return "a gated (SwiGLU) MLP" if is_gated else "a plain MLP"

    raise CheckpointError(
        f"{folder} holds a DINOv3 model {config.get('hidden_size')} wide with {mlp(gated)} "
        f"(its {CONFIG_FILE}'s hidden_size and use_gated_mlp), but backbone {name} is "
        f"ViT-{label}/16, {dim} wide with {mlp(wanted)}: other weights, other features; {fix} "
        f"the folder of {name}"
    )


for _name, (_dim, _repo, _label, _gated) in _VARIANTS.items():

    def _builder(weights, device, _n=_name, _r=_repo):
        return _load(_n, weights, device, _r)

    register(
        FeaturizerSpec(
            _name,
            _builder,
            patch_size=16,
            dim=_dim,
            default_weights=_repo,
            description=f"DINOv3 ViT-{_label}/16 (LVD-1689M; gated on the hub)",
            gated=True,
        )
    )
