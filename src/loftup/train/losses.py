"""The training losses as pure functions (shapes: (B, C, h, w) low-res, (B, C, H, W) high-res).

Their matrix products (the random projection, the affinity) are float32 even under autocast:
``precision=bf16`` autocasts the backbone and the upsampler, not the losses: bf16's rounding
(about 0.004 near a cosine of 1) would be as large as the affinity loss itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _float32(x: torch.Tensor):
    """Autocast off on ``x``'s device: the products inside are float32 (see the module's doc)."""
    return torch.autocast(x.device.type, enabled=False)


def random_projection(
    dim: int, out_dim: int = 64, *, generator=None, device=None, dtype=torch.float32
) -> torch.Tensor:
    """A (dim, out_dim) Gaussian matrix with unit-norm columns (a fresh one every step)."""
    proj = torch.randn(dim, out_dim, generator=generator, dtype=torch.float32)
    proj = proj / proj.norm(dim=0, keepdim=True)
    return proj.to(device=device, dtype=dtype)


def project(feats: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """Features (B, C, H, W) through a (C, K) projection -> (B, K, H, W), float32 at least."""
    b, _, h, w = feats.shape
    with _float32(feats):
        dtype = torch.promote_types(feats.dtype, torch.float32)
        out = torch.matmul(proj.T.to(dtype), feats.flatten(2).to(dtype))
    return out.view(b, -1, h, w)


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, log_scale: torch.Tensor | None = None
) -> torch.Tensor:
    """MSE between downsampled predictions and backbone features, both (B, K, h, w).

    With ``log_scale`` (B, 1, h, w) = log s, a learned per-pixel uncertainty, each pixel's squared
    error (mean over channels) counts as ``mse / (2 s^2) + log s``.
    """
    if pred.shape != target.shape:  # a function on tensors: a plain ValueError, like torch's
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    mse = (pred - target).square().mean(dim=1, keepdim=True)
    if log_scale is None:
        return mse.mean()
    return (mse * torch.exp(-2.0 * log_scale) / 2.0 + log_scale).mean()


def tv_loss(feats: torch.Tensor) -> torch.Tensor:
    """Total variation of (B, C, H, W): mean squared difference of vertical, plus horizontal, neighbours."""
    dy = feats[:, :, 1:, :] - feats[:, :, :-1, :]
    dx = feats[:, :, :, 1:] - feats[:, :, :, :-1]
    return dy.square().mean() + dx.square().mean()


def affinity(feats: torch.Tensor) -> torch.Tensor:
    """Cosine similarities among all positions: (B, C, H, W) -> (B, H*W, H*W), float32 at least."""
    with _float32(feats):
        flat = F.normalize(
            feats.flatten(2).to(torch.promote_types(feats.dtype, torch.float32)), dim=1, eps=1e-6
        )
        return flat.transpose(1, 2) @ flat


def central_side(side: int, fraction: float) -> int:
    """How many pixels the central ``fraction`` of a ``side``-px side keeps (at least one)."""
    return max(1, round(side * fraction))


def central_crop(feats: torch.Tensor, fraction: float) -> torch.Tensor:
    """The central ``fraction`` of each side of (B, C, H, W) (at least one pixel)."""
    h, w = feats.shape[-2:]
    ch, cw = central_side(h, fraction), central_side(w, fraction)
    top, left = (h - ch) // 2, (w - cw) // 2
    return feats[..., top : top + ch, left : left + cw]


def affinity_loss(
    student: torch.Tensor, teacher: torch.Tensor, central: float = 0.8
) -> torch.Tensor:
    """MSE between the affinity matrices of two (B, C, H, W) maps over their central region."""
    if student.shape != teacher.shape:  # a function on tensors: plain, like torch's
        raise ValueError(
            f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ"
        )
    a_s = affinity(central_crop(student, central))
    a_t = affinity(central_crop(teacher, central))
    return (a_s - a_t).square().mean()
