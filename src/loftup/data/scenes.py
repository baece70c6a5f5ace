"""Synthetic scenes: random regions with sharp boundaries whose class is their texture.

A scene is painted back to front: a background region covering the image, then blobs and
polygons, then thin structures (polylines a few pixels wide) on top (the shapes are
:mod:`loftup.data.shapes`). Each region draws a class
(uniform over ``num_classes``), the texture family of that class (:mod:`loftup.data.textures`),
two random colours and a random period; later regions hide earlier ones. The result is an RGB
image, its semantic label map and the class-agnostic instance map (one id per painted region,
its visible part). Nothing about a pixel's colour tells its class: only the texture around it
does, which a backbone sees at patch resolution and an upsampler has to place at pixel
resolution.

Scenes are a pure function of ``(config, seed, index)``: the same triple gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import InitVar, dataclass

import numpy as np

from ..errors import UsageError, is_int
from ..words import said
from .shapes import blob_mask, pixel_grid, polygon_mask, thin_mask
from .textures import FAMILIES, render_texture


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


#: The range of ``scale`` and ``texture_scale``: a texture period past float32's range (scale
#: 1e308) was an OverflowError traceback from NumPy, one below it (1e-40) painted noise.
SCALE_RANGE = (1e-6, 1e6)


def _in_scale_range(value) -> bool:
    return _positive(value) and SCALE_RANGE[0] <= value <= SCALE_RANGE[1]


@dataclass
class SceneConfig:
    """Statistics of a synthetic world. Pixel quantities are at ``scale`` 1 and multiplied by it.

    Arguments:
      height, width: image size in pixels.
      num_classes: classes K; class k is the texture family ``families[k]``.
      families: texture family names (default: the first K of ``textures.FAMILIES``).
      blobs, polygons, thin: (min, max) number of each kind of region per scene (inclusive).
      radius: (min, max) region radius as a fraction of the image's shorter side.
      thin_width: (min, max) width of thin structures in pixels.
      period: (min, max) texture period in pixels (log-uniform per region).
      texture_scale: (min, max) extra factor on the period, drawn per region (log-uniform):
        (1, 2) makes textures appear at several scales, which a backbone used on zoomed crops
        must tolerate.
      scale: multiplies every pixel quantity (thin width, period, min_area by its square): a
        scene of size 2N at scale 2 is the same world as one of size N at scale 1, seen closer.
      noise: standard deviation of Gaussian pixel noise (image in [0, 1]).
      min_colour_distance: least RGB distance between a region's two texture colours.
      texture_contrast: None, or (min, max) RGB distance between a region's two texture colours
        (drawn uniformly per region, around a random mean colour; overrides
        ``min_colour_distance``): low contrast makes region boundaries stronger than the edges
        inside a texture, as object boundaries usually are in photographs.
      min_area: instance masks smaller than this (in pixels) are left out of the annotations,
        as SA-1B leaves out tiny segments; their pixels keep their class in the label map.
    """

    height: int = 128
    width: int = 128
    num_classes: int = 8
    families: tuple[str, ...] | None = None
    blobs: tuple[int, int] = (3, 6)
    polygons: tuple[int, int] = (2, 5)
    thin: tuple[int, int] = (1, 3)
    radius: tuple[float, float] = (0.1, 0.35)
    thin_width: tuple[float, float] = (2.0, 4.0)
    period: tuple[float, float] = (4.0, 7.0)
    texture_scale: tuple[float, float] = (1.0, 1.0)
    scale: float = 1.0
    noise: float = 0.02
    min_colour_distance: float = 0.35
    texture_contrast: tuple[float, float] | None = (0.12, 0.25)
    min_area: int = 16
    #: not a field: how an error calls each field, e.g. {"num_classes": "--classes"} for a
    #: command line's options (:func:`loftup.words.said`), by default by its name
    said_as: InitVar[dict | None] = None

    def __post_init__(self, said_as: dict | None = None) -> None:
        """Refuse values that would fail deep in NumPy or draw nonsense (``scale`` 0 paints NaN),
        as a :class:`loftup.errors.UsageError` (a ValueError) naming the field (or the option
        that ``said_as`` names it by) and its range."""
        names = tuple(self.families) if self.families else tuple(FAMILIES)
        unknown = [n for n in names if n not in FAMILIES]
        if unknown:
            raise UsageError(f"unknown texture families {unknown}; known: {', '.join(FAMILIES)}")
        if not is_int(self.num_classes) or not 2 <= self.num_classes <= len(names):
            raise UsageError(
                f"{said('num_classes', said_as)} (texture families) must be between 2 and "
                f"{len(names)}, got {self.num_classes}"
                + ("; pass more families to have more classes" if self.families else "")
            )
        if not (is_int(self.height) and is_int(self.width) and min(self.height, self.width) >= 8):
            raise UsageError(f"scenes must be at least 8x8 pixels, got {self.height}x{self.width}")
        bounds = f"from {SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g}"
        if not _in_scale_range(self.scale):
            raise UsageError(
                f"{said('scale', said_as)} (pixel scale of textures and lines) must be a finite "
                f"number > 0, got {self.scale}; it goes {bounds}"
            )
        lo, hi = self.texture_scale
        if not (_in_scale_range(lo) and _in_scale_range(hi) and lo <= hi):
            raise UsageError(
                f"{said('texture_scale', said_as)} must be "
                f"{_pair(said('texture_scale', said_as))} with 0 < MIN <= MAX (finite, {bounds}), "
                f"got {lo:g} {hi:g}"
            )
        for name in ("blobs", "polygons", "thin", "radius", "thin_width", "period"):
            lo, hi = getattr(self, name)
            positive = name == "period"  # drawn log-uniform: log(0) was 'math domain error'
            least = "0 <" if positive else "0 <="
            if not ((lo > 0 if positive else lo >= 0) and lo <= hi < math.inf):  # NaN fails too
                raise UsageError(
                    f"{name} must be a (min, max) pair with {least} min <= max, got {lo} {hi}"
                )
        for name in ("noise", "min_colour_distance", "min_area"):
            if not 0 <= getattr(self, name) < math.inf:
                raise UsageError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.texture_contrast is not None:
            lo, hi = self.texture_contrast
            if not 0 <= lo <= hi <= 1:  # NaN fails too
                name = said("texture_contrast", said_as)
                pair = _pair(name) if name.startswith("--") else "None or (MIN, MAX)"
                raise UsageError(
                    f"{name} must be {pair} with 0 <= MIN <= MAX <= 1 (RGB distance), got "
                    f"{lo:g} {hi:g}"
                )

    @property
    def class_names(self) -> tuple[str, ...]:
        """Texture family of each class, by class index."""
        names = tuple(self.families) if self.families else tuple(FAMILIES)
        return names[: self.num_classes]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SceneConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(
                f"unknown scene config keys {unknown}; use only {', '.join(sorted(known))}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class Scene:
    """One generated scene.

    image: (H, W, 3) uint8 RGB. labels: (H, W) uint8 class per pixel. instances: (H, W) int32
    index of the painted region each pixel shows (0 = background). classes: (N,) class of each
    painted region. masks: indices of the regions kept as annotations (visible area >=
    min_area), in painting order.
    """

    image: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    classes: np.ndarray
    masks: list[int]

    def mask(self, k: int) -> np.ndarray:
        """(H, W) bool visible mask of painted region ``k``."""
        return self.instances == k


def _pair(name: str) -> str:
    """A (min, max) pair as ``name`` is given: ``MIN MAX`` after an option, else a tuple."""
    return "MIN MAX" if name.startswith("--") else "(MIN, MAX)"


def _log_uniform(rng, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _colours(rng, min_distance: float, contrast=None) -> np.ndarray:
    if contrast is not None:
        direction = rng.normal(size=3)
        half = 0.5 * rng.uniform(*contrast) * direction / np.linalg.norm(direction)
        mean = np.abs(half) + rng.random(3) * (1 - 2 * np.abs(half))
        return np.stack([mean - half, mean + half]).astype(np.float32)
    a = rng.random(3)
    for _ in range(100):
        b = rng.random(3)
        if np.linalg.norm(a - b) >= min_distance:
            break
    return np.stack([a, b]).astype(np.float32)


def generate_scene(config: SceneConfig, seed: int, index: int = 0) -> Scene:
    """Scene number ``index`` of the world ``(config, seed)``; independent of every other index."""
    rng = np.random.default_rng([seed, index])
    h, w, s = config.height, config.width, config.scale
    yy, xx = pixel_grid(h, w)
    side = min(h, w)

    def centre_and_radius():
        r = side * rng.uniform(*config.radius)
        return rng.uniform(-0.1 * h, 1.1 * h), rng.uniform(-0.1 * w, 1.1 * w), r

    shapes = [np.ones((h, w), dtype=bool)]
    kinds = ["blob"] * int(rng.integers(config.blobs[0], config.blobs[1] + 1))
    kinds += ["polygon"] * int(rng.integers(config.polygons[0], config.polygons[1] + 1))
    rng.shuffle(kinds)
    for kind in kinds:
        cy, cx, r = centre_and_radius()
        if kind == "blob":
            shapes.append(blob_mask(yy, xx, cy, cx, r, rng))
        else:
            shapes.append(polygon_mask(h, w, cy, cx, r, rng))
    for _ in range(int(rng.integers(config.thin[0], config.thin[1] + 1))):
        shapes.append(thin_mask(yy, xx, s * rng.uniform(*config.thin_width), rng))

    image = np.zeros((h, w, 3), dtype=np.float32)
    labels = np.zeros((h, w), dtype=np.uint8)
    instances = np.zeros((h, w), dtype=np.int32)
    classes = rng.integers(0, config.num_classes, len(shapes))
    for k, (mask, c) in enumerate(zip(shapes, classes)):
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            continue
        period = s * _log_uniform(rng, *config.period) * _log_uniform(rng, *config.texture_scale)
        colours = _colours(rng, config.min_colour_distance, config.texture_contrast)
        family = config.class_names[int(c)]
        image[ys, xs] = render_texture(family, ys + 0.5, xs + 0.5, period, colours, rng)
        labels[ys, xs] = c
        instances[ys, xs] = k

    if config.noise > 0:
        image += rng.normal(0, config.noise, image.shape).astype(np.float32)
    image = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    areas = np.bincount(instances.ravel(), minlength=len(shapes))
    min_area = config.min_area * s * s
    masks = [k for k in range(len(shapes)) if areas[k] >= max(min_area, 1)]
    return Scene(image, labels, instances, classes.astype(np.int64), masks)
