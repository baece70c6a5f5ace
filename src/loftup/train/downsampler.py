"""Training-only modules: the learned attention downsampler and the per-pixel uncertainty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError


def window_stride(size: int, grid: int, kernel: int) -> int:
    """Stride that lays ``grid`` windows of ``kernel`` pixels over ``size`` pixels."""
    if grid <= 1:
        return 1
    stride = (size - kernel) // (grid - 1)
    if stride < 1 or (size - kernel) // stride + 1 != grid:
        # reached from the config: stage1.image_size=209 gives dinov2's patch-14 grid 15
        raise UsageError(
            f"cannot lay {grid} windows of {kernel} px over {size} px; the high-resolution size "
            f"must be about grid x patch ({grid * kernel}): make the training image sizes "
            f"(stage1.image_size, stage2.global_sizes) multiples of the patch ({kernel} px)"
        )
    return stride


class AttentionDownsampler(nn.Module):
    """High-res features (B, C, H, W) -> a low-res grid (B, C, h, w) by attention in each window.

    After a 5x5 average blur, each patch-sized window scores its pixels with a linear logit; a
    window's logits are dropped (set to 0) with probability ``dropout`` in training; a learned
    scale and bias per offset in the window follow; the softmax over the window weighs its pixels.

    Arguments:
      dim: channels C.
      kernel: window side in pixels (the backbone's patch size).
      dropout: probability of dropping a window's logits in training.
      blur: side of the average blur applied first (0 or 1 for none).
    """

    def __init__(self, dim: int, kernel: int, *, dropout: float = 0.2, blur: int = 5) -> None:
        super().__init__()
        self.kernel = kernel
        self.dropout = dropout
        self.blur = blur
        self.logit = nn.Linear(dim, 1)
        self.scale = nn.Parameter(torch.ones(kernel * kernel))
        self.bias = nn.Parameter(torch.zeros(kernel * kernel))

    def forward(
        self, hr_feats: torch.Tensor, grid: tuple[int, int], keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Downsample (B, C, H, W) to (B, C, h, w) with (h, w) = ``grid``.

        ``keep`` (B, h, w): which windows keep their logits (training only; drawn from torch's
        global generator when not given).
        """
        b, c, height, width = hr_feats.shape
        h, w = grid
        k = self.kernel
        stride = (window_stride(height, h, k), window_stride(width, w, k))
        x = hr_feats
        if self.blur > 1:
            p = self.blur // 2
            x = F.avg_pool2d(F.pad(x, (p, p, p, p), mode="reflect"), self.blur, stride=1)
        patches = F.unfold(x, k, stride=stride).view(b, c, k * k, h * w)  # (B, C, k*k, L)
        # (1, C) @ (B, C, k*k*L): a plain matrix product (einsum would copy per batch here)
        logits = (self.logit.weight @ patches.flatten(2)).view(b, k * k, h * w) + self.logit.bias
        if self.training and self.dropout > 0:
            if keep is None:
                keep = torch.rand(b, h, w, device=x.device) >= self.dropout
            logits = logits * keep.reshape(b, 1, h * w).to(logits.dtype)
        logits = logits * self.scale[:, None] + self.bias[:, None]
        attn = logits.softmax(dim=1)
        return (patches * attn.unsqueeze(1)).sum(dim=2).view(b, c, h, w)


class Uncertainty(nn.Module):
    """Per-pixel log-scale ``log s`` (B, 1, h, w) of the reconstruction error, from features (B, C, h, w).

    A 1x1 convolution, initialised to 0 (s = 1, the plain MSE up to a constant factor).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, 1, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, lr_feats: torch.Tensor) -> torch.Tensor:
        return self.conv(lr_feats)
