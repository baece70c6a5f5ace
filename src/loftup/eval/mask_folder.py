"""``loftup eval davis --save-masks DIR``: the folder the predicted masks go to, in the DAVIS
result format (DIR/<sequence>/<frame>.png).

Checked before any work (:func:`check_masks_folder`): not inside the dataset's ``--root``
(the masks would overwrite its annotations), and new, empty, or one an earlier ``loftup eval
davis`` run wrote: it holds the mark file :data:`MARK`, which lists that run's sequence
folders, and those folders of PNGs only. The run writes its masks into a hidden staging
folder inside DIR (:class:`MaskStaging`: the same file system, so its masks move in by
renames); at the end, after the scores are written, its sequence folders take the place of
the earlier run's and the mark is written last. DIR itself is never moved: it keeps its
inode, mode, group and mount, and a shell or process inside it stays there. A run that fails
or is interrupted before then leaves DIR's masks as they were and removes its staging
folder; one killed outright (``kill -9``) leaves it, and the next run into DIR removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import LoftUpError, UsageError
from ..paths import check_folder_output

if TYPE_CHECKING:
    import torch

    from .datasets import DavisSequence

#: The file that marks a folder as written by ``loftup eval davis --save-masks``.
MARK = ".loftup-eval-davis-masks"

#: The beginning of a run's staging folder's name (then mkdtemp's 8 characters).
STAGING = ".loftup-staging-"


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


def _is_staging(entry: Path) -> bool:
    return bool(re.fullmatch(rf"{re.escape(STAGING)}[a-z0-9_]{{8}}", entry.name)) and (
        entry.is_dir() and not entry.is_symlink()
    )


def earlier_sequences(folder: Path) -> list[str] | None:
    """The sequence folders of the run whose masks ``folder`` holds, as its mark lists them
    (None: no mark). A mark that lists none (the one line of text an earlier version wrote,
    or an empty file the user made) stands for every folder in ``folder``."""
    try:
        listed = json.loads((folder / MARK).read_text())["sequences"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):  # not this version's mark
        listed = [p.name for p in folder.iterdir() if p.is_dir() and not _is_staging(p)]
    if not isinstance(listed, list):
        return []
    # a plain name in ``folder`` only: a mark naming ../x must not reach outside it
    return [n for n in listed if isinstance(n, str) and n not in ("", ".", "..") and "/" not in n]


def foreign_entries(folder: Path) -> list[Path]:
    """What ``folder`` holds besides an earlier run's masks (its mark, the sequence folders
    the mark lists, holding PNG files only) and runs' staging folders."""
    if not folder.is_dir():
        return []
    listed = set(earlier_sequences(folder) or ())
    out = []
    for entry in sorted(folder.iterdir()):
        if entry.name != MARK and not _is_staging(entry):
            out += _not_masks(entry) if entry.name in listed else [entry]
    return out


def _not_masks(entry: Path) -> list[Path]:
    """What in the sequence folder ``entry`` is no mask: itself when no folder, else its
    entries that are no PNG files."""
    if entry.is_symlink() or not entry.is_dir():
        return [entry]
    return [p for p in sorted(entry.iterdir()) if p.suffix != ".png" or not p.is_file()]


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
    if found and earlier_sequences(target) is None and not any(map(_not_masks, found)):
        raise UsageError(
            f"--save-masks {folder} holds masks ({found[0]}) but no {MARK} file, the mark of "
            "an earlier run's masks that this run may replace (masks of a loftup from before "
            "the mark, or made otherwise): delete or move them, or, if this run may replace "
            f"them, mark them: touch {Path(folder) / MARK}"
        )
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise UsageError(
            f"--save-masks {folder} holds files that no loftup eval davis run wrote ({found[0]}"
            f"{more}); the run replaces an earlier run's masks there with its own, so give a "
            "new or empty folder, or move those files out"
        )


def check_outside_masks(folder: str, outputs: dict[str, str]) -> None:
    """UsageError when one of ``outputs`` (option: path; ``--json``, the figure,
    ``--cache-dir``) is ``folder`` (``--save-masks``) or inside it: DIR holds masks only, and
    a later run refused it for the file an earlier one wrote there."""
    target = _real(folder)
    for option, path in outputs.items():
        if _real(path) == target or target in _real(path).parents:
            fix = "--figure" if option == "the figure" else option
            raise UsageError(
                f"{option} {path} is inside --save-masks {folder}, which holds masks only (a "
                f"later run into it would refuse the file); give {fix} a path outside it"
            )


def _flock(path: Path, wait: bool) -> int | None:
    """An open descriptor of ``path`` holding its exclusive lock (``fcntl.flock``; the system
    releases it when the process ends, however it ends), or None where it is held elsewhere
    (``wait`` False) or the system keeps no locks."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def sweep_staging(folder: Path) -> None:
    """Remove the staging folders in ``folder`` that runs killed outright left: those no
    running run holds the lock of (a run running into ``folder`` keeps its own)."""
    for entry in list(folder.iterdir()) if folder.is_dir() else ():
        fd = _flock(entry, wait=False) if _is_staging(entry) else None
        if fd is not None:
            shutil.rmtree(entry, ignore_errors=True)
            _unlock(fd)


def _write_mark(target: Path, names: list[str]) -> None:
    text = json.dumps({"written_by": "loftup eval davis --save-masks", "sequences": names})
    atomic_write_bytes(target / MARK, (text + "\n").encode())


class MaskStaging:
    """Where a run writes its masks (:attr:`path`, a new staging folder inside ``folder``,
    which is made if missing) until :meth:`publish` moves them into ``folder``, or
    :meth:`discard` removes them. Staging folders that killed runs left are removed first."""

    def __init__(self, folder: str) -> None:
        self.folder, self.target = folder, _real(folder)
        self.made = [p for p in (self.target, *self.target.parents) if not p.exists()]
        try:
            self.target.mkdir(parents=True, exist_ok=True)
            sweep_staging(self.target)
            self.path = Path(tempfile.mkdtemp(dir=self.target, prefix=STAGING))
        except OSError as e:
            raise LoftUpError(
                f"--save-masks {folder} could not be written ({e.strerror or e}); choose "
                "another folder"
            ) from None
        self._lock = _flock(self.path, wait=False)  # another run's sweep leaves it

    def discard(self) -> None:
        """Remove the staging folder (and the folders made for it): DIR stays as it was."""
        shutil.rmtree(self.path, ignore_errors=True)
        _unlock(self._lock)
        self._lock = None
        for made in self.made:  # the deepest first; one not empty is another's
            with contextlib.suppress(OSError):
                os.rmdir(made)

    def publish(self, names: list[str], results: dict) -> None:
        """Put the sequence folders ``names`` in ``folder``, in place of those of the run
        whose masks it held, and mark them as this run's. LoftUpError, naming where the
        masks are and carrying the scores (``results``), when files no run wrote appeared in
        ``folder`` during the run or the disk refused; ``folder`` then holds its masks as
        before, as it does after an interruption (and the staging folder is removed)."""
        from .report import summary

        dir_lock = _flock(self.target, wait=True)  # two runs' publishing never interleaves
        try:
            found = foreign_entries(self.target)
            problem = (
                f"now holds files no loftup eval davis run wrote ({found[0]})" if found else ""
            )
            if not found:
                self._swap(earlier_sequences(self.target) or [], list(dict.fromkeys(names)))
        except OSError as e:
            problem = f"could not be written ({e.strerror or e}); its masks were kept"
        except BaseException:  # interrupted: the folder as it was, the staging folder removed
            self.discard()
            raise
        finally:
            _unlock(dir_lock)
        if not problem:
            self.discard()  # the earlier run's masks with it
            return
        _unlock(self._lock)  # what the message names stays until the next run
        self._lock = None
        raise LoftUpError(
            f"--save-masks {self.folder} {problem}; this run's masks were left in {self.path} "
            f"(move them out: the next run into the folder removes it); the scores: "
            f"{summary(results)}"
        )

    def _swap(self, old: list[str], new: list[str]) -> None:
        """Move the folders ``old`` out of the target (into the staging folder) and ``new``
        in; put them back as they were on any failure or interruption."""
        earlier = Path(tempfile.mkdtemp(dir=self.path, prefix=".earlier-"))
        old = [n for n in old if (self.target / n).is_dir()]
        _write_mark(self.target, sorted({*old, *new}))  # a kill below leaves all of them marked
        moved: list[tuple[Path, Path]] = []
        try:
            for src, dst in [(self.target / n, earlier / n) for n in old] + [
                (self.path / n, self.target / n) for n in new
            ]:
                os.replace(src, dst)
                moved.append((src, dst))
            _write_mark(self.target, new)
        except BaseException:
            for src, dst in reversed(moved):
                with contextlib.suppress(OSError):
                    os.replace(dst, src)
            with contextlib.suppress(OSError):
                _write_mark(self.target, old)
            raise
