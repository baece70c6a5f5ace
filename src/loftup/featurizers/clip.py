"""CLIP ViT-B/16 (OpenAI) with MaskCLIP-style dense features, on transformers.

CLIP's last block mixes every patch with the class token through attention, and what comes out
is trained only to be pooled. MaskCLIP (Zhou et al., ECCV 2022) showed that the *value*
embeddings of that block, sent through the block's attention output projection and then through
the same post-LayerNorm and visual projection that CLIP applies to its class token, are dense
features that live in CLIP's joint image-text space. For each patch token x entering the last
block:

    v = out_proj(v_proj(layer_norm1(x)))      # no attention mixing, no residual, no MLP
    f = visual_projection(post_layernorm(v))  # (512,) for ViT-B/16

The released ``loftup_clip`` upsampler was trained on exactly these 512-d features (FeatUp's
MaskCLIP featurizer), computed from the ImageNet-normalised image as it is: FeatUp and the
paper's code give every backbone that one tensor, so that is the default here too
(``input_norm="own"`` converts it to CLIP's own mean/std first).

Positional embeddings are interpolated for grids other than 14x14 as FeatUp's MaskCLIP (and the
paper's copy of it) does: bicubic with scale factor (n + 0.1) / 14, the rule of the original DINO
code (:func:`loftup.featurizers.dinov2.hub_pos_embed`). transformers' CLIP resamples to the exact
size, which moves every interpolated embedding slightly; at 224 x 224 nothing is interpolated
and both agree.
"""

from __future__ import annotations

import functools

import torch

from . import FeaturizerSpec, register
from .dinov2 import hub_pos_embed
from .hf import (
    HFFeaturizer,
    check_model_type,
    from_transformers,
    load_strict,
    quiet_transformers,
    read_config,
    resolve_weights,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _featup_interpolation(embeddings, emb: torch.Tensor, height: int, width: int):
    """A CLIPVisionEmbeddings' ``interpolate_pos_encoding(emb, height, width)`` as FeatUp's
    MaskCLIP interpolates (:func:`~loftup.featurizers.dinov2.hub_pos_embed`)."""
    p = embeddings.patch_size
    return hub_pos_embed(embeddings.position_embedding.weight[None], height // p, width // p)


def _use_featup_interpolation(embeddings) -> None:
    """Make a transformers CLIPVisionEmbeddings interpolate its positional embeddings as
    FeatUp's MaskCLIP does (scale factor (n + 0.1) / N) instead of to the exact size: a partial
    of a module-level function, which pickles (a local function's method did not unpickle)."""
    embeddings.interpolate_pos_encoding = functools.partial(_featup_interpolation, embeddings)


class MaskCLIPFeaturizer(HFFeaturizer):
    """A CLIPVisionModelWithProjection whose last block is read the MaskCLIP way."""

    revision = "featup-pos-embed"  # loftup 0.1 resampled to the exact size (other features)

    def __init__(self, model, *, name: str) -> None:
        cfg = model.config
        super().__init__(
            model,
            name=name,
            patch_size=cfg.patch_size,
            dim=cfg.projection_dim,
            mean=CLIP_MEAN,
            std=CLIP_STD,
        )
        _use_featup_interpolation(model.vision_model.embeddings)
        # run every block but the last through transformers; the last is read by hand below
        layers = model.vision_model.encoder.layers
        self.last = layers[-1]
        model.vision_model.encoder.layers = layers[:-1]

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vision = self.model.vision_model
        x = vision(pixel_values=pixel_values, interpolate_pos_encoding=True).last_hidden_state
        attn = self.last.self_attn
        v = attn.out_proj(attn.v_proj(self.last.layer_norm1(x[:, 1:])))
        return self.model.visual_projection(vision.post_layernorm(v))


def _load(name: str, weights, device, default: str) -> MaskCLIPFeaturizer:
    (CLIPVisionModelWithProjection,) = from_transformers("CLIPVisionModelWithProjection")

    folder = resolve_weights(weights, default, name)
    kind = check_model_type(folder, name, ("clip", "clip_vision_model"))
    overrides = {}
    if kind == "clip":  # a full CLIPModel folder keeps projection_dim at its top level
        (CLIPConfig,) = from_transformers("CLIPConfig")
        with quiet_transformers():  # absent from config.json: CLIPConfig's default, as there
            default = CLIPConfig().projection_dim
        overrides["projection_dim"] = read_config(folder).get("projection_dim", default)
    model = load_strict(CLIPVisionModelWithProjection, folder, name, **overrides)
    return MaskCLIPFeaturizer(model, name=name).to(device)


def _clip_vitb16(weights, device):
    return _load("clip_vitb16", weights, device, "openai/clip-vit-base-patch16")


register(
    FeaturizerSpec(
        "clip_vitb16",
        _clip_vitb16,
        patch_size=16,
        dim=512,
        default_weights="openai/clip-vit-base-patch16",
        description="CLIP ViT-B/16 (OpenAI), MaskCLIP-style 512-d patch embeddings",
        image_size=224,
    )
)
