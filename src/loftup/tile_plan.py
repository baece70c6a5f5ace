"""Where the tiles of a tiled output lie (:mod:`loftup.tiling`), and the settings that size them:
the tile side and the decoding chunk (per device by default, or the model's ``tile_size`` and
``chunk_size``); pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import UsageError, is_int


@dataclass(frozen=True)
class Tile:
    """Which images and which output rows/columns one piece of the output covers."""

    batch: slice
    rows: slice
    cols: slice


def default_tile_size(device: torch.device | str) -> int:
    """Side of a square tile in pixels: about 0.3 GB of float32 working memory on the CPU;
    on a GPU about 1.9 GB in half precision (on an H200, 4096 x 4096 took 0.75 s with 512-pixel
    tiles and 0.80 s with 1024: larger tiles only cost memory)."""
    return 512 if torch.device(device).type == "cuda" else 256


def default_chunk_size(device: torch.device | str) -> int:
    """Pixels decoded at once (small enough for the CPU's caches, large for a GPU)."""
    return 1 << 18 if torch.device(device).type == "cuda" else 8192


def split_axis(length: int, tile: int, align: int = 1) -> list[tuple[int, int]]:
    """[start, stop) pieces of ``range(length)``, about equal, at most ``tile`` long (or
    ``align`` if ``tile`` is smaller), every start a multiple of ``align``."""
    tile = max(align, tile - tile % align)
    n = max(1, math.ceil(length / tile))
    edges = [min(length, -(-round(i * length / n) // align) * align) for i in range(n)]
    edges = sorted(set(edges)) + [length]
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        while b - a > tile:  # rounding up can leave a piece one block too long
            out.append((a, a + tile))
            a += tile
        out.append((a, b))
    return out


def check_settings(**settings) -> None:
    """A :class:`loftup.errors.UsageError` naming the setting unless each is None (the
    device's default) or a whole number >= 1 (``tile_size``, ``chunk_size``, ``align``: the
    model's attributes of those names, or ``upsample``'s arguments)."""
    for name, value in settings.items():
        if value is not None and (not is_int(value) or value < 1):
            raise UsageError(
                f"{name} must be a whole number >= 1, or None for the device's default; got "
                f"{value!r} (set model.{name} or pass {name}=)"
            )


def plan_tiles(batch: int, height: int, width: int, tile_size: int, align: int = 1) -> list[Tile]:
    """Tiles covering (batch, height, width), each holding at most ``tile_size**2`` pixels,
    rows and columns starting on multiples of ``align``."""
    if tile_size < 1:  # internal: callers check the settings first (check_settings)
        raise ValueError(f"tile_size must be >= 1, got {tile_size}")
    rows, cols = split_axis(height, tile_size, align), split_axis(width, tile_size, align)
    th = max(r1 - r0 for r0, r1 in rows)
    tw = max(c1 - c0 for c0, c1 in cols)
    per = max(1, tile_size * tile_size // (th * tw))  # images sharing one tile
    return [
        Tile(slice(b, min(batch, b + per)), slice(*r), slice(*c))
        for b in range(0, batch, per)
        for r in rows
        for c in cols
    ]
