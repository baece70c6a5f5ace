"""The shapes a synthetic scene is painted with (:mod:`.scenes`): each returns an (H, W) bool
mask of a region, drawn from ``rng``: smooth blobs, star-shaped polygons and thin polylines a
few pixels wide. Coordinates are pixel centres (:func:`pixel_grid`).
"""

from __future__ import annotations

import math

import numpy as np


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The (H, W) float32 row and column coordinates of every pixel's centre (``+ 0.5``)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return yy.astype(np.float32) + 0.5, xx.astype(np.float32) + 0.5


def _frame(yy, xx, cy, cx, rng):
    """Coordinates in a randomly rotated and squashed frame centred on (cy, cx)."""
    angle = rng.uniform(0, math.pi)
    squash = rng.uniform(0.5, 1.0)
    dy, dx = yy - cy, xx - cx
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = (-dx * math.sin(angle) + dy * math.cos(angle)) / squash
    return u, v


def blob_mask(yy, xx, cy, cx, r, rng) -> np.ndarray:
    """A smooth star-shaped blob: radius r * (1 + sum_k a_k cos(k theta + phi_k))."""
    u, v = _frame(yy, xx, cy, cx, rng)
    theta = np.arctan2(v, u)
    rho = np.ones_like(theta)
    for k in range(2, 6):
        rho += rng.uniform(0, 0.3) / k * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    return np.hypot(u, v) < r * rho


def polygon_mask(h, w, cy, cx, r, rng) -> np.ndarray:
    """A random star-shaped polygon with 3 to 7 vertices around (cy, cx)."""
    from skimage.draw import polygon

    n = int(rng.integers(3, 8))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = r * rng.uniform(0.5, 1.2, n)
    squash = rng.uniform(0.5, 1.0)
    rot = rng.uniform(0, math.pi)
    u, v = radii * np.cos(angles), radii * np.sin(angles) * squash
    rows = cy + u * math.sin(rot) + v * math.cos(rot)
    cols = cx + u * math.cos(rot) - v * math.sin(rot)
    mask = np.zeros((h, w), dtype=bool)
    rr, cc = polygon(rows, cols, shape=(h, w))
    mask[rr, cc] = True
    return mask


def thin_mask(yy, xx, width, rng) -> np.ndarray:
    """A polyline of 2 to 4 segments, ``width`` pixels wide, wandering across the image."""
    h, w = yy.shape
    side = min(h, w)
    point = np.array([rng.uniform(0, h), rng.uniform(0, w)])
    heading = rng.uniform(0, 2 * math.pi)
    dist = np.full((h, w), np.inf, dtype=np.float32)
    for _ in range(int(rng.integers(2, 5))):
        heading += rng.uniform(-1.2, 1.2)
        step = side * rng.uniform(0.25, 0.6)
        nxt = point + step * np.array([math.sin(heading), math.cos(heading)])
        dist = np.minimum(dist, _segment_distance(yy, xx, point, nxt))
        point = nxt
    return dist <= width / 2


def _segment_distance(yy, xx, a, b) -> np.ndarray:
    d = b - a
    t = ((yy - a[0]) * d[0] + (xx - a[1]) * d[1]) / max(float(d @ d), 1e-6)
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(yy - (a[0] + t * d[0]), xx - (a[1] + t * d[1]))
