"""Which weight is odd in a LoftUp file whose widths disagree (:func:`odd_width`), for
:func:`~loftup.convert.infer_config`'s error: the channel norm, the grid's frequencies, the
blocks, or two upsamplers' weights mixed, as a third weight (the head's) says; and the image's
frequencies where the stem's weights agree on another (:func:`odd_phases`)."""

from __future__ import annotations

import torch

from .key_layouts import reference_name


def odd_width(state: dict, dim: int, width: int) -> str:
    """Which weight is odd where the channel norm's C (``dim``) and the grid's frequencies do
    not make the blocks' token width (``width`` = C + 4 x grid_freqs): the head's output
    channels, a third witness of C, decide between the first block (the head's and the next
    block's inputs say the width C and the grid make), the grid's frequencies (the channel norm
    and the head agree), the channel norm (the head and the token width agree) and a file
    that mixes upsamplers (no two agree)."""
    freqs = state["grid_encoder.phases"].shape[-1]
    head = state.get("head.conv.weight")
    c_head = head.shape[0] if isinstance(head, torch.Tensor) and head.dim() == 4 else None
    name = {k: f"{k!r}{reference_name(k)}" for k in ("channel_norm.weight", "head.conv.weight")}
    name |= {
        k: f"{k!r}{reference_name(k)}" for k in ("grid_encoder.phases", "blocks.0.ffn.fc1.weight")
    }
    widths = _widths(state)
    if c_head == dim and set(widths.values()) == {dim + 4 * freqs}:
        inputs = " and the ".join(widths) + (" inputs" if len(widths) > 1 else " input")
        return (
            f"weight {name['blocks.0.ffn.fc1.weight']} takes tokens {width} wide, where the "
            f"channel norm and the head (C={dim}), the grid phases ({freqs} frequencies) and the "
            f"{inputs} say {dim + 4 * freqs} (C + 4 x grid_freqs): that weight is damaged"
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
    bias = state.get("channel_norm.bias")
    if c_head + 4 * freqs == width and _size(bias) == c_head:  # the weight alone is odd
        return (
            f"weight {name['channel_norm.weight']} holds {dim} channels, where its bias, the "
            f"head's {name['head.conv.weight']} and the blocks' token width ({width} = C + 4 x "
            f"{freqs}) say C={c_head}: that weight is damaged"
        )
    if c_head + 4 * freqs == width:
        return (
            f"{says}, as does the head's {name['head.conv.weight']}: the channel norm is another "
            "upsampler's (the file mixes two upsamplers' weights)"
        )
    return (
        f"{says}, the head's {name['head.conv.weight']} C={c_head}: the file mixes upsamplers' "
        "weights"
    )


def _widths(state: dict) -> dict[str, int]:
    """The token widths the head's input (``head.conv.weight``) and the next block's
    (``blocks.1.ffn.fc1.weight``) say, witnesses of the first block's, by who says them (none
    where there is neither: a model of depth 1 has no next block)."""
    head, fc1 = state.get("head.conv.weight"), state.get("blocks.1.ffn.fc1.weight")
    said = {"head's": head.shape[1]} if isinstance(head, torch.Tensor) and head.dim() == 4 else {}
    if isinstance(fc1, torch.Tensor) and fc1.dim() == 2:
        said["next block's"] = fc1.shape[1]
    return said


def _size(weight) -> int | None:
    """The length of ``weight`` where it is a 1-D tensor (a norm's), else None."""
    return weight.shape[0] if isinstance(weight, torch.Tensor) and weight.dim() == 1 else None


def odd_phases(state: dict) -> str | None:
    """Where the image's Fourier phases (``image_encoder.phases``, (2, coords, n_freqs)) do not
    make the stem's input width (3 + 2 x coords x n_freqs) that its norm and first conv agree
    on: the phases are damaged (the stem's norm was blamed, for the phases' n_freqs); else
    None (a stem whose two weights disagree is named by the load)."""
    phases, conv = state["image_encoder.phases"], state.get("stem.conv1.weight")
    coords, freqs = phases.shape[1], phases.shape[-1]
    width = _size(state.get("stem.norm.weight"))
    if not isinstance(conv, torch.Tensor) or conv.dim() != 4 or conv.shape[1] != width:
        return None
    if width == 3 + 2 * coords * freqs or (width - 3) % (2 * coords) or width <= 3:
        return None
    key = "image_encoder.phases"
    return (
        f"weight {key!r}{reference_name(key)} holds {freqs} image frequencies, where the stem's norm "
        f"and first conv take {width} channels (3 + 2 x {coords} x n_freqs) and so say "
        f"{(width - 3) // (2 * coords)}: the image phases are damaged"
    )
