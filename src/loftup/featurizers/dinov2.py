"""DINOv2 ViT-S/B/L/g 14, with and without registers, on transformers; and ``dinov2_tiny``.

Features: the last layer's patch tokens after the final LayerNorm (``last_hidden_state``), the
class token and the 4 register tokens dropped, as (B, dim, H/14, W/14).

Positional embeddings are interpolated as the original DINOv2 torch-hub models do, which is what
the released upsamplers were trained with: without registers, bicubic with scale factor
(n + 0.1) / N (the "interpolate_offset" of the DINOv2 code); with registers, bicubic to the exact
size with antialiasing. transformers' Dinov2Model resamples to the exact size without the
offset, which moves every interpolated embedding slightly (at the model's own grid, 37x37 for
518 px, nothing is interpolated and both agree).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from . import FeaturizerSpec, register
from .hf import HFFeaturizer, check_model_type, from_transformers, load_strict, resolve_weights

HUB_OFFSET = 0.1  # DINOv2 torch-hub models without registers: interpolate_offset=0.1


def hub_pos_embed(
    pos_embed: torch.Tensor, h: int, w: int, offset: float = HUB_OFFSET
) -> torch.Tensor:
    """DINOv2's positional embeddings (1, 1 + N*N, C) for an h x w patch grid (1, 1 + h*w, C).

    Bicubic with ``scale_factor = ((h + offset) / N, (w + offset) / N)`` as the original DINOv2
    code does (offset 0: the same as resizing to exactly (h, w)); computed in float32.
    """
    n = int(round((pos_embed.shape[1] - 1) ** 0.5))
    if n * n != pos_embed.shape[1] - 1:  # internal: the loaded model's table is square
        raise ValueError(f"positional embeddings of shape {tuple(pos_embed.shape)} are not square")
    if h == w == n:
        return pos_embed
    cls, grid = pos_embed[:, :1], pos_embed[:, 1:].float()
    grid = grid.reshape(1, n, n, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid, scale_factor=((h + offset) / n, (w + offset) / n), mode="bicubic", antialias=False
    )
    if tuple(grid.shape[-2:]) != (h, w):
        raise RuntimeError(f"interpolated to {tuple(grid.shape[-2:])}, expected {(h, w)}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1).to(pos_embed.dtype)
    return torch.cat([cls, grid], dim=1)


def _hub_interpolation(embeddings, emb: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A Dinov2Embeddings' ``interpolate_pos_encoding(emb, height, width)`` as the DINOv2
    torch-hub models interpolate (:func:`hub_pos_embed`)."""
    p = embeddings.patch_size
    return hub_pos_embed(embeddings.position_embeddings, height // p, width // p)


def _use_hub_interpolation(embeddings) -> None:
    """Make a transformers Dinov2Embeddings interpolate like the DINOv2 torch-hub models: a
    partial of a module-level function, which pickles (a pipeline sent to DataLoader workers,
    torch.multiprocessing); a method of a local function was unpickled as
    ``getattr(embeddings, "interpolate")``, an AttributeError."""
    embeddings.interpolate_pos_encoding = functools.partial(_hub_interpolation, embeddings)


class Dinov2Featurizer(HFFeaturizer):
    """DINOv2 (optionally with registers): ``last_hidden_state`` without the leading tokens."""

    def __init__(self, model, *, name: str, skip: int) -> None:
        cfg = model.config
        super().__init__(model, name=name, patch_size=cfg.patch_size, dim=cfg.hidden_size)
        self.skip = skip  # class token + registers

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state[:, self.skip :]


def _load(name: str, weights, device, default: str, registers: bool) -> Dinov2Featurizer:
    Dinov2Model, Dinov2WithRegistersModel = from_transformers(
        "Dinov2Model", "Dinov2WithRegistersModel"
    )

    folder = resolve_weights(weights, default, name)
    fits = _names_by_type(folder, name)
    if registers:
        check_model_type(folder, name, ("dinov2_with_registers",), fits)
        model = load_strict(Dinov2WithRegistersModel, folder, name)
        skip = 1 + model.config.num_register_tokens
    else:
        check_model_type(folder, name, ("dinov2",), fits)
        model = load_strict(Dinov2Model, folder, name)
        _use_hub_interpolation(model.embeddings)
        skip = 1
    return Dinov2Featurizer(model, name=name, skip=skip).to(device)


def _names_by_type(folder, name: str) -> dict[str, str]:
    """model_type -> the backbone that reads a folder of it (``dinov2``: without registers,
    ``dinov2_with_registers``: with), of the size of ``folder``'s width, or of ``name``'s where
    that width is no released size's (a small test model): the fix where the two are mixed up."""
    from .hf import read_config

    width = read_config(folder, name).get("hidden_size")
    letter = next((k for k, (dim, _) in _SIZES.items() if dim == width), None)
    if letter is None:
        letter = name[len("dinov2_vit")] if name.startswith("dinov2_vit") else None
    if letter is None:
        return {}
    return {"dinov2": f"dinov2_vit{letter}14", "dinov2_with_registers": f"dinov2_vit{letter}14_reg"}


def tiny_config():
    """The ``dinov2_tiny`` architecture: a real Dinov2Model with about 44k parameters."""
    (Dinov2Config,) = from_transformers("Dinov2Config")

    return Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        patch_size=14,
        image_size=224,
    )


def _tiny(weights, device) -> Dinov2Featurizer:
    """Random weights from seed 0 (no download), or a folder written by its save_pretrained."""
    (Dinov2Model,) = from_transformers("Dinov2Model")

    if weights is not None:
        return _load("dinov2_tiny", weights, device, "", registers=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Dinov2Model(tiny_config()).eval()
    _use_hub_interpolation(model.embeddings)
    return Dinov2Featurizer(model, name="dinov2_tiny", skip=1).to(device)


_SIZES = {"s": (384, "small"), "b": (768, "base"), "l": (1024, "large"), "g": (1536, "giant")}

for _letter, (_dim, _word) in _SIZES.items():
    for _reg in (False, True):
        _name = f"dinov2_vit{_letter}14" + ("_reg" if _reg else "")
        _repo = f"facebook/dinov2-{'with-registers-' if _reg else ''}{_word}"

        def _builder(weights, device, _n=_name, _r=_repo, _g=_reg):
            return _load(_n, weights, device, _r, _g)

        register(
            FeaturizerSpec(
                _name,
                _builder,
                patch_size=14,
                dim=_dim,
                default_weights=_repo,
                description=f"DINOv2 ViT-{_letter.upper()}/14"
                + (" with registers" if _reg else ""),
            )
        )

register(
    FeaturizerSpec(
        "dinov2_tiny",
        _tiny,
        patch_size=14,
        dim=32,
        default_weights=None,
        description="tiny random-weight DINOv2 (seed 0) for tests and examples",
    )
)
