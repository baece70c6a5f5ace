"""What every dataset reader shares: the FeatUp image protocol, label tables, clear errors.

The protocol for segmentation and depth (FeatUp, and LoftUp's evaluation after it): resize the
shorter side to ``size`` (bilinear for images, nearest for labels and depth), then crop the
centre ``size`` x ``size`` square. Images come out as float (3, S, S) in [0, 1].
"""

from __future__ import annotations

import os
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import torch

from ...data.paths import home_expanded  # noqa: F401  (the readers' roots, from here)
from ...errors import LoftUpError, PathPermissionError, one_line
from ...io import IMAGE_READ_ERRORS
from ...listing import cannot_read
from ...paths import there
from ...read_refusal import read_refused

IGNORE = 255


class DatasetError(LoftUpError, FileNotFoundError):
    """A dataset is missing or not in the expected on-disk layout."""


def require(path: Path, what: str, hint: str) -> Path:
    """``path`` if it exists, else DatasetError naming what is missing and where it goes (a
    PathPermissionError where a folder this user may not search hides it)."""
    if not there(path, what):
        raise DatasetError(f"{what} not found: {path} does not exist. {hint}")
    return path


def read_lines(path: Path, what: str, hint: str) -> list[str]:
    """Non-empty stripped lines of a split list; a DatasetError naming both lines where one
    is listed twice (its scores were counted twice in the means, or, per sequence of DAVIS,
    written over by the second; the released lists hold none). Read as UTF-8 whatever the
    locale, a byte-order mark (a list saved by Windows' Notepad) left out: it was read as part
    of the first name, whose files were then "missing"."""
    try:
        text = require(path, what, hint).read_text(encoding="utf-8-sig")
    except PermissionError as e:  # a bare PermissionError, in Python; the file's fix now
        raise read_refused(path, e, what) or e from None
    except UnicodeDecodeError as e:
        why = f"{e.reason} at byte {e.start}"
        raise DatasetError(f"{path} is not a text {what} ({why}); {FIX}") from None
    first: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if name and first.setdefault(name, number) != number:
            raise DatasetError(
                f"{path}: line {number} lists {name} again (first on line {first[name]}); a "
                f"{what} names each item once: delete line {number}"
            )
    return list(first)


def listed(folder: Path, pattern: str) -> list[Path]:
    """The files of ``folder`` matching ``pattern`` (a glob of ``/``-separated names, no
    ``**``: Cityscapes' ``*/*_leftImg8bit.png``), sorted, without hidden ones: a name starting
    with ``.`` (the file's, or a folder's between) is no dataset item (macOS writes ``._NAME``
    beside each file it copies to an exFAT disk or a share, which ``*`` matches in pathlib,
    unlike a shell). A PathPermissionError where ``folder``, or a folder between that the
    pattern matches (a city), cannot be read (another user's, of mode 700): pathlib's glob
    passed over it without a word, a sequence with "no frames", a city's images left out of
    the score. ``folder`` a file: no files (its reader says what is missing)."""
    found = [folder]
    *between, last = pattern.split("/")
    for part in between:
        found = [p / n for p in found for n in _names(p, part, folders=True)]
    return sorted(p / n for p in found for n in _names(p, last))


def _names(folder: Path, pattern: str, folders: bool = False) -> list[str]:
    """The names in ``folder`` matching the glob ``pattern``, hidden ones left out (``folders``:
    those of folders only, links followed); none where ``folder`` is no folder (a file, gone);
    a PathPermissionError naming a folder that cannot be read, or a link to one this user may
    not look at, and the fix."""
    try:
        with os.scandir(folder) as listing:
            entries = [e for e in listing if not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except PermissionError as e:  # behind a folder not searchable: that one's fix
        fix = "have it made readable for this user (chmod a+rx, by its owner)"
        raise PathPermissionError(f"{folder} is {cannot_read(folder, e, fix)}") from None
    matching = [e for e in entries if fnmatchcase(e.name, pattern)]
    return sorted(e.name for e in matching if not folders or _a_folder(e))


def _a_folder(entry: os.DirEntry) -> bool:
    """Whether the listed ``entry`` is a folder (links followed); a link into a folder this
    user may not search counts as one, whose listing then says so (pathlib's glob passed
    over it)."""
    try:
        return entry.is_dir()
    except PermissionError:
        return True
    except OSError:
        return False


def limited(items: list, limit: int | None) -> list:
    """The first ``limit`` items (all when None)."""
    return items if limit is None else items[: max(0, int(limit))]


def _pil():
    from PIL import Image

    return Image


#: What a damaged dataset file is told to be, after its name.
FIX = "replace it (re-download or re-extract the dataset): a score must cover the whole split"


def unreadable(path, e: BaseException) -> LoftUpError:
    """The DatasetError for a file PIL cannot read: its name, why, and the fix (one line); a
    PathPermissionError for one this user may not read (its folder may be listed, not
    searched, or the file is another user's of mode 600): that fix, not a new copy's."""
    if isinstance(e, DatasetError):
        return e
    refused = read_refused(path, e)
    if refused is not None:
        return refused
    Image = _pil()
    if isinstance(e, Image.UnidentifiedImageError):
        why = "not an image file (PIL cannot identify it)"
    else:
        why = one_line(e, None)
    return DatasetError(f"cannot read {path}: {why}; {FIX}")


#: What reading a damaged image raises (see loftup.io).
READ_ERRORS = IMAGE_READ_ERRORS


def open_image(path: Path):
    """A PIL image opened lazily (its header read), or a DatasetError naming ``path``."""
    try:
        return _pil().open(path)
    except READ_ERRORS as e:
        raise unreadable(path, e) from None


def open_rgb(path: Path):
    """A PIL RGB image as stored, without EXIF rotation; a DatasetError naming the file when
    it cannot be read.

    Unlike :func:`loftup.io.load_image`, the EXIF orientation is deliberately not applied:
    the datasets' label maps are aligned with the stored pixels (as in every reference
    loader), and a rotated image would no longer match its labels.
    """
    try:
        return _pil().open(path).convert("RGB")
    except READ_ERRORS as e:
        raise unreadable(path, e) from None


def to_image_tensor(img) -> torch.Tensor:
    """PIL RGB -> float (3, H, W) in [0, 1] (:func:`loftup.image_input.to_tensor`)."""
    from ...image_input import to_tensor

    return to_tensor(img)


LABEL_MODES = ("L", "P", "I", "I;16")


def check_label_mode(path: Path, img) -> None:
    """DatasetError unless ``img`` (opened from ``path``) is a single-channel label image."""
    if img.mode not in LABEL_MODES:
        raise DatasetError(
            f"{path}: expected a single-channel label PNG (mode L, P or I), got mode {img.mode}; "
            f"{FIX}"
        )


def check_same_size(image_path, image_size, label_path, label_size) -> None:
    """DatasetError naming both files unless the label map ``label_size`` (W, H) is its
    image's ``image_size``."""
    if tuple(image_size) != tuple(label_size):
        iw, ih = image_size
        lw, lh = label_size
        raise DatasetError(
            f"{label_path} is {lw}x{lh} pixels but its image {image_path} is {iw}x{ih}: a label "
            f"map must have its image's size; {FIX}"
        )


def open_label(path: Path) -> np.ndarray:
    """An integer label PNG as an (H, W) array of its raw values (palette indices for P mode);
    a DatasetError naming the file when it cannot be read or is not a label image."""
    img = open_image(path)
    check_label_mode(path, img)
    try:
        return np.array(img)
    except READ_ERRORS as e:
        raise unreadable(path, e) from None


def resize_short_crop(img, size: int, *, nearest: bool):
    """PIL image: shorter side to ``size`` (bilinear or nearest), then the centre square."""
    Image = _pil()
    w, h = img.size
    if w <= h:
        nw, nh = size, max(size, int(size * h / w))
    else:
        nw, nh = max(size, int(size * w / h)), size
    img = img.resize((nw, nh), Image.NEAREST if nearest else Image.BILINEAR)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def resize_square(img, size: int, *, nearest: bool, bicubic: bool = False):
    """PIL image resized to ``size`` x ``size`` (aspect ratio not kept; the DAVIS protocol)."""
    Image = _pil()
    mode = Image.NEAREST if nearest else (Image.BICUBIC if bicubic else Image.BILINEAR)
    return img.resize((size, size), mode)
