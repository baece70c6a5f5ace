"""The pure weight transforms :func:`loftup.fused.fuse` is built from: folding a normalisation
into the layer next to it (eval BatchNorm into a convolution, a LayerNorm's affine part into a
linear layer), padding (to an alignment, per attention head, with zeros or with the mean of the
real rows: "mean padding", explained in :mod:`loftup.fused`), and the order in which the fast
image encoder writes its channels.
"""

from __future__ import annotations

import math

import torch


def padded(width: int, align: int) -> int:
    """``width`` rounded up to a multiple of ``align``."""
    return -(-width // align) * align


def mean_pad_rows(w: torch.Tensor, width: int) -> torch.Tensor:
    """Output rows (width_real, ...) -> (width, ...): the extra rows are the mean of the real
    ones, so an update through ``w`` moves the extra channels by the mean of the real ones."""
    extra = width - w.shape[0]
    return torch.cat([w, w.mean(0, keepdim=True).expand(extra, *w.shape[1:])]) if extra else w


def read_padded(w: torch.Tensor, width: int, dim: int = 1) -> torch.Tensor:
    """Weights reading a mean-padded LayerNorm's output along ``dim``: the real columns
    scaled by sqrt(real / width) (the LayerNorm of the padded row is larger by its inverse),
    zero columns for the extra channels."""
    real = w.shape[dim]
    if width == real:
        return w
    w = w * math.sqrt(real / width)
    shape = list(w.shape)
    shape[dim] = width - real
    return torch.cat([w, w.new_zeros(shape)], dim=dim)


def zero_pad(w: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """Zeros appended along ``dim`` up to ``width``."""
    extra = width - w.shape[dim]
    if not extra:
        return w
    shape = list(w.shape)
    shape[dim] = extra
    return torch.cat([w, w.new_zeros(shape)], dim=dim)


def fold_batchnorm(weight, bias, bn) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv (O, I, k, k) + bias (O,) followed by eval BatchNorm -> one conv, in float32."""
    w, b = weight.float(), bias.float()
    scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
    return w * scale.view(-1, 1, 1, 1), (b - bn.running_mean.float()) * scale + bn.bias.float()


def fold_layernorm(norm, weight, bias) -> tuple[torch.Tensor, torch.Tensor]:
    """LayerNorm affine (gamma, beta) then Linear (O, D) -> Linear on the plain-normalised input."""
    w, b = weight.float(), bias.float()
    return w * norm.weight.float()[None, :], b + w @ norm.bias.float()


def pad_heads(t: torch.Tensor, heads: int, padded: int, dim: int = 0) -> torch.Tensor:
    """Insert zeros after each head's slice of axis ``dim`` (heads * hd -> heads * padded)."""
    t = t.movedim(dim, 0)
    hd = t.shape[0] // heads
    out = t.new_zeros((heads, padded) + tuple(t.shape[1:]))
    out[:, :hd] = t.reshape((heads, hd) + tuple(t.shape[1:]))
    return out.reshape((heads * padded,) + tuple(t.shape[1:])).movedim(0, dim)


def encoding_order(raw_channels: int, n_freqs: int, coords: bool) -> list[int]:
    """Positions in the model's image encoding of the channels the fast encoder writes.

    Fast order: [row sin, row cos, column sin, column cos] (coords only), colour sin (k slow,
    colour fast), colour cos, then the 3 scaled colours. Model order: sin (k slow, raw channel
    fast) over all raw channels, cos likewise, then the colours.
    """
    j, n = raw_channels, n_freqs
    order = []
    first_colour = 2 if coords else 0
    for c in range(first_colour):
        order += [k * j + c for k in range(n)] + [n * j + k * j + c for k in range(n)]
    for half in range(2):
        order += [half * n * j + k * j + c for k in range(n) for c in range(first_colour, j)]
    order += [2 * n * j + c for c in range(3)]
    return order
