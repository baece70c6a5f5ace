"""Texture families of the synthetic world: a region's class is its texture, never its colour.

Every family is a pure function ``pattern(y, x, period, rng) -> t`` of pixel coordinates (arrays of
any shape, in pixels) giving a mixing weight ``t`` in [0, 1]; a region is painted
``colour_a * (1 - t) + colour_b * t`` with two random colours, so that a pixel's colour says
nothing about the class and only the arrangement of colours around it does. The families differ
by structure or orientation, never by frequency alone, so that the period can be jittered (and
scenes rendered at several scales) without turning one class into another.

Random parameters inside a family (orientation jitter of a few degrees, phase, duty cycle,
lattice offset) are drawn from ``rng`` so that no two regions of a class look identical.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import UsageError

#: Orientation jitter (radians) of every oriented family.
_JITTER = math.radians(8)


def _wave(u: np.ndarray, period: float, duty: float = 0.5, sharp: float = 2.5) -> np.ndarray:
    """A softened square wave in [0, 1] along ``u``, 1 on a fraction ``duty`` of each period.

    Crisp stripes without stair-step aliasing: the sine is steepened and clipped.
    """
    s = np.sin(2 * math.pi * u / period) - math.cos(math.pi * duty)
    return np.clip(0.5 + sharp * s, 0.0, 1.0)


def _rotate(y, x, angle: float):
    c, s = math.cos(angle), math.sin(angle)
    return x * c + y * s, -x * s + y * c


def _stripes(degrees: float) -> Callable:
    """Stripes whose normal points ``degrees`` clockwise from the x axis (y points down)."""

    def pattern(y, x, period, rng):
        angle = math.radians(degrees) + rng.uniform(-_JITTER, _JITTER)
        u, _ = _rotate(y, x, angle)
        return _wave(u + rng.uniform(0, period), period, duty=rng.uniform(0.35, 0.65))

    return pattern


def _checks(degrees: float) -> Callable:
    def pattern(y, x, period, rng):
        angle = math.radians(degrees) + rng.uniform(-_JITTER, _JITTER)
        u, v = _rotate(y, x, angle)
        cell = 2 * period  # squares one period wide
        a = _wave(u + rng.uniform(0, cell), cell)
        b = _wave(v + rng.uniform(0, cell), cell)
        return a * (1 - b) + b * (1 - a)  # XOR of the two square waves

    return pattern


def _dots(y, x, period, rng):
    u, v = _rotate(y, x, rng.uniform(-_JITTER, _JITTER))
    du = np.mod(u + rng.uniform(0, period), period) - period / 2
    dv = np.mod(v + rng.uniform(0, period), period) - period / 2
    radius = period * rng.uniform(0.25, 0.32)
    return np.clip(radius + 0.5 - np.sqrt(du * du + dv * dv), 0.0, 1.0)


def _grid(y, x, period, rng):
    u, v = _rotate(y, x, rng.uniform(-_JITTER, _JITTER))
    a = _wave(u + rng.uniform(0, period), period, duty=0.3)
    b = _wave(v + rng.uniform(0, period), period, duty=0.3)  # lines, 30% of each period
    return np.maximum(a, b)


def _speckle(y, x, period, rng):
    cell = max(period / 3.0, 1.0)
    iy = np.floor((y - y.min()) / cell).astype(np.int64)
    ix = np.floor((x - x.min()) / cell).astype(np.int64)
    table = rng.random((int(iy.max()) + 1, int(ix.max()) + 1)) < 0.5
    return table[iy, ix].astype(np.float32)


def _plain(y, x, period, rng):
    return np.zeros(np.broadcast_shapes(np.shape(y), np.shape(x)), dtype=np.float32)


def _waves(y, x, period, rng):
    amp = period * rng.uniform(0.35, 0.6)
    wavelength = period * rng.uniform(2.5, 3.5)
    v = y + amp * np.sin(2 * math.pi * x / wavelength + rng.uniform(0, 2 * math.pi))
    return _wave(v + rng.uniform(0, period), period)


def _rings(y, x, period, rng):
    cy = y.mean() + rng.uniform(-3, 3) * period
    cx = x.mean() + rng.uniform(-3, 3) * period
    return _wave(np.sqrt((y - cy) ** 2 + (x - cx) ** 2), period)


#: Family name -> pattern function; class k of a world with K classes is the k-th name.
FAMILIES: dict[str, Callable] = {
    "stripes_vertical": _stripes(0),
    "stripes_horizontal": _stripes(90),
    "stripes_rising": _stripes(45),  # like /
    "stripes_falling": _stripes(135),  # like \
    "checks": _checks(0),
    "dots": _dots,
    "speckle": _speckle,
    "plain": _plain,
    "grid": _grid,
    "waves": _waves,
    "rings": _rings,
    "diamonds": _checks(45),
}


def render_texture(
    family: str,
    y: np.ndarray,
    x: np.ndarray,
    period: float,
    colours: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Texture ``family`` at pixel coordinates (y, x) (each (N,)) -> RGB (N, 3) in [0, 1].

    ``colours`` is (2, 3): the colours mixed by the family's pattern.
    """
    if family not in FAMILIES:
        raise UsageError(f"unknown texture family {family!r}; use one of {', '.join(FAMILIES)}")
    t = FAMILIES[family](y.astype(np.float32), x.astype(np.float32), period, rng)
    t = t.astype(np.float32)[:, None]
    return colours[0] * (1 - t) + colours[1] * t
