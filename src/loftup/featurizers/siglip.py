"""SigLIP and SigLIP 2 ViT-B/16 on transformers.

Features: the last layer's tokens after the post-LayerNorm (``last_hidden_state``; SigLIP has
no class token, so every token is a patch), as (B, 768, H/16, W/16); the attention-pooling head
is not run. The backbone is given the ImageNet-normalised image as it is, as the paper's code
gives its SigLIP trunks (the features the released upsamplers were trained on);
``input_norm="own"`` converts it to SigLIP's mean = std = 0.5 first.

The official SigLIP 2 checkpoint of the released upsampler's backbone (google/siglip2-base-
patch16-224, a fixed-resolution model) is stored in the SigLIP layout and runs on
SiglipVisionModel with bicubically interpolated positional embeddings. SigLIP 2 "NaFlex"
checkpoints (google/siglip2-base-patch16-naflex, model_type ``siglip2``) are another model, with
other weights and other features: they are backbone ``siglip2_vitb16_naflex``, which runs them on
Siglip2VisionModel (the image as a sequence of flattened patches; it resizes its positional
embeddings itself), and a NaFlex folder given as ``siglip2_vitb16`` (or a fixed-resolution one
as ``siglip2_vitb16_naflex``) is refused, naming the backbone and the hub id that fit.

A fixed-resolution SigLIP 2 folder has the same model_type ("siglip") and the same vision
architecture as a SigLIP one; what tells them apart is the text tower's tokenizer: SigLIP 2 uses
Gemma's 256000-token vocabulary, SigLIP (English) a 32000-token one and the multilingual
SigLIP a 250000-token one (``text_config.vocab_size``; ``tokenizer_config.json``'s class where
the folder has it). A full folder of the other generation is refused (its features are not the
ones the paired upsampler was trained on, though the preprocessing, mean = std = 0.5, is the
same); a folder of the vision tower alone records neither and is taken as named.
"""

from __future__ import annotations

import json

import torch

from ..errors import CheckpointError
from . import FeaturizerSpec, register
from .hf import (
    HFFeaturizer,
    check_model_type,
    from_transformers,
    load_strict,
    read_config,
    resolve_weights,
)

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


class SiglipFeaturizer(HFFeaturizer):
    """SiglipVisionModel (fixed-resolution SigLIP / SigLIP 2): ``last_hidden_state``."""

    def __init__(self, model, *, name: str) -> None:
        cfg = model.config
        super().__init__(
            model,
            name=name,
            patch_size=cfg.patch_size,
            dim=cfg.hidden_size,
            mean=SIGLIP_MEAN,
            std=SIGLIP_STD,
        )

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values, interpolate_pos_encoding=True)
        return out.last_hidden_state


def to_patch_sequence(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, h*w, p*p*3): row-major patches, each flattened as (row, col, channel),
    the layout Siglip2VisionModel's patch embedding reads."""
    b, c, height, width = pixel_values.shape
    h, w = height // patch_size, width // patch_size
    x = pixel_values.reshape(b, c, h, patch_size, w, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, h * w, patch_size * patch_size * c)


class Siglip2NaflexFeaturizer(SiglipFeaturizer):
    """Siglip2VisionModel (NaFlex): the image as one unpadded patch sequence."""

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        b, _, height, width = pixel_values.shape
        p = self.patch_size
        seq = to_patch_sequence(pixel_values, p)
        shapes = torch.tensor([[height // p, width // p]] * b, device=seq.device)
        mask = torch.ones(seq.shape[:2], dtype=torch.long, device=seq.device)
        out = self.model(pixel_values=seq, pixel_attention_mask=mask, spatial_shapes=shapes)
        return out.last_hidden_state


#: Text vocabulary size -> SigLIP generation (the text tower's tokenizer tells them apart).
_GENERATION_OF_VOCAB = {32000: 1, 250000: 1, 256000: 2}
#: tokenizer_config.json's "tokenizer_class" -> generation (SigLIP 2 uses Gemma's tokenizer).
_GENERATION_OF_TOKENIZER = {
    "SiglipTokenizer": 1,
    "GemmaTokenizer": 2,
    "GemmaTokenizerFast": 2,
    "Siglip2Tokenizer": 2,
}
_LABEL = {1: "SigLIP", 2: "SigLIP 2"}


def generation(folder) -> tuple[int | None, str]:
    """The SigLIP generation (1 or 2) a fixed-resolution folder holds and how that is known,
    or (None, "") where it records nothing that says (a vision tower alone, a test model)."""
    text = read_config(folder).get("text_config")
    if isinstance(text, dict) and text.get("model_type", "siglip_text_model").startswith("siglip"):
        vocab = text.get("vocab_size", 32000)  # transformers' default, left out of config.json
        if vocab in _GENERATION_OF_VOCAB:
            return _GENERATION_OF_VOCAB[vocab], f"its text tower's vocabulary has {vocab} tokens"
    try:
        tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return None, ""
    cls = tokenizer.get("tokenizer_class") if isinstance(tokenizer, dict) else None
    if cls in _GENERATION_OF_TOKENIZER:
        return _GENERATION_OF_TOKENIZER[cls], f"its tokenizer_config.json names {cls}"
    return None, ""


def check_generation(folder, name: str, wanted: int) -> None:
    """A CheckpointError where ``folder`` holds the other SigLIP generation than ``name``."""
    from ..hub import RELEASED

    found, why = generation(folder)
    if found is None or found == wanted:
        return
    trained = {c.backbone: c.name for c in RELEASED.values()}
    other = "siglip2_vitb16" if found == 2 else "siglip_vitb16"
    raise CheckpointError(
        f"{folder} holds {_LABEL[found]} weights ({why}), but backbone {name} is "
        f"{_LABEL[wanted]}, the features {trained[name]} was trained on; pass it as backbone "
        f"{other} (the backbone of {trained[other]}), or a {_LABEL[wanted]} folder as {name}"
    )


#: model_type of the fixed-resolution models (SiglipModel, or its vision tower saved alone) and
#: of the NaFlex ones (Siglip2Model, Siglip2VisionModel).
_FIXED = ("siglip", "siglip_vision_model")
_NAFLEX = ("siglip2", "siglip2_vision_model")
NAFLEX_NAME, NAFLEX_REPO = "siglip2_vitb16_naflex", "google/siglip2-base-patch16-naflex"


def check_resolution(folder, name: str, kind: str, default: str, naflex: bool) -> None:
    """A CheckpointError where ``folder`` (of model_type ``kind``) holds a NaFlex model and
    backbone ``name`` is a fixed-resolution one (its official weights ``default``), or the
    other way round: the two are different checkpoints, whose features differ."""
    from ..hub import RELEASED

    if (kind in _NAFLEX) == naflex:
        return
    trained = {c.backbone: c.name for c in RELEASED.values()}
    if kind in _NAFLEX:
        why = f", the features {trained[name]} was trained on" if name in trained else ""
        raise CheckpointError(
            f"{folder} holds a SigLIP 2 NaFlex model (model_type {kind!r}, as {NAFLEX_REPO}), "
            f"but backbone {name} is the fixed-resolution {default}{why}: pass the folder of "
            f"{default} (or no backbone weights, for the official ones), or this folder as "
            f"backbone {NAFLEX_NAME}"
        )
    found, _ = generation(folder)
    fits = {1: "siglip_vitb16", 2: "siglip2_vitb16"}.get(found, "siglip2_vitb16 or siglip_vitb16")
    raise CheckpointError(
        f"{folder} holds a fixed-resolution SigLIP model (model_type {kind!r}), but backbone "
        f"{name} is SigLIP 2 NaFlex ({default}): pass it as backbone {fits}, or the folder of "
        f"{default} as {name}"
    )


def _load(name: str, weights, device, default: str, wanted: int, naflex: bool):
    Siglip2VisionModel, SiglipVisionModel = from_transformers(
        "Siglip2VisionModel", "SiglipVisionModel"
    )

    folder = resolve_weights(weights, default, name)
    kind = check_model_type(folder, name, _FIXED + _NAFLEX)
    check_resolution(folder, name, kind, default, naflex)
    if naflex:
        model = load_strict(Siglip2VisionModel, folder, name, vision_use_head=False)
        return Siglip2NaflexFeaturizer(model, name=name).to(device)
    check_generation(folder, name, wanted)
    model = load_strict(SiglipVisionModel, folder, name, vision_use_head=False)
    return SiglipFeaturizer(model, name=name).to(device)


for _name, _repo, _label, _generation, _naflex in (
    ("siglip_vitb16", "google/siglip-base-patch16-224", "SigLIP ViT-B/16 (224 px)", 1, False),
    ("siglip2_vitb16", "google/siglip2-base-patch16-224", "SigLIP 2 ViT-B/16 (224 px)", 2, False),
    (NAFLEX_NAME, NAFLEX_REPO, "SigLIP 2 ViT-B/16 NaFlex (any aspect ratio)", 2, True),
):

    def _builder(weights, device, _n=_name, _r=_repo, _g=_generation, _f=_naflex):
        return _load(_n, weights, device, _r, _g, _f)

    register(
        FeaturizerSpec(
            _name,
            _builder,
            patch_size=16,
            dim=768,
            default_weights=_repo,
            description=f"{_label}, last-layer patch tokens",
            image_size=None if _naflex else 224,
        )
    )
