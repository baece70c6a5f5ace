"""How ``loftup eval davis --save-masks DIR`` writes its masks and puts them in place.

A run holds DIR's lock (:mod:`.mask_lock`) from the check before its work to its end: a
second run into DIR at the same time is refused up front. The run writes its masks into a hidden staging folder inside DIR
(:class:`MaskStaging`: the same file system, so its masks move in by renames); at the end,
after the scores are written, its sequence folders take the place of the earlier run's, under
a mark that says the masks are incomplete until the run's own mark replaces it. The staging
folder is renamed to :data:`.mask_mark.MOVING` first (a loftup from before that name
refuses DIR for it, instead of removing it with the earlier masks), and both marks to come are
written into it, so that each goes in place by a rename. DIR itself is never moved: it keeps
its inode, mode, group and mount, and a shell or process inside it stays there. A run that
fails or is interrupted leaves DIR's masks as they were and removes its staging folder; one
stopped again as it puts them back (a second Ctrl-C, a refusing disk) leaves DIR marked, and
the moving folder, for the next run. What a killed run (``kill -9``) left, the next run holding the lock puts right
(:mod:`.mask_sweep`): DIR then holds the earlier run's masks, or, killed after its mark was
written, the killed run's. Where the file system keeps no locks (NFS without a lock service),
the run says so and leaves that alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import FOLDER_MODE, replace_durably
from ..errors import LoftUpError, UsageError
from ..escaping import printable
from ..file_lock import NO_LOCKS
from ..stops import Scope
from ..stops import check as check_stop
from ..stops import done as stops_done
from .mask_folder import _real, _repair, check_masks_folder, foreign_entries
from .mask_lock import lock, unlock
from .mask_mark import (
    MARK,
    MARK_AFTER,
    MARK_BEFORE,
    MOVING,
    STAGING,
    earlier_sequences,
    in_group,
    moving_in,
    read_mark,
)
from .mask_signal import Held, ctrl_c_held
from .mask_sweep import put_back, restore_mark, sweep_staging, write_mark

if TYPE_CHECKING:
    import torch


def save_mask(ids: torch.Tensor, path: Path, palette, *, dir: Path | None = None) -> None:
    """Write the object ids ``ids`` (H, W) as an indexed PNG with ``palette`` (the DAVIS
    format); in ``dir`` (DIR), readable by DIR's group where DIR is, as its mark is."""
    from PIL import Image

    from .. import atomic

    img = Image.fromarray(ids.numpy().astype(np.uint8))
    if palette:
        img.putpalette(palette)  # 'L' -> 'P', indices kept

    atomic.atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))  # whole or not at all
    if dir is not None:  # (still in the staging folder)
        os.chmod(path, atomic.FILE_MODE | (dir.stat().st_mode & 0o040))
        in_group(path, dir)


def lock_folder(target: Path, folder: str) -> int | None:
    """An open descriptor holding ``target``'s lock (:func:`.mask_lock.lock`); None where the file system
    keeps no locks (said once, as a warning). UsageError where another run holds it."""
    try:
        return lock(target)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise UsageError(
                f"--save-masks {folder} is being written by another loftup eval davis run, or "
                "its masks read (each holds the folder's lock); wait for it to end, or give "
                "another folder"
            ) from None
        if e.errno not in NO_LOCKS:
            raise
        warnings.warn(
            printable(
                f"--save-masks {folder}: its file system keeps no locks (NFS without a lock "
                "service, say): a second run into it at the same time is not refused, and what "
                f"killed runs left is not put right: delete their {STAGING}* folders yourself "
                "while "
                f"no run writes there; a {MOVING}* one holds the earlier run's masks while the "
                "folder is marked incomplete: loftup.eval.mask_folder.complete_masks(DIR) then "
                "says how to put them back; once it is not, delete those too"
            ),
            stacklevel=2,
        )
        return None


class MaskStaging:
    """Where a run writes the masks of the sequences ``names`` (:meth:`save`, into
    :attr:`path`, a new staging folder inside ``folder``, which is made if missing) until
    :meth:`publish` moves them into ``folder``, or :meth:`discard` removes them. Takes
    ``folder``'s lock, removes the staging folders killed runs left, and checks ``folder``
    (:func:`check_masks_folder`; ``root``: the dataset's) holding it."""

    def __init__(self, folder: str, root: str | os.PathLike, names: list[str]) -> None:
        self.folder, self.target = folder, _real(folder)
        self.names = list(dict.fromkeys(names))
        self.made = [p for p in (self.target, *self.target.parents) if not p.exists()]
        self.path: Path | None = None
        self.error: OSError | None = None  # the first write that failed
        self._lock = None
        try:
            self.target.mkdir(parents=True, exist_ok=True)
            self._lock = lock_folder(self.target, folder)
            if self._lock is not None:
                sweep_staging(self.target, folder)
                check_stop()  # one a finaliser in the sweep swallowed: loftup.stops
            check_masks_folder(folder, root)  # as it is now, no other run writing there
            self.path = self._mkdtemp(self.target, STAGING)
            for name in self.names:
                (self.path / name).mkdir()
                self._share(self.path / name)
        except BaseException as e:
            self.discard()
            if not isinstance(e, OSError):
                raise
            raise self._unwritable(e) from None

    def _unwritable(self, e: OSError) -> LoftUpError:
        where = f": {e.filename}" if e.filename else ""
        fix = "free space there or choose" if e.errno == errno.ENOSPC else "choose"
        return LoftUpError(
            f"--save-masks {self.folder} could not be written ({e.strerror or e}{where}); "
            f"{fix} another folder"
        )

    def _share(self, path: Path) -> None:
        """Give the folder ``path`` DIR's group and its group's bits (whatever the umask): in
        a group-shared DIR, another member's scorer can then read it, and where DIR is
        group-writable their run move it, or remove it once stale."""
        in_group(path, self.target)
        shared = self.target.stat().st_mode & 0o070
        if shared:
            os.chmod(path, (path.stat().st_mode & 0o7777) | shared)

    def _mkdtemp(self, parent: Path, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))  # 0o700
        os.chmod(path, (path.stat().st_mode & 0o7000) | FOLDER_MODE)
        self._share(path)
        return path

    def save(self, ids: torch.Tensor, name: str, frame: str, palette) -> None:
        """Stage the mask ``ids`` (H, W) of frame ``frame`` of sequence ``name``. A write
        that fails (a full disk) is kept for :meth:`publish` to report, after the scores;
        the staged masks are then removed, and no more are written."""
        if self.error is not None:
            return
        try:
            save_mask(ids, self.path / name / f"{frame}.png", palette, dir=self.target)
        except OSError as e:
            self.error = e
            shutil.rmtree(self.path, ignore_errors=True)  # the space back, for the scores

    def discard(self) -> None:
        """Remove the staging folder (and the folders made for it): DIR stays as it was."""
        try:  # (a Ctrl-C during the rmtree: the lock released all the same)
            if self.path is not None:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self._unlock()
        for made in self.made:  # the deepest first; one not empty is another's
            with contextlib.suppress(OSError):
                os.rmdir(made)

    def _unlock(self) -> None:
        unlock(self._lock, self.target)
        self._lock = None

    def publish(self, results: dict) -> None:
        """Put the staged sequence folders in ``folder``, in place of those of the run whose
        masks it held, and mark them as this run's. LoftUpError, carrying the scores
        (``results``), when a mask could not be staged, when files no run wrote appeared in
        ``folder`` during the run, or when the disk refused; ``folder`` then holds its masks
        as before, as it does after an interruption."""
        from .report import summary

        if self.error is not None:
            self.discard()
            raise LoftUpError(f"{self._unwritable(self.error)}; its masks were kept as they "
                              f"were; the scores: {summary(results)}")  # fmt: skip
        check_stop()  # one a finaliser swallowed: the folder as it was (loftup.stops)
        came = Held()
        with Scope():  # the work stops_done() says is done: the move's alone (loftup.stops)
            try:
                with ctrl_c_held() as came:  # it stops the swap between two of its steps only
                    found = foreign_entries(self.target)
                    problem = f"now holds files no loftup eval davis run wrote ({found[0]})" if found else ""  # fmt: skip
                    if not found:
                        self._swap(earlier_sequences(self.target) or [], self.names, came)
                        came.done = True  # the masks are in place: the run's work is done
                        stops_done()  # (one a finaliser swallows in this scope forgotten too)
            except OSError as e:
                problem = f"could not be written ({e.strerror or e})"
            except BaseException:  # interrupted: the folder as it was, the staging folder removed
                self._end()
                raise
            if came.done:  # (not held: a Ctrl-C stops it, and the next run removes what is left)
                self.discard()  # the earlier run's masks with it
                return
        locks, scores = self._lock is not None, f"the scores: {summary(results)}"
        if self._incomplete():  # the disk refused the earlier masks' way back too
            raise LoftUpError(f"--save-masks {self.folder} {problem}{self._left()}; {scores}")
        self._unlock()  # what the message names stays
        kept = "; its masks were kept" if problem.startswith("could not") else ""
        swept = "the next run into the folder removes it" if locks else "then delete it"
        left, self.path = self.path, None  # (a discard after this keeps it)
        raise LoftUpError(
            f"--save-masks {self.folder} {problem}{kept}; this run's masks were left in "
            f"{left} (move them out: {swept}); {scores}"
        )

    def _incomplete(self) -> bool:
        """Whether the mark still says incomplete (or cannot be read: then as if it did)."""
        try:
            return moving_in(self.target) is not None
        except Exception:
            return True

    def _left(self) -> str:
        """DIR left marked as incomplete: said, the moving folder kept (unlocked)."""
        locks = self._lock is not None
        self._unlock()
        fix = "the next run into it puts them back" if locks else _repair(self.target)
        left, self.path = self.path, None  # (a discard after this keeps it)
        return (
            f" as this run's masks moved in, and is left marked as incomplete, the earlier "
            f"run's masks in {left}/.replaced-*: move nothing out of either; {fix}"
        )

    def _end(self) -> None:
        """After an interruption: the staging folder removed, unless the mark still says the
        masks are incomplete (an interruption, or a refusing disk, while they were put back):
        then it holds the earlier run's, and stays for the next run to put them back."""
        if self._incomplete():
            said = f"--save-masks {self.folder} was interrupted{self._left()}"
            warnings.warn(printable(said), stacklevel=3)
        else:
            self.discard()

    def _swap(self, old: list[str], new: list[str], came: list) -> None:
        """Move the folders ``old`` out of the target (into the staging folder) and ``new``
        in; put them back as they were on any failure or interruption. The staging folder is
        renamed to :data:`MOVING` first, and the mark says the masks are incomplete from
        before the first move to after the last: a run killed in between leaves that said,
        for readers to refuse and the next run to undo (:mod:`.mask_sweep`). ``came``: a Ctrl-C held meanwhile
        (:func:`.mask_signal.ctrl_c_held`); it stops the swap before its next step, up to the
        rename of the run's own mark (the masks in place)."""

        def step(replace, src, dst):
            if came:
                came.deliver()
            replace(src, dst)

        replaced = self._mkdtemp(self.path, ".replaced-")
        old = [n for n in old if (self.target / n).is_dir()]
        before = read_mark(self.target)
        write_mark(self.target, new, to=self.path / MARK_AFTER)
        restore_mark(self.target, before, to=self.path / MARK_BEFORE)
        moving = self.target / (MOVING + self.path.name[len(STAGING) :])
        step(os.replace, self.path, moving)
        self.path = moving  # (held: a Ctrl-C between the two left the moving folder)
        journal = {"staging": moving.name, "replaced": replaced.name, "moving_out": old,
                   "moving_in": new, "before": before}  # fmt: skip
        try:
            write_mark(self.target, sorted({*old, *new}), journal)
            for src, dst in [(self.target / n, moving / replaced.name / n) for n in old] + [
                (moving / n, self.target / n) for n in new
            ]:
                step(os.replace, src, dst)
            step(replace_durably, moving / MARK_AFTER, self.target / MARK)  # they are this run's
        except BaseException:
            with contextlib.suppress(OSError):  # then left marked as incomplete, for the next run
                put_back(self.target, journal)
            raise
