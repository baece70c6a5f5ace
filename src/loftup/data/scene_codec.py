"""The bytes of a world's files: its images as JPEG (quality 95, 4:4:4 chroma: the reasons are
in :mod:`.scene_files`' module note) and its label maps as palette PNG whose pixel values are the
class ids."""

from __future__ import annotations

import io

import numpy as np

JPEG_QUALITY = 95


def _palette() -> list[int]:
    rng = np.random.default_rng(12345)
    colours = (rng.random((256, 3)) * 200 + 40).astype(np.uint8)
    return colours.ravel().tolist()


def encode_labels(labels: np.ndarray) -> bytes:
    """(H, W) uint8 class ids -> palette PNG bytes whose pixel values are the ids."""
    from PIL import Image

    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(_palette())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes with 4:4:4 chroma (see :mod:`.scene_files`' module note)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB."""
    from PIL import Image

    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))
