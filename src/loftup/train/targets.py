"""Stage 1's pseudo ground truth: mask-bicubic upsampling, and the mask adjustment it is made of.

``mask_adjust`` applies, for each mask k in order, ``f <- (1 - a) f + a * mean_{M_k}(f)`` to the
pixels inside ``M_k``; later masks see the already adjusted features. Run literally that is K
dependent passes over (C, H, W), which would dominate a training step. Every pass is linear, so
the result has a closed form that we compute with a few matrix products instead. With ``r = 1 - a``,
``D[k, p]`` the number of masks before k that hold pixel p and ``N[p]`` the number of all masks
that hold it, the mean of mask k (taken when its turn comes) is

    m_k = sum_p M[k, p] r^D[k, p] f0_p / |M_k| + sum_{j<k} c[k, j] m_j,
    c[k, j] = a / |M_k| * sum_p M[k, p] M[j, p] r^(D[k, p] - D[j, p] - 1),

a unit lower-triangular system in the K means, and the final features are

    f_p = r^N[p] f0_p + sum_k M[k, p] a r^(N[p] - D[k, p] - 1) m_k.

The exponent of ``c`` splits into a product ``r^D[k, p] * r^-(D[j, p] + 1)``, which fits the
floating-point range while ``r`` to the power of the deepest overlap does; beyond that (or for
``a = 1``) the literal loop runs instead. Both give the same numbers (see the tests).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Largest power of ten that each dtype's factorised terms may reach (with a safety margin).
_DECADES = {torch.float32: 30.0, torch.float64: 290.0}


def mask_bicubic(
    feats: torch.Tensor, masks: torch.Tensor, alpha: float = 0.8, n_masks=None
) -> torch.Tensor:
    """Bicubic upsampling to the masks' size, then :func:`mask_adjust`.

    Arguments:
      feats: low-resolution features (B, C, h, w).
      masks: boolean masks (B, K, H, W), applied in order; empty masks are ignored (padding).
      alpha: the adjustment strength a (0.8 in stage 1).
      n_masks: optional (B,) count of real masks per image (the rest is padding).

    Returns (B, C, H, W). Linear in ``feats``: projecting the features first (as the training
    loss does) gives the projection of the result, at a fraction of the cost.
    """
    size = tuple(masks.shape[-2:])
    up = F.interpolate(feats, size=size, mode="bicubic", align_corners=False)
    return mask_adjust(up, masks, alpha, n_masks)


def mask_adjust(
    feats: torch.Tensor, masks: torch.Tensor, alpha: float, n_masks=None
) -> torch.Tensor:
    """Pull each mask's pixels towards the mask's mean, mask after mask.

    Arguments:
      feats: features (B, C, H, W) at the masks' resolution.
      masks: boolean masks (B, K, H, W); an all-False mask changes nothing.
      alpha: strength a in [0, 1].
      n_masks: optional (B,) number of leading masks to use per image.

    Returns the adjusted features (B, C, H, W), in ``feats``' dtype.
    """
    # plain ValueErrors, like torch's: a function on tensors, whose alpha training takes from
    # checked config keys (stage1.mask_alpha, stage2.teacher_alpha)
    if feats.dim() != 4 or masks.dim() != 4:
        raise ValueError(
            f"expected feats (B, C, H, W) and masks (B, K, H, W), got {tuple(feats.shape)} "
            f"and {tuple(masks.shape)}"
        )
    if feats.shape[0] != masks.shape[0] or feats.shape[-2:] != masks.shape[-2:]:
        raise ValueError(
            f"feats {tuple(feats.shape)} and masks {tuple(masks.shape)} disagree in batch or size"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = []
    for i in range(feats.shape[0]):
        m = masks[i] if n_masks is None else masks[i, : int(n_masks[i])]
        out.append(_adjust_one(feats[i], m, alpha))
    return torch.stack(out)


def _adjust_one(f: torch.Tensor, masks: torch.Tensor, alpha: float) -> torch.Tensor:
    """One image: features (C, H, W), masks (K, H, W) -> (C, H, W)."""
    c, h, w = f.shape
    m = masks.reshape(masks.shape[0], h * w)
    m = m[m.any(dim=1)]
    if m.shape[0] == 0 or alpha == 0.0:
        return f
    r = 1.0 - alpha
    depth = int(m.sum(0, dtype=torch.int32).max())
    dtype = _closed_form_dtype(r, depth, f.dtype)
    if dtype is None:
        return mask_adjust_loop(f[None], masks[None], alpha)[0]
    out = _closed_form(f.reshape(c, h * w).to(dtype), m.to(dtype), alpha)
    return out.reshape(c, h, w).to(f.dtype)


def _closed_form_dtype(r: float, depth: int, dtype: torch.dtype) -> torch.dtype | None:
    """The dtype whose range holds r^(+-(depth + 1)), or None if none does (use the loop)."""
    if r <= 0.0:
        return None
    decades = (depth + 1) * abs(math.log10(r))
    candidates = (torch.float64,) if dtype == torch.float64 else (torch.float32, torch.float64)
    for candidate in candidates:
        if decades < _DECADES[candidate]:
            return candidate
    return None


def _closed_form(f0: torch.Tensor, m: torch.Tensor, alpha: float) -> torch.Tensor:
    """Features (C, P) and K non-empty masks (K, P) as 0/1 floats -> adjusted features (C, P)."""
    k = m.shape[0]
    covered = (m.sum(0) > 0).nonzero().squeeze(1)  # pixels outside every mask never change
    m = m[:, covered]
    f = f0[:, covered]
    log_r = math.log(1.0 - alpha)
    size = m.sum(1, keepdim=True)  # (K, 1)
    strictly_lower = torch.ones(k, k, dtype=m.dtype, device=m.device).tril(-1)
    before = strictly_lower @ m  # D[k, p]: masks before k holding p (exact small integers)
    total = before[-1:] + m[-1:]  # N[p]: (1, P')
    rpow = torch.exp(before * log_r) * m  # r^D on the mask, 0 elsewhere
    base = (rpow / size) @ f.T  # (K, C)
    shared = (total[0] >= 2).nonzero().squeeze(1)  # only these pixels couple the means
    if shared.numel() and k > 1:
        right = torch.exp((before[:, shared] + 1.0) * -log_r) * m[:, shared]
        coupling = torch.tril((alpha / size) * (rpow[:, shared] @ right.T), diagonal=-1)
        eye = torch.eye(k, dtype=f.dtype, device=f.device)
        means = torch.linalg.solve_triangular(eye - coupling, base, upper=False)
    else:
        means = base
    after = (total - before - 1.0) * m  # later masks holding p (0 outside the mask)
    spread = alpha * torch.exp(after * log_r) * m  # (K, P')
    out = f0.clone()
    out[:, covered] = torch.exp(total * log_r) * f + means.T @ spread
    return out


def mask_adjust_loop(feats: torch.Tensor, masks: torch.Tensor, alpha: float) -> torch.Tensor:
    """The literal definition, mask after mask: (B, C, H, W), (B, K, H, W) -> (B, C, H, W)."""
    out = feats.clone()
    for i in range(feats.shape[0]):
        f = out[i]
        for mask in masks[i]:
            n = int(mask.sum())
            if n == 0:
                continue
            mean = f[:, mask].mean(dim=1, keepdim=True)
            f[:, mask] = (1.0 - alpha) * f[:, mask] + alpha * mean
    return out
