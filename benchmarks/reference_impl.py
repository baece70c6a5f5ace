"""A stand-in for the paper's LoftUp implementation, written to time ours against it honestly.

Written from the specification (shared/docs/method.md) and from how the anchors describe the
paper's code (shared/docs/anchors.md), not from the paper's sources. It keeps the paper's
module tree, so the hub state dict (``upsampler.*``, ``channelnorm.norm.*``) loads into it with
``load_state_dict(strict=True)``, and the costs the anchors name:

- ``nn.MultiheadAttention`` called with its default ``need_weights=True``: every output pixel's
  weights against every key are computed and kept (the slow, memory-hungry path);
- the colour min/max taken over the whole batch at once;
- unfused BatchNorm, NCHW convolutions, the whole image decoded in one piece (no chunking).

Use::

    model = ReferenceLoftUp.from_state_dict(torch.load(path, weights_only=True)).eval()
    hr = model(lr_feats, image)         # (B, C, H, W)

This file is a benchmark fixture: it imports nothing of loftup's.
"""

from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (its parameters sit on the module)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ChannelNorm(nn.Module):
    """LayerNorm2d kept under ``.norm`` (the checkpoint's ``*.norm.weight`` keys)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class MinMaxScale(nn.Module):
    """Colour channels to [-0.5, 0.5] by the min and max over the whole batch (as the paper)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (0, 2, 3)
        lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        return (x - lo) / (hi - lo).clamp_min(1e-4) - 0.5


class Fourier(nn.Module):
    """sin(f_k x_j + b) for all (k, j) with k slow, then cos; phases ``biases`` (2, J, n)."""

    def __init__(self, channels: int, n_freqs: int) -> None:
        super().__init__()
        self.n = n_freqs
        self.biases = nn.Parameter(torch.zeros(2, channels, n_freqs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, j, h, w = x.shape
        freqs = torch.exp(torch.linspace(-2.0, 10.0, self.n, device=x.device))
        arg = torch.einsum("k,bjhw->bkjhw", freqs, x)
        out = []
        for i, fn in enumerate((torch.sin, torch.cos)):
            phase = self.biases[i].reshape(self.n, j)[None, :, :, None, None]
            out.append(fn(arg + phase).reshape(b, self.n * j, h, w))
        return torch.cat(out, dim=1)


class CrossAttentionLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(kv)
        out, _weights = self.attention(self.norm_q(q), kv, kv)  # need_weights=True
        return q + out


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(0.0),
            nn.Linear(hidden, dim),
            nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class Transformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([CrossAttentionLayer(dim, heads), FeedForward(dim, hidden)])
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        for attn, ffn in self.layers:
            q = ffn(attn(q, kv))
        return self.norm(q)


class Upsampler(nn.Module):
    def __init__(self, dim: int = 384, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        width = dim + 20
        self.lr_pe = Fourier(2, 5)
        self.fourier_feat = nn.Sequential(MinMaxScale(), Fourier(5, 20))
        enc = 20 * 5 * 2 + 3
        self.first_conv = nn.Sequential(
            ChannelNorm(enc),
            nn.Conv2d(enc, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.ca_transformer = Transformer(width, depth, heads, dim)
        self.final_conv = nn.Sequential(nn.Conv2d(width, dim, 1), LayerNorm2d(dim, eps=1e-6))

    def forward(self, lr_feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        b, _, h, w = lr_feats.shape
        height, width = image.shape[-2:]
        colour = self.fourier_feat[0](image)
        grid = _grid(height, width, image.device).expand(b, -1, -1, -1)
        raw = torch.cat([grid, colour], dim=1)
        encoded = torch.cat([self.fourier_feat[1](raw), colour], dim=1)
        q = self.first_conv(encoded)
        pos = self.lr_pe(_grid(h, w, lr_feats.device)).expand(b, -1, -1, -1)
        kv = torch.cat([lr_feats, pos], dim=1)
        q_tokens = q.flatten(2).transpose(1, 2)
        kv_tokens = kv.flatten(2).transpose(1, 2)
        out = self.ca_transformer(q_tokens, kv_tokens)
        out = out.transpose(1, 2).reshape(b, -1, height, width)
        return self.final_conv(out)


def _grid(height: int, width: int, device) -> torch.Tensor:
    ys = torch.linspace(-1.0, 1.0, height, device=device)
    xs = torch.linspace(-1.0, 1.0, width, device=device)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))[None]


class ReferenceLoftUp(nn.Module):
    """Channel norm + upsampler, with the hub checkpoint's module tree."""

    def __init__(self, dim: int = 384) -> None:
        super().__init__()
        self.upsampler = Upsampler(dim)
        self.channelnorm = ChannelNorm(dim)

    @classmethod
    def from_state_dict(cls, state: dict) -> ReferenceLoftUp:
        model = cls(state["channelnorm.norm.weight"].shape[0])
        model.load_state_dict(state, strict=True)
        return model.eval()

    def forward(self, lr_feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.upsampler(self.channelnorm(lr_feats), image)
