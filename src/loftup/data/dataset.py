"""Images with their masks as a torch Dataset, and the batch collation (the step-indexed
sampler is in :mod:`.sampler`, and importable from here too).

A sample is a dict: ``image`` uint8 (3, S, S); ``masks`` packed uint8 (K, S, ceil(S / 8)) (see
:func:`unpack_masks`); ``index``; ``skipped``, the files that could not be read on the way (a
broken image or JSON is replaced by the next readable item and reported, never raised).
"""

from __future__ import annotations

import logging
import multiprocessing
import numbers
import os
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ..errors import LoftUpError, PathPermissionError, UsageError
from ..escaping import quoted
from ..io import max_image_pixels
from .folders import _archives_hint, data_folder, drawn_by_a_run
from .images import READ_ERRORS, list_images, load_square
from .masks import MaskCache, pack, superpixel_masks
from .paths import home_expanded
from .sa1b import list_sa1b, read_sa1b_masks
from .sam import SamMaskGenerator
from .sampler import StepSampler, check_global_batch  # noqa: F401  (importable from here)

log = logging.getLogger("loftup.data")

MASK_SOURCES = ("sa1b", "sam", "superpixels")


def _check_counts(**counts) -> None:
    """A UsageError naming the first of MaskedImages' counts that is not a whole number in its
    range: before, ``size=0`` was every image "unreadable", ``max_images=0`` said the images
    had no JSON beside them, and -1 (of max_images, max_masks) dropped the last one silently."""
    least = {"size": 1, "max_masks": 1, "max_images": 1, "max_retries": 0}
    for name, value in counts.items():
        if name == "max_images" and value is None:
            continue
        whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)  # np ints too
        if not whole or value < least[name]:
            also = " or None (all)" if name == "max_images" else ""
            raise UsageError(
                f"MaskedImages: {name} must be a whole number >= {least[name]}{also}, got {value!r}"
            )


def training_listing(root, masks: str, progress: bool = False):
    """What training reads under ``root`` with the mask source ``masks``: (images, their SA-1B
    JSON (None for another source), the number of images without JSON). SA-1B's pairs, or the
    images (those a run drew in its ``viz/`` left out); ``progress``: a bar counting them."""
    if masks == "sa1b":
        pairs, orphans = list_sa1b(root, progress=progress)
        return [p[0] for p in pairs], [p[1] for p in pairs], orphans
    listed = list_images(root, progress=progress)
    return [p for p in listed if not drawn_by_a_run(p)], None, 0


class MaskedImages(torch.utils.data.Dataset):
    """Square images and their masks from an SA-1B folder or a plain image folder.

    Arguments:
      root: the folder (searched recursively).
      size: side S of the square each image is centre-cropped and resized to.
      masks: ``sa1b`` (the JSON next to each image), ``sam`` or ``superpixels`` (computed once
        and cached under ``cache_dir``).
      max_masks: at most this many masks per image (the first ones in order).
      max_images: use only the first N images (sorted by path).
      superpixels: SLIC granularities (segments per level) for ``masks=superpixels``.
      sam_weights: SAM checkpoint (hub id or folder) for ``masks=sam``.
      cache_dir: where computed masks are cached (default ``~/.cache/loftup/masks``).
      max_retries: how many following items to try when one cannot be read.
      max_image_pixels: read images of up to this many pixels (0: any size; None: Pillow's
        limit of about 179 million, a guard against decompression bombs), in whichever
        process reads them (a DataLoader worker too); the process's own limit is left as is.
      progress: a bar while the images are listed (minutes for SA-1B's 11 million).
    """

    #: whether the masks are read (SA-1B) or made (SAM, superpixels) and cached: False for a
    #: subclass whose items hold none (K = 0), which then needs neither SAM's weights nor a
    #: mask cache
    makes_masks = True

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        size: int,
        masks: str = "sa1b",
        max_masks: int = 150,
        max_images: int | None = None,
        superpixels=(16, 64),
        sam_weights: str | None = None,
        sam_device=None,
        cache_dir: str | os.PathLike | None = None,
        max_retries: int = 32,
        max_image_pixels: int | None = None,
        progress: bool = False,
    ) -> None:
        if masks not in MASK_SOURCES:
            raise LoftUpError(f"unknown mask source {quoted(masks)}; choose one of {MASK_SOURCES}")
        _check_counts(
            size=size, max_masks=max_masks, max_images=max_images, max_retries=max_retries
        )
        root = data_folder(root)
        self.root, self.size, self.source, self.max_masks = root, size, masks, max_masks
        self.max_retries, self.max_image_pixels = max_retries, max_image_pixels
        self.orphans = 0
        self.images, self.annotations, self.orphans = training_listing(root, masks, progress)
        if max_images is not None:
            self.images = self.images[:max_images]
        if not self.images:
            hint = "sa_N.jpg images with their sa_N.json" if masks == "sa1b" else "image files"
            why = f"no {hint} found under {root}"
            plain = 0
            if masks == "sa1b":
                with warnings.catch_warnings():  # list_sa1b said its pipes and folders once
                    warnings.simplefilter("ignore")
                    plain = len(list_images(root))
            if plain:
                why += (
                    f"; it holds {plain} images without an SA-1B JSON beside them: to train on "
                    "them, make their masks with --masks superpixels (data.masks=superpixels) "
                    "or --masks sam"
                )
            why += _archives_hint(root)
            raise LoftUpError(why)
        self.cache = None
        self._sam = None
        if masks != "sa1b" and self.makes_masks:
            # reader 2: images upright (EXIF), 16-bit and RGBA as loftup.io reads them; masks
            # cached by the first reader (sideways for EXIF-turned photos) are not served
            settings = {"source": masks, "size": size, "max_masks": max_masks, "reader": 2}
            if masks == "superpixels":
                settings["segments"] = [int(n) for n in superpixels]
                self.superpixels = tuple(settings["segments"])
            else:
                settings["sam"] = str(sam_weights)
                self._sam = SamMaskGenerator(sam_weights, device=sam_device)
            default = Path(os.environ.get("LOFTUP_CACHE") or "~/.cache/loftup") / "masks"  # "" too
            self.cache = MaskCache(home_expanded(cache_dir or default, "mask cache"), settings)
            self.cache.check_writable()
        self._reading = None  # see track_reads

    #: the parts of an item that :meth:`load` reads in turn (see :meth:`reading`)
    PARTS = ("image", "masks")

    def track_reads(self, readers: int) -> None:
        """Record, in memory shared with DataLoader workers (made before they start), which
        file each of ``readers`` is reading and since when: worker ``k`` in slot ``k``, the
        main process (any of its threads) in slot 0. Read with :meth:`reading`."""
        self._reading = multiprocessing.RawArray("d", [-1.0, 0.0] * readers)

    def reading(self, reader: int) -> tuple[str, float] | None:
        """What ``reader`` (see :meth:`track_reads`) is reading: (the file, in words; seconds
        since it began), or None between reads, or if reads are not tracked."""
        if self._reading is None:
            return None
        code, since = self._reading[2 * reader], self._reading[2 * reader + 1]
        if code < 0:
            return None
        i, part = divmod(int(code), len(self.PARTS))
        image = self.images[i]
        if self.PARTS[part] == "image":
            what = str(image)
        elif self.source == "sa1b":
            what = str(self.annotations[i])
        else:  # read from the cache, or computed (SAM on its device)
            what = f"the {self.source} masks of {image} (cached in {self.cache.root})"
        return what, time.monotonic() - since

    def _mark(self, i: int, part: str | None) -> None:
        """Record that this reader now reads ``part`` of item ``i`` (None: nothing)."""
        if self._reading is None:
            return
        worker = torch.utils.data.get_worker_info()
        k = 2 * (worker.id if worker is not None else 0)
        if part is None:
            self._reading[k] = -1.0
            return
        self._reading[k + 1] = time.monotonic()  # the start first: a reader sees it whole
        self._reading[k] = i * len(self.PARTS) + self.PARTS.index(part)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> tuple[torch.Tensor, np.ndarray]:
        """Item ``i``: image uint8 (3, S, S) and packed masks (K, S, ceil(S / 8)); may raise READ_ERRORS."""
        try:
            return self._load(i)
        finally:
            self._mark(i, None)

    def _load(self, i: int) -> tuple[torch.Tensor, np.ndarray]:
        path = self.images[i]
        limit = self.max_image_pixels
        self._mark(i, "image")
        with nullcontext() if limit is None else max_image_pixels(limit or None):
            image, crop = load_square(path, self.size)
        if not self.makes_masks:  # items of the image alone (K = 0): nothing read or made
            return image, pack(np.zeros((0, self.size, self.size), dtype=bool))
        self._mark(i, "masks")
        if self.source == "sa1b":
            masks = read_sa1b_masks(self.annotations[i], crop, self.max_masks)
            return image, pack(masks)
        cached = self.cache.get(path)
        if cached is not None and cached[1] == self.size:
            return image, cached[0]
        hwc = image.permute(1, 2, 0).numpy()
        masks = superpixel_masks(hwc, self.superpixels) if self._sam is None else self._sam(hwc)
        packed = pack(masks[: self.max_masks])
        try:
            self.cache.put(path, packed, self.size)
        except OSError as e:  # a full disk: the masks are still good (not an unreadable image)
            log.warning("could not cache the masks of %s in %s (%s); they are computed again "
                        "next time", path, self.cache.root, e.strerror or e)  # fmt: skip
        return image, packed

    def __getitem__(self, i: int) -> dict:
        skipped, errors = [], []
        tries = min(self.max_retries + 1, len(self))  # each file once, however few there are
        for attempt in range(tries):
            j = (i + attempt) % len(self)
            try:
                image, packed = self.load(j)
            except READ_ERRORS as e:
                skipped.append(str(self.images[j]))
                errors.append(e)
                log.warning("skipping unreadable %s (%s: %s)", self.images[j], type(e).__name__, e)
                continue
            return {
                "image": image,
                "masks": torch.from_numpy(packed),
                "index": j,
                "skipped": skipped,
            }
        what = (
            f"none of the {tries} files under {self.root} could be read"
            if tries == len(self)
            else f"{tries} files in a row could not be read near item {i} of {self.root}"
        )
        if all(isinstance(e, PathPermissionError) for e in errors):  # not a wrong folder
            raise LoftUpError(f"{what}: this user may not read them (first: {errors[0]})")
        raise LoftUpError(f"{what} (see the warnings above); is the folder the right one?")


def collate(samples: list[dict]) -> dict:
    """Stack images (B, 3, S, S); pad packed masks with empty ones to (B, K_max, S, S/8)."""
    k = max(1, max(s["masks"].shape[0] for s in samples))
    first = samples[0]["masks"]
    masks = torch.zeros(len(samples), k, *first.shape[1:], dtype=torch.uint8)
    for b, s in enumerate(samples):
        masks[b, : s["masks"].shape[0]] = s["masks"]
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "masks": masks,
        "n_masks": torch.tensor([s["masks"].shape[0] for s in samples]),
        "index": torch.tensor([s["index"] for s in samples]),
        "skipped": [p for s in samples for p in s["skipped"]],
    }


def unpack_masks(packed: torch.Tensor, width: int) -> torch.Tensor:
    """Packed masks (..., H, ceil(W / 8)) uint8 -> bool (..., H, W) (numpy's big-endian bit order)."""
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.flatten(-2)[..., :width].bool()
