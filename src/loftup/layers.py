"""Small single-purpose layers of the LoftUp upsampler.

Shapes: ``(B, C, h, w)`` for low-resolution features, ``(B, 3, H, W)`` for the guidance image,
``(B, N, D)`` for token sequences.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def channel_layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """LayerNorm over the channel axis of a (B, C, H, W) map, at every position."""
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, bias, eps).permute(0, 3, 1, 2)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over C of a (B, C, H, W) map, at every position (a LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_layer_norm(x, self.weight, self.bias, self.eps)


def coordinate_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(2, height, width): row then column coordinate, each ``linspace(-1, 1, n)``."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


def minmax_scale(image: torch.Tensor, lo=None, hi=None) -> torch.Tensor:
    """Scale each channel of each image to [-0.5, 0.5] by its own min and max.

    Arguments:
      image: (B, 3, H, W).
      lo, hi: optional (B, 3, 1, 1) min and max to use instead of this tensor's own (exact tiled
        inference passes the whole image's statistics to every tile).
    """
    if lo is None or hi is None:
        lo, hi = image_minmax(image)
    return (image - lo) / (hi - lo).clamp_min(1e-4) - 0.5


def image_minmax(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, per channel min and max of (B, 3, H, W): two (B, 3, 1, 1) tensors (one pass)."""
    lo, hi = image.flatten(2).aminmax(dim=-1)
    return lo[..., None, None], hi[..., None, None]


def apply_keeping_float32(module, apply, fn, recurse, owners) -> nn.Module:
    """``apply(fn, recurse)`` (a ``Module._apply``), then put back in float32, on the new
    device, every float32 parameter or buffer of ``owners`` that the cast made half-precision."""
    keep = []
    for owner in owners:
        for table in (owner._parameters, owner._buffers):
            for name, t in table.items():
                if t is not None and t.dtype == torch.float32:
                    keep.append((owner, table is owner._parameters, name, t.detach().clone()))
    apply(fn, recurse)
    for owner, is_param, name, original in keep:
        current = getattr(owner, name)
        if current.dtype in (torch.float16, torch.bfloat16):
            if is_param:
                current.data = original.to(current.device)
            else:
                owner._buffers[name] = original.to(current.device)
    return module


class FourierFeatures(nn.Module):
    """Sines and cosines of raw channels at log-spaced frequencies with learned phases.

    For raw channels ``x_j`` (j < in_channels) and frequencies ``f_k = exp(linspace(lo, hi, n))``
    the output is ``sin(f_k x_j + p_sin[k, j])`` for all (k, j), k the slow index, then the same
    with cos: ``2 * n_freqs * in_channels`` channels.

    Arguments:
      in_channels: number of raw channels.
      n_freqs: number of frequencies.
      log_range: (lo, hi) of the natural-log frequency range.
    """

    def __init__(self, in_channels: int, n_freqs: int, *, log_range=(-2.0, 10.0)) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.n_freqs = n_freqs
        self.register_buffer(
            "freqs", torch.exp(torch.linspace(*log_range, n_freqs)), persistent=False
        )
        # Stored as (2, in_channels, n_freqs) like the released checkpoints; each half is read
        # as (n_freqs, in_channels) in memory order (a reshape, not a transpose).
        self.phases = nn.Parameter(torch.rand(2, in_channels, n_freqs) * 2 * math.pi)

    @property
    def out_channels(self) -> int:
        return 2 * self.n_freqs * self.in_channels

    def _apply(self, fn, recurse=True):
        """Casts to half precision leave frequencies and phases in float32: at frequencies up
        to e^10 a bf16 frequency or phase would scramble the encoding."""
        return apply_keeping_float32(self, super()._apply, fn, recurse, [self])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, J, H, W) raw channels -> (B, 2 * n_freqs * J, H, W), in x's dtype.

        Computed in float32 whatever the dtype: at frequencies up to e^10 a half-precision
        argument would lose the phase entirely.
        """
        b, j, h, w = x.shape
        n = self.n_freqs
        freqs = self.freqs.float().view(1, n, 1, 1, 1)
        arg = freqs * x.float().unsqueeze(1)  # (B, n, J, H, W)
        ph = self.phases.float().reshape(2, n, j, 1, 1)
        sin = torch.sin(arg + ph[0]).reshape(b, n * j, h, w)
        cos = torch.cos(arg + ph[1]).reshape(b, n * j, h, w)
        return torch.cat([sin, cos], dim=1).to(x.dtype)


class Stem(nn.Module):
    """Per-pixel LayerNorm, then two Conv3x3-BatchNorm-ReLU layers: (B, E, H, W) -> (B, D, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = ChannelNorm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(self.norm(x))))
        return F.relu(self.bn2(self.conv2(x)))

    def _apply(self, fn, recurse=True):
        """Casts to half precision leave BatchNorm in float32: its running mean and variance do
        not survive bf16 rounding (the folded bias ``beta - mean * gamma / std`` cancels large
        terms); half input with float32 statistics is supported on CPU and GPU."""
        return apply_keeping_float32(self, super()._apply, fn, recurse, [self.bn1, self.bn2])


class CrossAttention(nn.Module):
    """Multi-head attention of queries (B, N, D) to keys/values (B, M, D).

    Parameters are laid out like ``nn.MultiheadAttention`` (packed ``in_proj_weight`` (3D, D) with
    bias, ``out_proj`` D -> D); the product runs through ``scaled_dot_product_attention``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:  # internal: LoftUpConfig.check_heads names the fix first
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def project_kv(self, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, D) normed key/value tokens -> keys and values, each (B, heads, M, D/heads)."""
        d = kv.shape[-1]
        w, b = self.in_proj_weight[d:], self.in_proj_bias[d:]
        k, v = F.linear(kv, w, b).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(B, N, D) normed queries and projected keys/values -> (B, N, D)."""
        d = q.shape[-1]
        q = self._split(F.linear(q, self.in_proj_weight[:d], self.in_proj_bias[:d]))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        return self.attend(q, *self.project_kv(kv))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)


class FeedForward(nn.Module):
    """LayerNorm -> Linear(D, hidden) -> GELU -> Linear(hidden, D)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class CrossAttentionBlock(nn.Module):
    """``q = q + MHA(LN_q(q), LN_kv(kv))``, then ``q = q + FFN(q)``; kv is not updated."""

    def __init__(self, dim: int, num_heads: int, hidden: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, num_heads)
        self.ffn = FeedForward(dim, hidden)

    def prepare_kv(self, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, D) key/value tokens -> projected keys and values (reusable across queries)."""
        return self.attn.project_kv(self.norm_kv(kv))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = q + self.attn.attend(self.norm_q(q), k, v)
        return q + self.ffn(q)


class Head(nn.Module):
    """Conv1x1 D -> C, then LayerNorm over C at every pixel (eps 1e-6)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.norm = ChannelNorm(out_channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def neighbour_index(
    h: int,
    w: int,
    height: int,
    width: int,
    k: int,
    device=None,
    rows: range | None = None,
    cols: range | None = None,
) -> torch.Tensor:
    """(P, k*k) indices of the k x k low-res tokens nearest each output pixel.

    The window is centred on the grid cell that holds the pixel's centre and shifted to stay
    inside the grid (so every pixel sees min(k, h) x min(k, w) distinct tokens). ``rows`` and
    ``cols`` (default: all) select a rectangle of the (height, width) output; P is its size.
    """
    kh, kw = min(k, h), min(k, w)

    def axis(pos: range, n_out: int, n_in: int, kk: int) -> torch.Tensor:
        p = torch.arange(pos.start, pos.stop, device=device)
        centre = ((p + 0.5) * n_in / n_out).floor().long()
        start = (centre - (kk - 1) // 2).clamp(0, n_in - kk)
        return start[:, None] + torch.arange(kk, device=device)[None]  # (len(pos), kk)

    r = axis(rows or range(height), height, h, kh)
    c = axis(cols or range(width), width, w, kw)
    idx = r[:, None, :, None] * w + c[None, :, None, :]  # (rows, cols, kh, kw)
    return idx.reshape(-1, kh * kw)


def neighbour_span(h: int, w: int, height: int, k: int, rows: range) -> tuple[int, int]:
    """[lo, hi): a range of the flattened (h, w) tokens holding every index that
    :func:`neighbour_index` gives the output rows ``rows`` (of ``height``), computed without
    reading that tensor (so without waiting for a GPU). One grid row wider on each side than
    needed, in case this float64 arithmetic rounds a pixel's cell differently from the
    tensor's float32."""
    kh = min(k, h)

    def start(p: int) -> int:
        return min(max(math.floor((p + 0.5) * h / height) - (kh - 1) // 2, 0), h - kh)

    first, last = max(0, start(rows.start) - 1), min(h, start(rows.stop - 1) + kh + 1)
    return first * w, last * w


def flat_neighbours(
    h: int, w: int, height: int, width: int, k: int, start: int, stop: int, device=None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`neighbour_index` of the output pixels [start, stop) in row-major order, and
    their :func:`neighbour_span` (for decoding a flattened output in chunks)."""
    rows = range(start // width, (stop - 1) // width + 1)
    skip = start - rows.start * width
    idx = neighbour_index(h, w, height, width, k, device, rows)[skip : skip + stop - start]
    return idx, neighbour_span(h, w, height, k, rows)
