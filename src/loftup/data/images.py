"""Image files: listing, and loading as a centred square of a given side (masks follow the same crop)."""

from __future__ import annotations

import gc
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import islice
from operator import itemgetter
from pathlib import Path

import numpy as np
import torch

from ..bars import bar_settings
from ..errors import BrokenFileError
from ..escaping import printable
from ..exif import transpose
from ..io import IMAGE_READ_ERRORS, IMAGE_SUFFIXES, ImageTooLargeError
from ..listing import cannot_read, entry_is, passed_over, path_key, unsearched, walk

#: The files a training folder's images are: those ``loftup upsample`` reads (a folder of
#: .ppm, .pgm or .gif images was "no image files found" to training).
IMAGE_EXTENSIONS = IMAGE_SUFFIXES

#: What a broken image (loftup.io's list) or annotation file (json, pycocotools, numpy) raises.
READ_ERRORS = (*IMAGE_READ_ERRORS, KeyError, TypeError, IndexError)

#: How training reads an image above Pillow's limit (see MaskedImages' max_image_pixels).
TRAIN_FIX = "loftup train ... data.max_image_pixels=N (0: no limit)"


def list_images(
    root: str | os.PathLike, extensions=IMAGE_EXTENSIONS, *, progress: bool = False
) -> list[Path]:
    """Every image file under ``root`` (recursively, hidden folders skipped), sorted by path.

    Linked folders are followed (shards on other disks linked into one folder); a folder
    reached twice (a link back up, or one linked twice) is read the first time only.
    ``progress``: a bar counting the images found (SA-1B's 11 million take minutes).
    """
    since, found = time.monotonic(), []
    with collections_paused():
        for folder, names, _ in image_folders(root, extensions, progress=progress):
            found += [(key, folder, name) for key, name in names]
        return paths_in_order(found, _path, progress=progress, since=since, desc="listing images")


def _path(row: tuple) -> Path:
    """The path of a row ``(key, folder, name)`` of :func:`list_images`."""
    return row[1] / row[2]


#: Seconds a listing runs before its bar shows (a folder of photos lists in a blink: no bar
#: drawn and cleared before each run's first line, nor left in its log).
LISTING_BAR_DELAY = 2.0

#: How many entries of a folder are read between two updates of the listing's bar: SA-1B's
#: tars are extracted into one folder of millions, whose bar updated once the whole folder
#: was read showed nothing for minutes, then was drawn once and cleared.
BAR_EVERY = 10_000


@contextmanager
def collections_paused():
    """Python's cyclic garbage collector paused while a listing makes its objects (paths,
    names, keys: millions of them, none in a cycle, each freed as ever when no longer used):
    each collection went through all those made so far again, half of the time of listing
    100k SA-1B pairs (2.4 s of 4.4 to 5.9 s, on 2 busy cores). Left as it was found."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def paths_in_order(rows: list, make, *, progress: bool, since: float, desc: str) -> list:
    """``make(row)`` (its paths) for each row ``(key, folder, ...)`` of ``rows``, in the order
    of their keys (``rows`` is sorted), counted on a bar ``desc`` every :data:`BAR_EVERY` rows,
    shown once the listing, begun at ``since`` (time.monotonic), has taken
    :data:`LISTING_BAR_DELAY` seconds: after the folders were read, making the paths was most
    of a listing's time (2 s of 100k SA-1B pairs' 3), the listing's bar standing still."""
    from tqdm.auto import tqdm

    rows.sort(key=itemgetter(0))  # keys are the paths' parts: no two alike
    delay = max(0.0, LISTING_BAR_DELAY - (time.monotonic() - since))
    bar = tqdm(total=len(rows), desc=desc, unit=" paths", leave=False,
               delay=delay, **bar_settings(shown=progress))  # fmt: skip
    paths = []
    with bar:
        for start in range(0, len(rows), BAR_EVERY):
            chunk = rows[start : start + BAR_EVERY]
            paths += [make(row) for row in chunk]
            bar.update(len(chunk))
    return paths


def image_folders(root: str | os.PathLike, extensions=IMAGE_EXTENSIONS, *, progress=False):
    """(folder, [(key, name), ...] of its images sorted, the names of all its regular files
    (links to one too; no pipe, device or link to nothing)) for each folder under ``root``, as
    :func:`list_images` walks them (:func:`loftup.listing.walk`, depth first, each real folder
    once: top-down, folders in name order, as ``os.walk`` with ``followlinks``); ``key``
    sorts the images of all folders as their paths sort (part by part), without a path made
    or a file looked at for it. ``progress``: a bar counting the images found, once the
    listing has taken :data:`LISTING_BAR_DELAY` seconds, updated every :data:`BAR_EVERY`
    entries of a folder.

    What is left out is said, one warning each, not dropped in silence (training on less data
    than the folder holds, unsaid): a folder that cannot be read, and a pipe, device or link
    to nothing of an image's name (it was listed as an image)."""
    from tqdm.auto import tqdm

    root = Path(root)
    bar = tqdm(desc="listing images", unit=" images", leave=False,
               delay=LISTING_BAR_DELAY, **bar_settings(shown=progress))  # fmt: skip
    with bar:
        for dirpath, (images, files, odd) in walk(
            [os.fspath(root)], partial(_scan, extensions=extensions, bar=bar)
        ):
            folder = Path(dirpath)
            parts = path_key(folder.relative_to(root))  # + (name,): the image's key
            for name in sorted(odd):
                said = f"skipped {folder / name}: {passed_over(folder / name)}"
                warnings.warn(printable(said), stacklevel=2)  # a name's escape: shown
            yield folder, sorted((parts + (name,), name) for name in images), files


def _scan(dirpath: str, extensions, bar):
    """The entries of the folder ``dirpath``: (its folders' names (linked ones too), (its
    images' names (not hidden, regular files), the names of all its regular files (links to
    one too), the image names that are no regular file: pipes, devices, links to nothing)), the
    images counted on ``bar`` every :data:`BAR_EVERY` entries; None where it cannot be read
    (a warning naming it; the images it counted taken back off), or read but not searched
    (one stat of an entry: :func:`loftup.listing.unsearched`). Whether an entry is a
    folder, a file or a link is known from the listing itself (no file looked at), but for a
    link, which is followed."""
    dirs, images, files, odd = [], [], [], set()
    try:
        with os.scandir(dirpath) as entries:
            first = True
            while chunk := list(islice(entries, BAR_EVERY)):
                if first and (why := unsearched(dirpath, chunk[0].name)):  # readable only:
                    said = f"skipped {dirpath}: {why}; its images are left out"
                    warnings.warn(printable(said), stacklevel=4)
                    return None  # its images listed, to fail reading them
                first, counted = False, len(images)
                for entry in chunk:
                    name = entry.name
                    if entry_is(entry.is_dir):  # False where it fails, as os.walk counts it
                        dirs.append(name)
                        continue
                    regular = entry_is(entry.is_file)  # a pipe named sa_1.json hung training
                    if regular:
                        files.append(name)
                    if name.lower().endswith(extensions) and not name.startswith("."):
                        (images.append if regular else odd.add)(name)
                bar.update(len(images) - counted)
    except OSError as e:
        bar.update(-len(images))
        said = f"skipped {dirpath}: {cannot_read(dirpath, e)}; its images are left out"
        warnings.warn(printable(said), stacklevel=4)
        return None
    return dirs, (images, files, odd)


@dataclass(frozen=True)
class SquareCrop:
    """The centred square ``box`` (left, top, right, bottom) of an image, resized to ``size``;
    ``image``: that image's (width, height), where known."""

    box: tuple[int, int, int, int]
    size: int
    image: tuple[int, int] | None = None
    orientation: int = 1

    @classmethod
    def centred(cls, width: int, height: int, size: int, orientation: int = 1) -> SquareCrop:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return cls((left, top, left + side, top + side), size, (width, height), orientation)


def load_square(path: str | os.PathLike, size: int) -> tuple[torch.Tensor, SquareCrop]:
    """The image's centred square resized to ``size`` x ``size``: uint8 (3, size, size), and the crop.

    The image is read as :func:`loftup.io.load_image` reads it (as ``loftup upsample`` does):
    upright (EXIF orientation applied), grayscale, 16-bit, RGBA (over white) and CMYK as RGB;
    the crop keeps the EXIF orientation applied for the masks (:func:`crop_mask`; 1 where an
    unreadable EXIF block left the image as stored). A damaged file
    raises :class:`loftup.io.ImageReadError` (a ValueError, one of READ_ERRORS) naming it; one
    above Pillow's pixel limit says how training raises it (``data.max_image_pixels``).
    """
    from PIL import Image

    from ..io import _load_image

    try:  # a damaged EXIF block: turned by its Orientation where it reads (a warning names it)
        img, orientation = _load_image(path)
    except ImageTooLargeError as e:
        raise ImageTooLargeError.of(path, e.reason, TRAIN_FIX) from None
    crop = SquareCrop.centred(img.width, img.height, size, orientation)
    img = img.resize((size, size), Image.BICUBIC, box=crop.box)
    array = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), crop


def _same_picture(w: int, h: int, width: int, height: int) -> bool:
    """Whether a w x h mask has the aspect ratio of a width x height image (up to rounding)."""
    return abs(w * height - h * width) <= (w + h + width + height) / 2


def crop_mask(mask: np.ndarray, crop: SquareCrop) -> np.ndarray:
    """A full-image boolean mask (H0, W0) -> the crop's (size, size) mask (area-weighted, >= 50%).

    Masks are of the upright picture (EXIF orientation applied, as the image is read); ones of
    the stored pixels' shape instead (only a quarter turn tells them apart) are turned like the
    image. A mask made at another resolution of the image (images resized after their masks
    were made) is cropped to its own centred square, the same part of the picture; one of
    another aspect ratio is not the image's: a :class:`~loftup.errors.BrokenFileError` (a
    ValueError) names both sizes.

    Only the square is read, in the order the mask lies in memory (pycocotools decodes masks
    column by column): a copy of the whole mask into rows cost twice its decoding, about
    12 ms of an SA-1B mask's 23, and an image has up to 150 of them.
    """
    from PIL import Image

    h, w = mask.shape
    if crop.image is not None and (w, h) != crop.image:
        width, height = crop.image
        if crop.orientation in (5, 6, 7, 8) and not _same_picture(w, h, width, height):
            if _same_picture(h, w, width, height):  # the stored pixels' masks
                mask = np.asarray(transpose(Image.fromarray(mask), crop.orientation))
                h, w = mask.shape
        if not _same_picture(w, h, width, height):
            raise BrokenFileError(
                f"its masks are {w}x{h} px but the image is {width}x{height} px, another aspect "
                "ratio: they belong to another picture"
            )
        crop = SquareCrop.centred(w, h, crop.size)
    left, top, right, bottom = crop.box
    square = mask[top:bottom, left:right]
    across = square.strides[0] < square.strides[1]  # stored column by column: read it so
    pixels = np.multiply(square.T if across else square, 255, dtype=np.uint8)  # in that order
    small = np.asarray(Image.fromarray(pixels).resize((crop.size, crop.size), Image.BOX)) >= 128
    return np.ascontiguousarray(small.T) if across else small
