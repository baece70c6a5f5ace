"""DINOv3 ViT-S/16 and ViT-B/16 on transformers (DINOv3ViTModel).

Features: the last layer's patch tokens after the final LayerNorm (``last_hidden_state``), the
class token and the register tokens dropped, as (B, dim, H/16, W/16). DINOv3 encodes positions
with rotary embeddings computed for the grid at hand, so any grid works without interpolation.
"""

from __future__ import annotations

import torch

from . import FeaturizerSpec, register
from .hf import HFFeaturizer, check_model_type, from_transformers, load_strict, resolve_weights


class Dinov3Featurizer(HFFeaturizer):
    """DINOv3 ViT: ``last_hidden_state`` without the class and register tokens."""

    def __init__(self, model, *, name: str) -> None:
        cfg = model.config
        super().__init__(model, name=name, patch_size=cfg.patch_size, dim=cfg.hidden_size)
        self.skip = 1 + cfg.num_register_tokens

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state[:, self.skip :]


def _load(name: str, weights, device, default: str) -> Dinov3Featurizer:
    (DINOv3ViTModel,) = from_transformers("DINOv3ViTModel")

    folder = resolve_weights(weights, default, name)
    check_model_type(folder, name, ("dinov3_vit",))
    return Dinov3Featurizer(load_strict(DINOv3ViTModel, folder, name), name=name).to(device)


for _name, _dim, _repo, _label in (
    ("dinov3_vits16", 384, "facebook/dinov3-vits16-pretrain-lvd1689m", "S"),
    ("dinov3_vitb16", 768, "facebook/dinov3-vitb16-pretrain-lvd1689m", "B"),
):

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
