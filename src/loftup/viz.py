"""Pictures of features: PCA to RGB with one basis shared by several maps."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import UsageError


@dataclass
class PCABasis:
    """A 3-component PCA basis of C-dimensional features, with the colour range it was fitted on."""

    mean: torch.Tensor  # (C,)
    components: torch.Tensor  # (C, 3)
    lo: torch.Tensor  # (3,)
    hi: torch.Tensor  # (3,)


#: A direction whose variance is below this fraction of the first's is taken as no spread.
SPREAD = 1e-6
#: Features whose spread (the standard deviation along the first direction) is below this
#: fraction of their largest magnitude are taken as constant: what is left is float rounding.
FLAT = 1e-5


def _batched(feats: torch.Tensor, also: str = "") -> torch.Tensor:
    """Features (B, C, H, W), or one image's (C, H, W) (what :func:`loftup.upsample` returns
    for one image) as a batch of one; a :class:`UsageError` naming any other shape."""
    if isinstance(feats, torch.Tensor) and feats.dim() == 3:
        return feats[None]
    if isinstance(feats, torch.Tensor) and feats.dim() == 4:
        return feats
    shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
    raise UsageError(
        f"expected features (B, C, H, W) or (C, H, W){also}, got {shape}; pass a feature map "
        "as the upsampler returns it"
    )


def fit_pca(feats: torch.Tensor, k: int = 3, max_samples: int = 20000, seed: int = 0) -> PCABasis:
    """Fit a PCA on features (B, C, h, w), (C, h, w) or (N, C); the colour range is the fit
    data's.

    The basis has ``k`` components whatever C and N: where the data spreads along fewer
    directions (fewer than ``k`` channels or ``k + 1`` samples), the missing components repeat
    the first, so one channel is drawn in grey. Features without spread (constant up to
    rounding, :data:`FLAT`) have no direction to colour: the basis draws every feature, these
    and any others, mid-grey (0.5), not the rounding noise stretched over the colour range.
    The fit skips pixels with a NaN or infinite feature (none left: the grey basis too)."""
    x = feats if getattr(feats, "ndim", None) == 2 else _batched(feats, ", (N, C)")
    x = x.detach().float()
    x = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) if x.dim() == 4 else x
    x = x[torch.isfinite(x).all(1)]  # a NaN pixel made the eigensolver fail to converge
    if x.shape[0] > max_samples:
        g = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=g)[:max_samples].to(x.device)]
    mean = x.mean(0) if x.shape[0] else x.new_zeros(x.shape[1])
    # exact PCA, not torch.pca_lowrank: that one starts from the global RNG and, with q = k and
    # no oversampling, returns a different, far-from-principal basis on every call when the
    # spectrum is flat (as backbone features' is); the picture changed from run to run
    centred = x - mean
    cov = (centred.T @ centred).double()
    vals, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    vals, vecs = vals.flip(0), vecs.flip(1)
    if not x.shape[0] or vals[0] <= x.shape[0] * float(FLAT * x.abs().max()) ** 2:  # constant
        half = torch.full((k,), 0.5, device=x.device)
        return PCABasis(mean, torch.zeros(x.shape[1], k, device=x.device), -half, half)
    # only directions along which the data spreads: the others (beyond C channels, or N - 1
    # samples) are arbitrary, with a colour range of zero that turned rounding into colour
    spread = int((vals > vals[0] * SPREAD).sum())
    comps = vecs[:, : max(1, min(k, spread))]
    # an eigenvector's sign is arbitrary: make each one's largest entry positive
    largest = comps.gather(0, comps.abs().argmax(0, keepdim=True))
    comps = (comps * largest.sign()).float()
    # k colours whatever the count: the missing ones repeat the first (one direction: grey)
    comps = comps[:, torch.arange(k) % comps.shape[1]]
    proj = centred @ comps
    lo, hi = proj.quantile(0.01, dim=0), proj.quantile(0.99, dim=0)
    return PCABasis(mean, comps, lo, hi)


def apply_pca(feats: torch.Tensor, basis: PCABasis) -> torch.Tensor:
    """Features (B, C, H, W) -> RGB (B, 3, H, W) in [0, 1], coloured by ``basis``; one image's
    (C, H, W) -> (3, H, W)."""
    # one memory layout (B, H, W, C) whatever the input's: the matrix product takes another
    # path for strided operands and rounds otherwise, so a picture drawn from channels-last
    # features (a streamed output) differed from one drawn from the same values held whole
    x = _batched(feats).detach().float().permute(0, 2, 3, 1)
    if x.shape[-1] != basis.mean.shape[0]:  # torch's "size of tensor a (4) must match ..."
        raise UsageError(
            f"features of {x.shape[-1]} channels, but the PCA basis was fitted on "
            f"{basis.mean.shape[0]}; fit it on features of the same backbone (fit_pca)"
        )
    centred = torch.empty(x.shape, device=x.device)  # contiguous, one copy as before
    torch.sub(x, basis.mean.to(x.device), out=centred)
    proj = centred @ basis.components.to(x.device)
    lo, hi = basis.lo.to(x.device), basis.hi.to(x.device)
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
    rgb = rgb.permute(0, 3, 1, 2)
    return rgb[0] if feats.dim() == 3 else rgb


def pca_pair(lr_feats: torch.Tensor, hr_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB pictures of low-res and upsampled features with one basis fitted on the low-res ones,
    or on the upsampled ones where the low-res grid has too few pixels to fit three colours on
    (under 4: a 1x1 grid has no direction at all) or no spread (constant features: what an
    upsampler adds to them is shown, if more than rounding; else both are grey). One image's
    (C, h, w) and (C, H, W) give (3, h, w) and (3, H, W)."""
    lr_batch, hr_channels = _batched(lr_feats), _batched(hr_feats).shape[1]
    if lr_batch.shape[1] != hr_channels:
        raise UsageError(
            f"low-res features of {lr_batch.shape[1]} channels, upsampled ones of "
            f"{hr_channels}; pass one image's features before and after upsampling"
        )
    lr_pixels = lr_batch.shape[0] * lr_batch.shape[-2] * lr_batch.shape[-1]
    basis = fit_pca(lr_feats) if lr_pixels > 3 else None
    if basis is None or not basis.components.any():
        basis = fit_pca(hr_feats)
    return apply_pca(lr_feats, basis), apply_pca(hr_feats, basis)
