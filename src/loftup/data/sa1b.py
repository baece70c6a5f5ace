"""The SA-1B layout: ``sa_N.jpg`` next to ``sa_N.json`` whose annotations are COCO RLE masks.

Any folder tree works (an extracted tar shard, or many); an image without its JSON is not
listed. Masks are decoded with pycocotools and kept in the file's order, at most ``max_masks`` (those
that fall outside the centred square crop are left out).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..errors import BrokenFileError, UsageError, one_line
from ..read_refusal import read_refused
from .images import SquareCrop, collections_paused, crop_mask, image_folders, paths_in_order
from .rle import decode_rle

#: The largest masks read, as multiples of their image's pixels (masks made before the image
#: was resized to 1/8 of its side) and in pixels (decoding allocates the whole mask, and a
#: damaged size of [100000, 100000] is 10 GB); masks of the image's own size are always read.
MASK_AREA_RATIO = 64
MAX_MASK_PIXELS = 2**28


def list_sa1b(
    root: str | os.PathLike, *, progress: bool = False
) -> tuple[list[tuple[Path, Path]], int]:
    """(image, json) pairs under ``root`` sorted by path, and the number of images without JSON.

    An image's JSON is its name with ``.json`` (or ``.JSON``) for its suffix, or that name in
    another case (``.Json``, as a case-blind disk finds it), found among its folder's regular
    files (no file is looked at one by one: millions of them on a network disk took hours),
    but for a link, looked at: one that leads nowhere (its disk not mounted, its folder
    removed), or a pipe of that name, is no JSON, and its image one without. Two images of one name
    but the suffix (``sa_1.jpg`` beside ``sa_1.JPG`` or ``sa_1.jpeg``, which a disk that tells
    case apart holds) would share one JSON, the masks of at most one of them: a UsageError
    names both, before anything is read. ``progress``: a bar counting the images found."""
    with collections_paused():
        return _pairs(root, progress)


def _pairs(root, progress: bool) -> tuple[list[tuple[Path, Path]], int]:
    """:func:`list_sa1b`'s pairs and orphans."""
    since, found, orphans = time.monotonic(), [], 0
    for folder, images, files in image_folders(root, (".jpg", ".jpeg"), progress=progress):
        files, owner, folded = set(files), {}, None
        for key, image in images:
            ann = _annotation_name(image, files)
            if ann is None:  # only then the case-blind map, once a folder
                if folded is None:  # (less the JSONs an image of their exact name holds)
                    exact = {_annotation_name(other, files) for _, other in images}
                    folded = {k: v for k, v in _json_names_casefolded(files).items()
                              if v not in exact}  # fmt: skip
                ann = folded.get(_json_name(image).casefold())
            if ann is None:
                orphans += 1
                continue
            other = owner.setdefault(ann, image)
            if other != image:
                raise UsageError(
                    f"{other} and {image} in {folder} share one annotation file, {ann}, which "
                    "holds the masks of one picture; rename or delete the other image (with its "
                    "own masks, name its JSON as it is named)"
                )
            found.append((key, folder, image, ann))
    bar = {"progress": progress, "since": since, "desc": "pairing images with their JSON"}
    return paths_in_order(found, _pair, **bar), orphans


def _pair(row: tuple) -> tuple[Path, Path]:
    """The paths of a row ``(key, folder, image, json)`` of :func:`list_sa1b`."""
    _, folder, image, ann = row
    return folder / image, folder / ann


def _json_name(image: str) -> str:
    """``image``'s name with ``.json`` for its suffix (a .jpg or .jpeg)."""
    return f"{image[: image.rindex('.')]}.json"


def _annotation_name(image: str, files: set[str]) -> str | None:
    """The name of the SA-1B JSON of ``image`` among its folder's regular files (links to one
    too) ``files``: its suffix made ``.json``, or ``.JSON``; a link to nothing (paired, its
    image was skipped as unreadable once the backbone had loaded) or a pipe (training hung in
    its open()) is none, as is a name in another case (:func:`_json_names_casefolded`)."""
    name = _json_name(image)
    for ann in (name, f"{name[:-5]}.JSON"):
        if ann in files:  # regular files only: a pipe of that name hung training's open()
            return ann
    return None


def _json_names_casefolded(files: set[str]) -> dict[str, str]:
    """The ``.json`` names (in any case) of ``files`` by their casefolded name, the first in
    sorted order where several fold alike: an image's JSON named in another case (``.Json``,
    ``SA_1.json`` beside ``sa_1.jpg``), which a case-blind disk (macOS, Windows) opens by the
    image's name, found in memory, not on the disk (two stats an image without JSON)."""
    names = (n for n in sorted(files, reverse=True) if n[-5:].casefold() == ".json")
    return {name.casefold(): name for name in names}


def read_sa1b_masks(json_path: str | os.PathLike, crop: SquareCrop, max_masks: int) -> np.ndarray:
    """The first ``max_masks`` masks of an SA-1B JSON, cropped like the image: bool (K, S, S).

    Raises OSError (a missing file; a :class:`~loftup.errors.PathPermissionError` naming the
    fix for one this user may not read) or a one-line :class:`~loftup.errors.BrokenFileError` (a
    ValueError) naming the file and what is wrong with it (not JSON, no annotations, a mask that
    is not COCO RLE, has no plausible size for the image (checked before it is decoded), has runs
    that do not cover that size (:func:`~.rle.decode_rle`), does not decode or is of another
    picture's aspect ratio).
    """
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except PermissionError as e:  # a bare "[Errno 13] Permission denied: ...": the fix now
        raise read_refused(json_path, e, "SA-1B annotations") or e from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError; "[[[..."
        raise _broken(json_path, f"not JSON ({e})") from None
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list):
        raise _broken(json_path, "no 'annotations' list")
    masks = []
    for n, ann in enumerate(annotations[:max_masks]):
        rle = ann.get("segmentation") if isinstance(ann, dict) else None
        if not (isinstance(rle, dict) and "size" in rle and "counts" in rle):
            raise _broken(json_path, f"annotation {n} is not COCO RLE ({{size, counts}})")
        why = _implausible_size(rle["size"], crop.image)
        if why:
            raise _broken(json_path, f"annotation {n}{why}")
        try:
            mask = decode_rle(rle)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
            raise _broken(json_path, f"annotation {n} does not decode ({one_line(e)})") from None
        try:
            mask = crop_mask(mask, crop)
        except ValueError as e:  # crop_mask's BrokenFileError: masks of another picture
            fix = "pair each image with its own JSON, or delete both"
            raise _broken(json_path, str(e), fix) from None
        if mask.any():  # masks outside the centred square are of no use
            masks.append(mask)
    if not masks:
        return np.zeros((0, crop.size, crop.size), dtype=bool)
    return np.stack(masks)


def _implausible_size(size, image: tuple[int, int] | None) -> str | None:
    """What is wrong with an RLE's ``size`` [height, width] for an image of (width, height)
    pixels, before the mask is decoded (after " annotation N"), or None."""
    if not (
        isinstance(size, list) and len(size) == 2 and all(type(v) is int and v > 0 for v in size)
    ):  # type(): a bool is an int
        return f" has size {size!r}, not two positive integers [height, width]"
    area = size[0] * size[1]
    pixels = image[0] * image[1] if image else 0
    if area <= pixels or area <= min(MASK_AREA_RATIO * pixels, MAX_MASK_PIXELS):
        return None
    of = f"for its {image[0]}x{image[1]} px image" if image else "for an image"
    return (
        f" has a {size[1]}x{size[0]} px mask, implausibly large {of} (masks of a resized image "
        f"are read up to {MASK_AREA_RATIO} times its pixels and {MAX_MASK_PIXELS} px)"
    )


def _broken(json_path, why: str, fix: str = "") -> BrokenFileError:
    """The error of an annotation file: what is wrong (``why``) and the fix (by default: it is
    not SA-1B annotations, extract it again or delete it with its image)."""
    fix = fix or "not SA-1B annotations (extract the file again, or delete it with its image)"
    return BrokenFileError(f"{json_path}: {why}; {fix}")
