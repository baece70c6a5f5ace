"""Checkpoint layouts: the paper's key names <-> ours, and building a model that fits the weights.

Three layouts exist: the hub files of the paper (``upsampler.*`` + ``channelnorm.norm.*``), the
paper's training checkpoints (``{"state_dict": ...}`` with ``model.1.norm.*``), and ours (the
module names of :class:`loftup.LoftUp`, also inside ``loftup train`` checkpoints as ``model``).
Each conversion is a small pure function; after it, loading is strict.
"""

from __future__ import annotations

import re

import torch

from .errors import CheckpointError
from .model import LoftUp, LoftUpConfig

#: Reference (hub) key -> our key, as ordered regular expressions.
_REFERENCE_TO_NATIVE = [
    (r"upsampler\.fourier_feat\.1\.biases", "image_encoder.phases"),
    (r"upsampler\.lr_pe\.biases", "grid_encoder.phases"),
    (r"upsampler\.first_conv\.0\.norm\.(weight|bias)", r"stem.norm.\1"),
    (r"upsampler\.first_conv\.1\.(\w+)", r"stem.conv1.\1"),
    (r"upsampler\.first_conv\.2\.(\w+)", r"stem.bn1.\1"),
    (r"upsampler\.first_conv\.4\.(\w+)", r"stem.conv2.\1"),
    (r"upsampler\.first_conv\.5\.(\w+)", r"stem.bn2.\1"),
    (
        r"upsampler\.ca_transformer\.layers\.(\d+)\.0\.(norm_q|norm_kv)\.(weight|bias)",
        r"blocks.\1.\2.\3",
    ),
    (
        r"upsampler\.ca_transformer\.layers\.(\d+)\.0\.attention\.(in_proj_weight|in_proj_bias)",
        r"blocks.\1.attn.\2",
    ),
    (
        r"upsampler\.ca_transformer\.layers\.(\d+)\.0\.attention\.out_proj\.(weight|bias)",
        r"blocks.\1.attn.out_proj.\2",
    ),
    (
        r"upsampler\.ca_transformer\.layers\.(\d+)\.1\.net\.0\.(weight|bias)",
        r"blocks.\1.ffn.norm.\2",
    ),
    (
        r"upsampler\.ca_transformer\.layers\.(\d+)\.1\.net\.1\.(weight|bias)",
        r"blocks.\1.ffn.fc1.\2",
    ),
    (
        r"upsampler\.ca_transformer\.layers\.(\d+)\.1\.net\.4\.(weight|bias)",
        r"blocks.\1.ffn.fc2.\2",
    ),
    (r"upsampler\.ca_transformer\.norm\.(weight|bias)", r"norm.\1"),
    (r"upsampler\.final_conv\.0\.(weight|bias)", r"head.conv.\1"),
    (r"upsampler\.final_conv\.1\.(weight|bias)", r"head.norm.\1"),
    (r"channelnorm\.norm\.(weight|bias)", r"channel_norm.\1"),
]

#: Our key -> reference key (the inverse table, for exporting to the paper's layout).
_NATIVE_TO_REFERENCE = [
    (r"image_encoder\.phases", "upsampler.fourier_feat.1.biases"),
    (r"grid_encoder\.phases", "upsampler.lr_pe.biases"),
    (r"stem\.norm\.(weight|bias)", r"upsampler.first_conv.0.norm.\1"),
    (r"stem\.conv1\.(\w+)", r"upsampler.first_conv.1.\1"),
    (r"stem\.bn1\.(\w+)", r"upsampler.first_conv.2.\1"),
    (r"stem\.conv2\.(\w+)", r"upsampler.first_conv.4.\1"),
    (r"stem\.bn2\.(\w+)", r"upsampler.first_conv.5.\1"),
    (
        r"blocks\.(\d+)\.(norm_q|norm_kv)\.(weight|bias)",
        r"upsampler.ca_transformer.layers.\1.0.\2.\3",
    ),
    (
        r"blocks\.(\d+)\.attn\.(in_proj_weight|in_proj_bias)",
        r"upsampler.ca_transformer.layers.\1.0.attention.\2",
    ),
    (
        r"blocks\.(\d+)\.attn\.out_proj\.(weight|bias)",
        r"upsampler.ca_transformer.layers.\1.0.attention.out_proj.\2",
    ),
    (r"blocks\.(\d+)\.ffn\.norm\.(weight|bias)", r"upsampler.ca_transformer.layers.\1.1.net.0.\2"),
    (r"blocks\.(\d+)\.ffn\.fc1\.(weight|bias)", r"upsampler.ca_transformer.layers.\1.1.net.1.\2"),
    (r"blocks\.(\d+)\.ffn\.fc2\.(weight|bias)", r"upsampler.ca_transformer.layers.\1.1.net.4.\2"),
    (r"norm\.(weight|bias)", r"upsampler.ca_transformer.norm.\1"),
    (r"head\.conv\.(weight|bias)", r"upsampler.final_conv.0.\1"),
    (r"head\.norm\.(weight|bias)", r"upsampler.final_conv.1.\1"),
    (r"channel_norm\.(weight|bias)", r"channelnorm.norm.\1"),
]


def _rename(state: dict, table, what: str) -> dict:
    out = {}
    for key, value in state.items():
        for pattern, repl in table:
            if re.fullmatch(pattern, key):
                out[re.sub(f"^{pattern}$", repl, key)] = value
                break
        else:
            raise CheckpointError(f"key {key!r} fits no known {what} layout")
    return out


def reference_to_native(state: dict) -> dict:
    """Hub layout (``upsampler.*``, ``channelnorm.norm.*``) -> this package's key names."""
    return _rename(state, _REFERENCE_TO_NATIVE, "LoftUp reference")


def native_to_reference(state: dict) -> dict:
    """This package's key names -> the hub layout of the paper's code."""
    return _rename(state, _NATIVE_TO_REFERENCE, "loftup")


def training_to_reference(state: dict) -> dict:
    """A reference training checkpoint's ``state_dict`` -> hub layout.

    Keeps ``upsampler.*`` and renames ``model.1.norm.*`` to ``channelnorm.norm.*``; everything
    else (the attention downsampler, the backbone, optimiser entries) is training-only.
    """
    out = {}
    for key, value in state.items():
        if key.startswith("upsampler."):
            out[key] = value
        elif key.startswith("model.1.norm."):
            out["channelnorm.norm." + key[len("model.1.norm.") :]] = value
    if not any(k.startswith("channelnorm.") for k in out):
        raise CheckpointError(
            "training checkpoint has no channel norm (expected keys 'model.1.norm.weight/bias')"
        )
    return out


def to_native(obj, origin: str) -> tuple[dict, dict | None]:
    """Any known checkpoint object -> (native state dict, saved config dict or None)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{origin}: expected a dict of tensors, got {type(obj).__name__}")
    if "model" in obj and isinstance(obj.get("model"), dict):  # our training checkpoints
        return obj["model"], obj.get("model_config")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):  # reference training layout
        return reference_to_native(training_to_reference(obj["state_dict"])), None
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{origin}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                "this is not a LoftUp state dict"
            )
    if any(k.startswith(("upsampler.", "channelnorm.")) for k in obj):
        return reference_to_native(obj), None
    return obj, None


def infer_config(state: dict) -> LoftUpConfig:
    """Hyper-parameters read from the weights' shapes (heads cannot be read: 4, the released)."""
    try:
        dim = state["channel_norm.weight"].shape[0]
        phases = state["image_encoder.phases"]
        grid_freqs = state["grid_encoder.phases"].shape[-1]
        depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        mlp_dim = state["blocks.0.ffn.fc1.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(
            f"weights lack {e.args[0]!r}; this is not a LoftUp checkpoint"
        ) from None
    if phases.dim() != 3 or phases.shape[1] not in (3, 5):
        raise CheckpointError(
            f"'image_encoder.phases' has shape {tuple(phases.shape)}; expected (2, 5, n_freqs)"
        )
    return LoftUpConfig(
        dim=dim,
        depth=depth,
        n_freqs=phases.shape[-1],
        grid_freqs=grid_freqs,
        mlp_dim=mlp_dim,
        coords=phases.shape[1] == 5,
    )


def build_from_state(state: dict, config: LoftUpConfig | None, origin: str) -> LoftUp:
    """A LoftUp whose architecture fits ``state``, loaded strictly."""
    model = LoftUp(config=config or infer_config(state))
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise CheckpointError(f"{origin}: missing weight {key!r} (shape {tuple(value.shape)})")
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{origin}: weight {key!r} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)} for C={model.dim}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"{origin}: unexpected weight {extra[0]!r} fits no layer")
    model.load_state_dict(state, strict=True)
    return model
