"""The scene world's options, checked before anything is generated or written.

:class:`loftup.data.scenes.SceneConfig` and :func:`loftup.data.scene_files.write_scenes` refuse
some values with a ValueError deep in NumPy (a negative or NaN ``scale``, a reversed
``texture_scale``, a negative seed) and take others that make nonsense (``scale`` 0 writes
images of NaN cast to bytes). :func:`scene_config` and :func:`check_write` say each of them as a
:class:`loftup.errors.UsageError` (a ValueError) naming the option and its valid range, so the
command line prints one line and nothing is written.
"""

from __future__ import annotations

import math

from ..errors import UsageError, is_int


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def scene_config(
    *,
    height: int = 128,
    width: int = 128,
    num_classes: int = 8,
    scale: float = 1.0,
    texture_scale: tuple[float, float] = (1.0, 1.0),
    texture_contrast: tuple[float, float] | None = (0.12, 0.25),
):
    """A :class:`loftup.data.scenes.SceneConfig` of these values, or a :class:`UsageError`
    naming the first one outside its range (the command line's flags are named alike)."""
    from ..data.scenes import SceneConfig
    from ..data.textures import FAMILIES

    if not (is_int(height) and is_int(width) and min(height, width) >= 8):
        raise UsageError(f"scene size must be at least 8x8 pixels, got {height}x{width}")
    if not is_int(num_classes) or not 2 <= num_classes <= len(FAMILIES):
        raise UsageError(
            f"classes (texture families) must be between 2 and {len(FAMILIES)}, got {num_classes}"
        )
    if not _positive(scale):
        raise UsageError(
            f"scale (pixel scale of textures and lines) must be a finite number > 0, got {scale}"
        )
    lo, hi = texture_scale
    if not (_positive(lo) and _positive(hi) and lo <= hi):
        raise UsageError(
            f"texture scale must be MIN MAX with 0 < MIN <= MAX (finite), got {lo:g} {hi:g}"
        )
    if texture_contrast is not None:
        lo, hi = texture_contrast
        if not 0 <= lo <= hi <= 1:  # NaN fails too
            raise UsageError(
                f"texture contrast must be MIN MAX with 0 <= MIN <= MAX <= 1 (RGB distance), "
                f"got {lo:g} {hi:g}"
            )
    try:
        return SceneConfig(
            height=height,
            width=width,
            num_classes=num_classes,
            scale=float(scale),
            texture_scale=(float(texture_scale[0]), float(texture_scale[1])),
            texture_contrast=None if texture_contrast is None else tuple(texture_contrast),
        )
    except ValueError as e:  # anything SceneConfig itself refuses, said the same way
        raise UsageError(str(e)) from None


def check_write(count: int, *, seed: int = 0, start: int = 0, quality: int = 95) -> None:
    """A :class:`UsageError` unless :func:`loftup.data.scene_files.write_scenes` can write
    ``count`` scenes from index ``start`` of world ``seed`` at JPEG ``quality``."""
    if not is_int(count) or count < 1:
        raise UsageError(f"count (number of scenes) must be at least 1, got {count}")
    if not is_int(seed) or seed < 0:
        raise UsageError(f"seed must be an integer >= 0 (it seeds NumPy), got {seed}")
    if not is_int(start) or start < 0:
        raise UsageError(f"start (index of the first scene) must be >= 0, got {start}")
    if not is_int(quality) or not 1 <= quality <= 100:
        raise UsageError(f"quality (JPEG) must be between 1 and 100, got {quality}")
