"""Which weight is odd in a LoftUp file whose widths disagree (:func:`odd_width`), for
:func:`~loftup.convert.infer_config`'s error: the channel norm, the grid's frequencies, the
blocks, or two upsamplers' weights mixed, as a third weight (the head's) says."""

from __future__ import annotations

import torch


def odd_width(state: dict, dim: int, width: int) -> str:
    """Which weight is odd where the channel norm's C (``dim``) and the grid's frequencies do
    not make the blocks' token width (``width`` = C + 4 x grid_freqs): the head's output
    channels, a third witness of C, decide between the first block (the head's and the next
    block's inputs say the width C and the grid make), the grid's frequencies (the channel norm
    and the head agree), the channel norm (the head and the token width agree) and a file
    that mixes upsamplers (no two agree)."""
    from .convert import _theirs  # (convert imports this module)

    freqs = state["grid_encoder.phases"].shape[-1]
    head = state.get("head.conv.weight")
    c_head = head.shape[0] if isinstance(head, torch.Tensor) and head.dim() == 4 else None
    name = {k: f"{k!r}{_theirs(k)}" for k in ("channel_norm.weight", "head.conv.weight")}
    name |= {k: f"{k!r}{_theirs(k)}" for k in ("grid_encoder.phases", "blocks.0.ffn.fc1.weight")}
    if c_head == dim and _widths(state) == {dim + 4 * freqs}:
        return (
            f"weight {name['blocks.0.ffn.fc1.weight']} takes tokens {width} wide, where the "
            f"channel norm and the head (C={dim}), the grid phases ({freqs} frequencies) and the "
            f"head's and the next block's inputs say {dim + 4 * freqs} (C + 4 x grid_freqs): "
            "that weight is damaged"
        )
    if c_head == dim and width > dim and (width - dim) % 4 == 0:
        return (
            f"weight {name['grid_encoder.phases']} holds {freqs} grid frequencies, where the "
            f"channel norm and the head (C={dim}) and the blocks' token width ({width} = C + 4 x "
            f"grid_freqs) say {(width - dim) // 4}: the grid phases are damaged"
        )
    if c_head == dim:
        return (
            f"the blocks' token width, {width} (weight {name['blocks.0.ffn.fc1.weight']}), is no "
            f"C + 4 x grid_freqs for C={dim}, as the channel norm and the head say: the blocks' "
            "weights are damaged"
        )
    says = (
        f"weight {name['channel_norm.weight']} says C={dim}, the blocks' token width says "
        f"C={width - 4 * freqs} ({width} = C + 4 x {freqs})"
    )
    if c_head is None:
        return f"{says}, and no weight {name['head.conv.weight']} says which: the file is damaged"
    if c_head + 4 * freqs == width:
        return (
            f"{says}, as does the head's {name['head.conv.weight']}: the channel norm is another "
            "upsampler's (the file mixes two upsamplers' weights)"
        )
    return (
        f"{says}, the head's {name['head.conv.weight']} C={c_head}: the file mixes upsamplers' "
        "weights"
    )


def _widths(state: dict) -> set[int]:
    """The token widths the head's input (``head.conv.weight``) and the next block's
    (``blocks.1.ffn.fc1.weight``) say, witnesses of the first block's (empty where none)."""
    head, fc1 = state.get("head.conv.weight"), state.get("blocks.1.ffn.fc1.weight")
    said = {head.shape[1]} if isinstance(head, torch.Tensor) and head.dim() == 4 else set()
    return said | ({fc1.shape[1]} if isinstance(fc1, torch.Tensor) and fc1.dim() == 2 else set())
