"""The losses the probes are fitted with, as pure functions on tensors.

Segmentation (FeatUp): cross-entropy against labels resized to the logits' size by nearest,
over the pixels that are not ``ignore_index``. Depth (Probe3D's ``DepthLoss``): 10 x SigLoss +
0.5 x MegaDepth's multi-scale gradient loss of log depth, on valid pixels (0 < gt <= 10 m).
Normals (Probe3D, after Bae et al.): the uncertainty-aware angular loss on valid pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .metrics_3d import valid_depth


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) integer labels -> (B, h, w) by nearest (the FeatUp protocol)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def seg_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy of (B, K, h, w) logits against (B, H, W) labels resized to (h, w)."""
    labels = resize_labels(labels, logits.shape[-2:])
    if not (labels != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


def sig_loss(pred: torch.Tensor, gt: torch.Tensor, sigma: float = 0.85, eps: float = 1e-3):
    """Scale-invariant log loss over valid pixels (finite gt > 0) of the whole batch."""
    valid = valid_depth(gt)
    if not valid.any():
        return pred.sum() * 0.0
    g = torch.log(pred[valid] + eps) - torch.log(gt[valid] + eps)
    return (g.pow(2).mean() - sigma * g.mean().pow(2)).clamp_min(0).sqrt()


def gradient_loss(pred: torch.Tensor, gt: torch.Tensor, scales: int = 4, eps: float = 1e-3):
    """Multi-scale gradient matching of log depth (B, H, W) on valid pixels (finite gt > 0;
    MegaDepth)."""
    total = pred.new_zeros(())
    for i in range(scales):
        step = max(1, 2 * i)
        p, g = pred[:, ::step, ::step], gt[:, ::step, ::step]
        mask = valid_depth(g)
        valid = mask.to(p.dtype)
        n = valid.sum()
        if n == 0:
            continue
        # where, not a product: a NaN in a hole of the ground truth times 0 is NaN
        diff = torch.where(mask, torch.log(p + eps) - torch.log(g + eps), 0.0)
        v = (diff[:, :-2] - diff[:, 2:]).abs() * valid[:, :-2] * valid[:, 2:]
        h = (diff[:, :, :-2] - diff[:, :, 2:]).abs() * valid[:, :, :-2] * valid[:, :, 2:]
        total = total + (v.sum() + h.sum()) / n
    return total


def depth_loss(pred: torch.Tensor, gt: torch.Tensor, max_depth: float = 10.0) -> torch.Tensor:
    """Probe3D's depth loss: 10 * SigLoss + 0.5 * gradient loss; pred resized to gt (bilinear)."""
    if pred.shape[-2:] != gt.shape[-2:]:
        pred = F.interpolate(pred[:, None], size=gt.shape[-2:], mode="bilinear")[:, 0]
    gt = torch.where(gt > max_depth, torch.zeros_like(gt), gt)
    return 10.0 * sig_loss(pred, gt) + 0.5 * gradient_loss(pred, gt)


def normal_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Probe3D's uncertainty-aware angular loss (Bae et al.) over valid pixels.

    ``pred`` (B, 4, h, w) from :class:`NormalProbe` (resized to the target, bicubic, as Probe3D
    does); ``target`` (B, 4, H, W): the normal (x, y, z) and a valid mask (1 where scored).
    Per pixel: kappa = ELU(raw) + 1.01, loss = log(1 + exp(-kappa pi)) - log(1 + kappa^2) +
    kappa * angle; the mean over the batch's valid pixels.
    """
    if pred.shape[-2:] != target.shape[-2:]:
        pred = F.interpolate(pred, size=target.shape[-2:], mode="bicubic")
    valid = target[:, 3] > 0
    if not valid.any():
        return pred.sum() * 0.0
    # a NaN normal where nothing is scored would reach the gradient (0 x NaN): replaced first
    normals = torch.where(valid[:, None], target[:, :3], 1.0)
    cos = F.cosine_similarity(pred[:, :3], normals, dim=1)
    angle = cos.clamp(-1 + eps, 1 - eps).acos()
    kappa = F.elu(pred[:, 3]) + 1.01
    loss = (1 + torch.exp(-kappa * math.pi)).log() - (kappa.pow(2) + 1).log() + kappa * angle
    return loss[valid].mean()
