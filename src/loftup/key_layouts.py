"""The paper's checkpoint key names <-> ours: one table read both ways
(:func:`reference_to_native`, :func:`native_to_reference`), and a reference training
checkpoint's ``state_dict`` to the hub layout (:func:`training_to_reference`). Each is a small
pure function; reading a checkpoint and building a model from it is :mod:`loftup.convert`'s.
"""

from __future__ import annotations

import functools
import re

from .errors import CheckpointError
from .holders import same_value

#: The two layouts' key names side by side: (reference hub key, our key), where ``{i}`` stands
#: for a block index and ``{p}`` for a parameter or buffer name. Both directions read this one
#: table (first match wins).
_LAYOUT = [
    ("upsampler.fourier_feat.1.biases", "image_encoder.phases"),
    ("upsampler.lr_pe.biases", "grid_encoder.phases"),
    ("upsampler.first_conv.0.norm.{p}", "stem.norm.{p}"),
    ("upsampler.first_conv.1.{p}", "stem.conv1.{p}"),
    ("upsampler.first_conv.2.{p}", "stem.bn1.{p}"),
    ("upsampler.first_conv.4.{p}", "stem.conv2.{p}"),
    ("upsampler.first_conv.5.{p}", "stem.bn2.{p}"),
    ("upsampler.ca_transformer.layers.{i}.0.norm_q.{p}", "blocks.{i}.norm_q.{p}"),
    ("upsampler.ca_transformer.layers.{i}.0.norm_kv.{p}", "blocks.{i}.norm_kv.{p}"),
    ("upsampler.ca_transformer.layers.{i}.0.attention.in_proj_{p}", "blocks.{i}.attn.in_proj_{p}"),
    (
        "upsampler.ca_transformer.layers.{i}.0.attention.out_proj.{p}",
        "blocks.{i}.attn.out_proj.{p}",
    ),
    ("upsampler.ca_transformer.layers.{i}.1.net.0.{p}", "blocks.{i}.ffn.norm.{p}"),
    ("upsampler.ca_transformer.layers.{i}.1.net.1.{p}", "blocks.{i}.ffn.fc1.{p}"),
    ("upsampler.ca_transformer.layers.{i}.1.net.4.{p}", "blocks.{i}.ffn.fc2.{p}"),
    ("upsampler.ca_transformer.norm.{p}", "norm.{p}"),
    ("upsampler.final_conv.0.{p}", "head.conv.{p}"),
    ("upsampler.final_conv.1.{p}", "head.norm.{p}"),
    ("channelnorm.norm.{p}", "channel_norm.{p}"),
]


@functools.cache
def _pattern(template: str) -> re.Pattern:
    """A key template as a regular expression with named groups ``i`` and ``p``."""
    groups = {"{i}": r"(?P<i>\d+)", "{p}": r"(?P<p>\w+)"}
    parts = re.split(r"(\{[ip]\})", template)
    return re.compile("".join(groups.get(part, re.escape(part)) for part in parts))


def _rename(state: dict, reverse: bool, what: str) -> dict:
    table = [(b, a) if reverse else (a, b) for a, b in _LAYOUT]
    out = {}
    for key, value in state.items():
        for source, target in table:
            m = _pattern(source).fullmatch(key)
            if m:
                out[target.format(**m.groupdict())] = value
                break
        else:
            raise CheckpointError(f"key {key!r} fits no known {what} layout")
    return out


def reference_to_native(state: dict) -> dict:
    """Hub layout (``upsampler.*``, ``channelnorm.norm.*``) -> this package's key names."""
    return _rename(state, False, "LoftUp reference")


def native_to_reference(state: dict) -> dict:
    """This package's key names -> the hub layout of the paper's code."""
    return _rename(state, True, "loftup")


def training_to_reference(state: dict) -> dict:
    """A reference training checkpoint's ``state_dict`` -> hub layout.

    Keeps ``upsampler.*`` and the channel norm, under ``model.1.norm.*`` (the training layout)
    renamed to ``channelnorm.norm.*``, or under ``channelnorm.norm.*`` already (a hub-layout
    state dict wrapped as ``{"state_dict": ...}``); everything else (the attention downsampler,
    the backbone, optimiser entries) is training-only. Both forms of one weight that differ
    are refused: which one the upsampler was trained with cannot be told.
    """
    out = {}
    for key, value in state.items():
        if not isinstance(key, str):  # not a weight's name: not the upsampler's either
            continue
        if key.startswith(("upsampler.", "channelnorm.norm.")):
            out[key] = value
    for key, value in state.items():
        if isinstance(key, str) and key.startswith("model.1.norm."):
            hub = "channelnorm.norm." + key[len("model.1.norm.") :]
            if hub in out and not same_value(out[hub], value):
                raise CheckpointError(
                    f"the channel norm is there twice, as {key!r} and {hub!r}, with other "
                    "values: keep one of them in the state dict"
                )
            out[hub] = value
    if not any(k.startswith("channelnorm.") for k in out):
        raise CheckpointError(
            "training checkpoint has no channel norm (expected keys 'model.1.norm.weight/bias' "
            "in the training layout or 'channelnorm.norm.weight/bias' in the hub layout)"
        )
    return out


def reference_name(key: str) -> str:
    """`` ('NAME' in the paper's layout)`` for ``key`` (this package's name) where that layout
    has it, else nothing: the errors named only ours, which a hub-layout file does not hold."""
    try:
        (theirs,) = native_to_reference({key: None})
    except CheckpointError:
        return ""
    return f" ({theirs!r} in the paper's layout)"
