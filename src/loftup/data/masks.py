"""Mask sources for plain image folders, and the on-disk cache of masks computed once.

- ``superpixels``: training-free, from scikit-image's SLIC at several granularities (coarse
  first, so finer masks refine coarser ones when applied in order).
- ``sam``: SAM automatic mask generation on transformers' ``SamModel`` (:mod:`.sam`), for users
  who have SAM weights (a hub id or a local folder); largest masks first.

Masks are computed on the square the training sees (``size`` x ``size``) and stored packed
(one bit per pixel) under a key made of the image's path, size, modification time and the
source's settings, so a changed image or setting is never served stale masks.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np


def superpixel_masks(image: np.ndarray, segments=(16, 64), compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels of an (H, W, 3) uint8 image at each granularity: bool (K, H, W)."""
    from skimage.segmentation import slic

    masks = []
    for n in segments:
        labels = slic(image, n_segments=int(n), compactness=compactness, start_label=0)
        for value in np.unique(labels):
            masks.append(labels == value)
    if not masks:
        return np.zeros((0, *image.shape[:2]), dtype=bool)
    return np.stack(masks)


def pack(masks: np.ndarray) -> np.ndarray:
    """bool (K, H, W) -> uint8 (K, H, ceil(W / 8)), one bit per pixel."""
    return np.packbits(masks, axis=-1)


class MaskCache:
    """Packed masks on disk, one ``.npz`` per (image, settings), written atomically.

    Arguments:
      root: cache folder (created when first written).
      settings: everything that changes the masks (source name, its parameters, size).
    """

    def __init__(self, root: str | os.PathLike, settings: dict) -> None:
        self.root = Path(root)
        self.settings = json.dumps(settings, sort_keys=True)

    def key(self, image_path: Path) -> str:
        st = image_path.stat()
        text = f"{image_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.settings}"
        return hashlib.sha1(text.encode()).hexdigest()

    def path(self, image_path: Path) -> Path:
        key = self.key(image_path)
        return self.root / key[:2] / f"{key}.npz"

    def get(self, image_path: Path) -> tuple[np.ndarray, int] | None:
        """(packed masks, width) if cached and readable, else None."""
        path = self.path(image_path)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                return data["packed"], int(data["width"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
            return None  # a damaged entry (a truncated or altered .npz too) is recomputed

    def check_writable(self) -> None:
        """Make the folder and write a file in it, or a :class:`UsageError` naming it: said
        once, before any image is read (each image's write would fail, and read as if the
        image could not be)."""
        import tempfile

        from ..errors import UsageError

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as e:
            raise UsageError(
                f"the mask cache {self.root} cannot be written ({e.strerror or e}); set "
                "data.cache_dir (or LOFTUP_CACHE) to a writable folder, where the computed "
                "masks are kept"
            ) from None

    def put(self, image_path: Path, packed: np.ndarray, width: int) -> None:
        from ..atomic import atomic_write

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez_compressed(f, packed=packed, width=np.int64(width))

        atomic_write(self.path(image_path), write)
