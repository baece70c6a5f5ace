"""Synthetic noise on stage-1 masks, to measure how the recipe degrades with poor masks.

Each kind takes masks (K, H, W) as booleans and a level in [0, 1]; level 0 returns the masks
unchanged. Randomness comes from the ``generator`` passed in (the training loop seeds one per
sample and step, so runs repeat exactly).

- ``erode`` / ``dilate``: every mask loses / gains a boundary band of ``round(level * max_radius)``
  pixels (square structuring element; the image border does not erode).
- ``drop``: every mask is removed with probability ``level``.
- ``merge``: every mask, with probability ``level``, absorbs the neighbour it touches most (the
  union takes the first one's place in the order, the neighbour is removed).
- ``blobs``: ``round(level * K)`` false-positive masks (random ellipses, 5% to 25% of the image
  side per semi-axis) are inserted at random places in the order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UsageError

KINDS = ("erode", "dilate", "drop", "merge", "blobs")


@dataclass
class MaskNoise:
    """Levels in [0, 1] of each kind of mask noise (all 0: the masks as given).

    Arguments:
      erode, dilate, drop, merge, blobs: levels of each kind (see :mod:`loftup.train.noise`).
      max_radius: boundary band at level 1, as a fraction of the shorter image side.
    """

    erode: float = 0.0
    dilate: float = 0.0
    drop: float = 0.0
    merge: float = 0.0
    blobs: float = 0.0
    max_radius: float = 0.05

    def __post_init__(self) -> None:
        for kind in KINDS:
            level = getattr(self, kind)
            if not 0.0 <= float(level) <= 1.0:
                raise UsageError(
                    f"config key mask_noise.{kind} must be a level in [0, 1] (0: none), got {level}"
                )

    @property
    def active(self) -> bool:
        return any(getattr(self, kind) > 0 for kind in KINDS)


def apply_mask_noise(masks: torch.Tensor, noise: MaskNoise, generator=None) -> torch.Tensor:
    """All configured kinds in a fixed order (drop, merge, erode, dilate, blobs): (K, H, W) -> (K', H, W)."""
    if not noise.active:
        return masks
    radius = noise.max_radius * min(masks.shape[-2:])
    masks = drop_masks(masks, noise.drop, generator)
    masks = merge_neighbours(masks, noise.merge, generator)
    masks = erode(masks, noise.erode, radius)
    masks = dilate(masks, noise.dilate, radius)
    return add_blobs(masks, noise.blobs, generator)


def _band(level: float, max_radius: float) -> int:
    return int(round(level * max_radius))


def dilate(masks: torch.Tensor, level: float, max_radius: float) -> torch.Tensor:
    """Grow every mask by ``round(level * max_radius)`` pixels."""
    r = _band(level, max_radius)
    if r == 0 or masks.shape[0] == 0:
        return masks
    x = masks[None].float()
    return F.max_pool2d(x, 2 * r + 1, stride=1, padding=r)[0] > 0.5


def erode(masks: torch.Tensor, level: float, max_radius: float) -> torch.Tensor:
    """Shrink every mask by ``round(level * max_radius)`` pixels (the image border does not erode)."""
    r = _band(level, max_radius)
    if r == 0 or masks.shape[0] == 0:
        return masks
    outside = (~masks)[None].float()
    return F.max_pool2d(outside, 2 * r + 1, stride=1, padding=r)[0] < 0.5


def drop_masks(masks: torch.Tensor, level: float, generator=None) -> torch.Tensor:
    """Remove each mask with probability ``level``."""
    if level <= 0 or masks.shape[0] == 0:
        return masks
    keep = torch.rand(masks.shape[0], generator=generator) >= level
    return masks[keep.to(masks.device)]


def merge_neighbours(masks: torch.Tensor, level: float, generator=None) -> torch.Tensor:
    """With probability ``level`` each mask absorbs the neighbour its 1-pixel rim overlaps most."""
    k = masks.shape[0]
    if level <= 0 or k < 2:
        return masks
    tries = torch.rand(k, generator=generator) < level
    rim = dilate(masks, 1.0, 1.0).flatten(1).float()
    touch = rim @ masks.flatten(1).float().T  # (K, K): pixels of j under i's dilation
    touch.fill_diagonal_(0)
    out = masks.clone()
    alive = torch.ones(k, dtype=torch.bool)
    for i in range(k):
        if not (tries[i] and alive[i]):
            continue
        scores = touch[i].clone()
        scores[~alive.to(scores.device)] = 0
        j = int(scores.argmax())
        if scores[j] <= 0:
            continue
        out[i] |= out[j]
        alive[j] = False
    return out[alive.to(out.device)]


def add_blobs(masks: torch.Tensor, level: float, generator=None) -> torch.Tensor:
    """Insert ``round(level * K)`` random elliptical masks at random places in the order."""
    k, h, w = masks.shape
    n = int(round(level * k))
    if n == 0:
        return masks
    u = torch.rand(n, 5, generator=generator)
    cy, cx = u[:, 0] * h, u[:, 1] * w
    side = min(h, w)
    ry, rx = (0.05 + 0.2 * u[:, 2]) * side, (0.05 + 0.2 * u[:, 3]) * side
    ys = torch.arange(h, dtype=torch.float32)[None, :, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, None, :] + 0.5
    dist = ((ys - cy[:, None, None]) / ry[:, None, None]).square()
    dist = dist + ((xs - cx[:, None, None]) / rx[:, None, None]).square()
    blobs = (dist <= 1.0).to(masks.device)
    slots = torch.randperm(k + n, generator=generator)[:n]  # where the blobs go
    is_blob = torch.zeros(k + n, dtype=torch.bool)
    is_blob[slots] = True
    out = torch.empty(k + n, h, w, dtype=torch.bool, device=masks.device)
    out[is_blob.to(masks.device)] = blobs
    out[~is_blob.to(masks.device)] = masks
    return out
