"""``loftup eval davis --save-masks DIR``: the folder the predicted masks go to, in the DAVIS
result format (DIR/<sequence>/<frame>.png).

Checked before any work (:func:`check_masks_folder`): not inside the dataset's ``--root``
(the masks would overwrite its annotations), and new, empty, or one an earlier ``loftup eval
davis`` run wrote (it holds the mark file :data:`MARK` and mask folders only). The masks are
written into a hidden folder beside DIR (:func:`staging_folder`) and take DIR's place at the
end of the run (:func:`publish_masks`), so DIR never mixes the masks of two runs and a run
that fails leaves it as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import FOLDER_MODE
from ..errors import LoftUpError, UsageError
from ..paths import check_folder_output

if TYPE_CHECKING:
    import torch

    from .datasets import DavisSequence

#: The file that marks a folder as written by ``loftup eval davis --save-masks``.
MARK = ".loftup-eval-davis-masks"


def _real(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def check_mask_names(sequences: list[DavisSequence], folder: str) -> None:
    """UsageError when two of the masks ``--save-masks`` writes (FOLDER/<sequence>/<frame>.png)
    have paths that differ only in case: on a case-insensitive disk (macOS's and Windows' by
    default) the second would overwrite the first, and the folder would hold one of them."""

    def first_twin(names):
        seen = {}
        for name in names:
            if seen.get(name.casefold(), name) != name:  # (a name listed twice: the same file)
                return seen[name.casefold()], name
            seen[name.casefold()] = name
        return None

    twins = first_twin([seq.name for seq in sequences])
    where = "sequences"
    for seq in sequences if twins is None else ():
        twins, where = first_twin([f.stem for f in seq.frames]), f"frames of sequence {seq.name}"
        if twins is not None:
            break
    if twins is not None:
        raise UsageError(
            f"--save-masks {folder}: the {where} {twins[0]!r} and {twins[1]!r} differ only in "
            "case, and their masks would overwrite each other on a case-insensitive disk "
            "(macOS, Windows); rename one, or leave out --save-masks"
        )


def save_mask(ids: torch.Tensor, path: Path, palette) -> None:
    """Write the object ids ``ids`` (H, W) as an indexed PNG with ``palette`` (the DAVIS format)."""
    from PIL import Image

    from ..atomic import atomic_write

    img = Image.fromarray(ids.numpy().astype(np.uint8))
    if palette:
        img.putpalette(palette)  # 'L' -> 'P', indices kept
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))  # whole or not at all


def foreign_entries(folder: Path) -> list[Path]:
    """What ``folder`` holds that an earlier run did not write (everything, without the
    mark; else what is neither the mark nor a folder of PNGs)."""
    if not folder.is_dir():
        return []
    entries = sorted(folder.iterdir())
    if not (folder / MARK).is_file():
        return entries
    out = []
    for entry in entries:
        if entry.name == MARK:
            continue
        if entry.is_symlink() or not entry.is_dir():
            out.append(entry)
            continue
        out += [p for p in sorted(entry.iterdir()) if p.suffix != ".png" or not p.is_file()]
    return out


def check_masks_folder(folder: str, root: str | os.PathLike) -> None:
    """UsageError, before any work, unless ``folder`` (``--save-masks``) can take a run's
    masks: writable, outside the dataset's ``root``, and new, empty or an earlier run's."""
    check_folder_output(folder, "--save-masks")
    target, data = _real(folder), _real(root)
    if target == data or data in target.parents:
        raise UsageError(
            f"--save-masks {folder} is inside the dataset's --root {root}: the masks would "
            "overwrite its annotations (Annotations/480p/<sequence>/<frame>.png) or mix with "
            "its files; give a folder outside it, e.g. --save-masks runs/davis_masks"
        )
    found = foreign_entries(target)
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise UsageError(
            f"--save-masks {folder} holds files that no loftup eval davis run wrote ({found[0]}"
            f"{more}); the run replaces the folder with its masks, so give a new or empty "
            "folder, or move those files out"
        )


def staging_folder(folder: str) -> Path:
    """A new hidden folder beside ``folder`` (made, with ``folder``'s parents) that the run
    writes its masks into; :func:`publish_masks` moves it into place."""
    target = _real(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    return _hidden_beside(target, ".partial")


def _hidden_beside(target: Path, suffix: str) -> Path:
    """A new hidden folder beside ``target``, named after it (cut to what the file system
    takes), with the mode of a new folder, not mkdtemp's private one."""
    name = os.fsdecode(os.fsencode(target.name)[:200])
    made = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}.", suffix=suffix))
    os.chmod(made, FOLDER_MODE)
    return made


def discard(staging: Path) -> None:
    """Remove a run's staging folder (the run failed: ``--save-masks`` stays as it was)."""
    shutil.rmtree(staging, ignore_errors=True)


def publish_masks(staging: Path, folder: str, results: dict) -> None:
    """Mark ``staging`` as a run's masks and put it in ``folder``'s place, replacing an
    earlier run's masks there whole. LoftUpError, naming where the masks are and carrying
    the scores (``results``), when that cannot be done (files not of a run appeared in
    ``folder`` during the run, or the disk refused)."""
    from .report import summary

    target = _real(folder)
    old = None
    try:
        (staging / MARK).write_text("masks of a loftup eval davis run (DAVIS result format)\n")
        if target.exists():
            found = foreign_entries(target)
            if found:
                raise LoftUpError(
                    f"--save-masks {folder} now holds files no loftup eval davis run wrote "
                    f"({found[0]}); the masks were left in {staging}; the scores: "
                    f"{summary(results)}"
                )
            old = _hidden_beside(target, ".old")
            os.replace(target, old)  # an empty folder is replaced by a rename
        try:
            os.replace(staging, target)
        except OSError:
            if old is not None:
                os.replace(old, target)  # the earlier masks back in place
            raise
    except OSError as e:
        raise LoftUpError(
            f"--save-masks {folder} could not be written ({e.strerror or e}); the masks were "
            f"left in {staging}; the scores: {summary(results)}"
        ) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
