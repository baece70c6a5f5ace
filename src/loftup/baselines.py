"""Train-free upsamplers to compare LoftUp with, all called like LoftUp.

Every upsampler here is a function ``fn(lr_feats, image) -> hr_feats`` with ``lr_feats``
(B, C, h, w) backbone features and ``image`` (B, 3, H, W) the ImageNet-normalised guidance
image; the output is (B, C, H, W) at the image's size, exactly as :class:`loftup.LoftUp`.

- ``nearest``, ``bilinear``, ``bicubic``: ``F.interpolate`` to (H, W) (``align_corners=False``);
  they ignore the image's content. Where the output is smaller than the grid along an axis
  (a tiny output, or the ``highres`` reference's large grid), ``bilinear`` and ``bicubic``
  antialias that axis (their kernel widened to the output pixel, as PIL and torchvision resize),
  so that every cell counts instead of the two or four nearest a pixel's centre; upsampling,
  what they are compared with LoftUp at, is plain interpolation. ``bicubic`` is not clamped: its
  negative lobes overshoot the cells' range next to a step (by up to 11% of the step on each
  side: torch's cubic, a = -0.75), as a bicubic resize does and FeatUp's bicubic baseline did.
- ``jbu``: a joint bilateral upsampler without training (FeatUp's JBU idea, Kopf et al. 2007):
  each output pixel is a weighted mean of the low-resolution features in a (2r+1) x (2r+1)
  neighbourhood of grid cells around it, weight = spatial Gaussian (distance in grid cells
  between the pixel's position on the low-res grid and the cell centre, sigma
  ``JBU_SIGMA_SPATIAL``) x range Gaussian (Euclidean distance between the pixel's RGB colour in
  [0, 1] and the cell's mean colour, sigma ``JBU_SIGMA_RANGE``). Fixed, documented sigmas;
  positions as ``align_corners=False`` (the bilinear baseline's). Weights sum to one, so
  constant features stay constant; an upsampler (an output smaller than the grid reads only
  the cells around each pixel, no antialiasing).

All keep ``lr_feats``' dtype and device; the JBU computes in float32 whatever the dtype.

:func:`get_upsampler` maps a source string to one of these or, for anything else, to
:func:`loftup.load_upsampler` (released names, folders, checkpoint files).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .errors import LoftUpError, UsageError
from .featurizers import IMAGENET_MEAN, IMAGENET_STD

#: Neighbourhood radius of the JBU in low-resolution cells (5 x 5 cells).
JBU_RADIUS = 2
#: Spatial sigma of the JBU, in low-resolution cells.
JBU_SIGMA_SPATIAL = 1.0
#: Range sigma of the JBU, on RGB colours in [0, 1].
JBU_SIGMA_RANGE = 0.15
#: Elements of (B, C, rows, W) a JBU output tile may hold at once (bounds working memory).
JBU_TILE_ELEMENTS = 1 << 22

Upsampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class BaselineInputError(UsageError, TypeError):
    """Inputs a baseline cannot take: a :class:`UsageError` (so a ValueError, what LoftUp's
    forward raises for a shape) and a TypeError (what it raises for a dtype)."""


def _check(lr_feats: torch.Tensor, image: torch.Tensor) -> None:
    if lr_feats.ndim != 4 or image.ndim != 4 or image.shape[1] != 3:
        raise BaselineInputError(
            f"expected lr_feats (B, C, h, w) and image (B, 3, H, W), got "
            f"{tuple(lr_feats.shape)} and {tuple(image.shape)}; add a missing batch axis with "
            ".unsqueeze(0), and give the image its 3 RGB channels"
        )
    if lr_feats.shape[0] != image.shape[0]:
        raise BaselineInputError(
            f"batch sizes differ: lr_feats has {lr_feats.shape[0]}, image {image.shape[0]}; "
            "give one guidance image per feature map, in the same order"
        )
    # as LoftUp's forward: integer features would be rounded by the interpolation, and a uint8
    # image (0-255 pixels) would silently be read as a normalised one by the JBU's colours
    for name, t in (("lr_feats", lr_feats), ("image", image)):
        if not t.is_floating_point():
            raise BaselineInputError(
                f"{name} must be floating point, got {str(t.dtype).removeprefix('torch.')}; "
                "convert with .float() (the image ImageNet-normalised, not 0-255 pixels)"
            )
        if 0 in t.shape[2:]:
            raise BaselineInputError(
                f"{name} has an empty grid, shape {tuple(t.shape)}: its height and width "
                "must be at least 1"
            )


def nearest(lr_feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w), (B, 3, H, W) -> (B, C, H, W): each pixel copies the cell its centre is in."""
    _check(lr_feats, image)
    # "nearest-exact", not "nearest": torch's "nearest" reads the cell under a pixel's corner,
    # not its centre, which shifts the copy up and left at any ratio that is not a whole number
    return F.interpolate(lr_feats, size=image.shape[-2:], mode="nearest-exact")


def _resize(lr_feats: torch.Tensor, size, mode: str) -> torch.Tensor:
    """``F.interpolate`` to ``size``, antialiased along each axis that shrinks (only there:
    torch's antialiased bicubic is another cubic, PIL's, so an axis that grows keeps torch's)."""
    (h, w), (height, width) = lr_feats.shape[-2:], size
    if height >= h and width >= w:
        return F.interpolate(lr_feats, size=size, mode=mode, align_corners=False)
    half = lr_feats.dtype in (torch.float16, torch.bfloat16)
    x = lr_feats.float() if half else lr_feats  # no antialiasing in half precision on the CPU
    x = F.interpolate(x, size=(height, w), mode=mode, align_corners=False, antialias=height < h)
    x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=width < w)
    return x.to(lr_feats.dtype)


def bilinear(lr_feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w), (B, 3, H, W) -> (B, C, H, W) by bilinear interpolation."""
    _check(lr_feats, image)
    return _resize(lr_feats, image.shape[-2:], "bilinear")


def bicubic(lr_feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w), (B, 3, H, W) -> (B, C, H, W) by bicubic interpolation."""
    _check(lr_feats, image)
    return _resize(lr_feats, image.shape[-2:], "bicubic")


def _grid_positions(n_out: int, n_in: int, radius: int, device) -> tuple:
    """Per output index: its position on the input grid, the neighbour cells, their validity.

    Returns ``pos`` (n_out,), ``cells`` (n_out, 2r+1) clamped indices, ``valid`` (n_out, 2r+1).
    """
    pos = (torch.arange(n_out, device=device, dtype=torch.float32) + 0.5) * n_in / n_out - 0.5
    centre = pos.round().clamp(0, n_in - 1).long()
    offsets = torch.arange(-radius, radius + 1, device=device)
    cells = centre[:, None] + offsets[None, :]
    valid = (cells >= 0) & (cells < n_in)
    return pos, cells.clamp(0, n_in - 1), valid


def _spatial_exponents(pos, cells, valid, sigma: float) -> torch.Tensor:
    """The Gaussian's exponents (n_out, K) of the cells, -inf outside the grid."""
    exponent = -((pos[:, None] - cells) ** 2) / (2 * sigma**2)
    return exponent.masked_fill(~valid, -math.inf)


def jbu(
    lr_feats: torch.Tensor,
    image: torch.Tensor,
    *,
    radius: int = JBU_RADIUS,
    sigma_spatial: float = JBU_SIGMA_SPATIAL,
    sigma_range: float = JBU_SIGMA_RANGE,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    tile_elements: int = JBU_TILE_ELEMENTS,
) -> torch.Tensor:
    """Joint bilateral upsampling: (B, C, h, w), (B, 3, H, W) -> (B, C, H, W).

    Arguments:
      radius: neighbourhood radius in low-resolution cells ((2r+1)^2 cells per pixel).
      sigma_spatial: spatial Gaussian sigma in low-resolution cells.
      sigma_range: range Gaussian sigma on RGB colours in [0, 1].
      mean, std: the normalisation of ``image`` (undone to get colours in [0, 1]).
      tile_elements: output rows are computed in tiles of at most this many (B*C*rows*W)
        elements, so the working memory is about three output tiles, whatever H and W are.
    """
    _check(lr_feats, image)
    # a zero sigma divided by zero: every weight underflowed and the output was silently 0
    if not (isinstance(radius, int) and radius >= 0 and sigma_spatial > 0 and sigma_range > 0):
        raise BaselineInputError(
            f"the JBU takes a whole radius >= 0 and sigmas > 0 (inf: no such term), got "
            f"radius={radius!r}, sigma_spatial={sigma_spatial!r}, sigma_range={sigma_range!r}"
        )
    b, c, h, w = lr_feats.shape
    height, width = image.shape[-2:]
    dev = lr_feats.device
    m = torch.tensor(mean, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
    rgb = image.to(dev, torch.float32) * s + m  # (B, 3, H, W) in about [0, 1], on dev
    rgb_lr = F.adaptive_avg_pool2d(rgb, (h, w))  # each cell's mean colour
    pos_y, cells_y, valid_y = _grid_positions(height, h, radius, dev)
    pos_x, cells_x, valid_x = _grid_positions(width, w, radius, dev)
    # separable spatial exponents, -inf outside the grid: (H, K) and (W, K)
    ey = _spatial_exponents(pos_y, cells_y, valid_y, sigma_spatial)
    ex = _spatial_exponents(pos_x, cells_x, valid_x, sigma_spatial)

    out = torch.empty(b, c, height, width, device=dev, dtype=lr_feats.dtype)
    rows = max(1, min(height, tile_elements // max(1, b * c * width)))
    k = 2 * radius + 1
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        colour = rgb[:, :, r0:r1]

        def exponents(i: int, r0=r0, r1=r1, colour=colour):
            """Each pixel's log weights of the cells in row offset i: (B, 1, rows, W) per j."""
            rgb_rows = rgb_lr[:, :, cells_y[r0:r1, i]]  # (B, 3, rows, w)
            for j in range(k):
                diff = (colour - rgb_rows[:, :, :, cells_x[:, j]]).pow(2).sum(1, keepdim=True)
                yield j, -diff / (2 * sigma_range**2) + (ey[r0:r1, i, None] + ex[None, :, j])

        # weights relative to each pixel's largest, which is 1: a far colour or a small sigma
        # underflowed every weight of a pixel (clamped, they no longer followed the colours)
        top = torch.full((b, 1, r1 - r0, width), -math.inf, device=dev)
        for i in range(k):
            for _, e in exponents(i):
                torch.maximum(top, e, out=top)
        acc = torch.zeros(b, c, r1 - r0, width, device=dev, dtype=torch.float32)
        norm = torch.zeros(b, 1, r1 - r0, width, device=dev, dtype=torch.float32)
        for i in range(k):
            feats_rows = lr_feats[:, :, cells_y[r0:r1, i]].float()  # (B, C, rows, w)
            for j, e in exponents(i):
                weight = (e - top).exp()
                acc.addcmul_(feats_rows[:, :, :, cells_x[:, j]], weight)
                norm.add_(weight)
        out[:, :, r0:r1] = (acc / norm).to(out.dtype)
    return out


BASELINES: dict[str, Upsampler] = {
    "nearest": nearest,
    "bilinear": bilinear,
    "bicubic": bicubic,
    "jbu": jbu,
}


def get_upsampler(source: str, device: str | torch.device | None = None) -> Upsampler:
    """The upsampler named by ``source``: a baseline name or anything ``load_upsampler`` takes.

    ``'nearest' | 'bilinear' | 'bicubic' | 'jbu'`` give the functions above; anything else (a
    released name such as ``loftup_dinov2s``, a folder, a checkpoint file) is loaded with
    :func:`loftup.load_upsampler` onto ``device``. Both are called as ``fn(lr_feats, image)``.
    """
    key = str(source)
    if key in BASELINES:
        return BASELINES[key]
    if key == "highres":
        raise LoftUpError(
            "'highres' is not an upsampler: it runs the backbone on a larger input; use it "
            "through `loftup eval ... --upsampler highres`"
        )
    from .errors import UnknownNameError, did_you_mean
    from .hub import load_upsampler

    try:
        return load_upsampler(key, device=device)
    except UnknownNameError as e:  # the released names only: these are names here too
        close = did_you_mean(key, BASELINES)
        raise UnknownNameError(f"{e}; or a baseline: {', '.join(BASELINES)}{close}") from None
