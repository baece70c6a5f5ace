"""What a run of ``loftup eval davis --save-masks DIR`` holding DIR's lock does first: put right
what killed runs (``kill -9``, the OOM killer, a lost node) left in DIR.

A run killed while moving its masks in left DIR with some sequence folders of its own and some
of the run before, or lacking some, under a mark that says so (:func:`.mask_folder.moving_in`):
:func:`sweep_staging` moves its folders back into its staging folder and the earlier run's
back into DIR, and puts back the earlier mark; DIR then holds the earlier run's masks as they
were. A run killed after its own mark was written left DIR whole, with its masks: only its
staging folder (holding the replaced ones) is removed. Every other run's staging folder, and a
mark's temporary file, is removed too, but one this user may not remove: said, and left.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

from ..errors import LoftUpError
from .mask_folder import (
    MARK_TEMP,
    _is_staging,
    _plain,
    earlier_sequences,
    moving_in,
    owner_name,
    restore_mark,
)


def sweep_staging(target: Path, folder: str) -> None:
    """Put right what killed runs left in ``target`` (``folder``, ``--save-masks``; called
    holding its lock): undo a move-in that was cut short, remove the staging folders, first
    moving back the earlier masks a staging folder of an older loftup holds (``.earlier-*/``)
    that ``target`` lacks and its mark lists, and remove a mark's temporary file."""
    journal = moving_in(target)
    if journal:
        _roll_back(target, folder, journal)
    for entry in sorted(target.iterdir()):
        if MARK_TEMP.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
            os.unlink(entry)  # a run killed while writing the mark
        elif _is_staging(entry):
            _remove_staging(entry, target, folder)


def _roll_back(target: Path, folder: str, journal: dict) -> None:
    """Undo the move-in ``journal`` (:func:`.mask_folder.moving_in`) says was cut short: the
    moving run's sequence folders back into its staging folder, the earlier run's back into
    ``target``, the earlier mark back. Each step can be done again: a run killed here leaves
    the mark as it was for the next run to finish it."""
    names = {k: _plain(journal.get(k)) for k in ("moving_out", "moving_in")}
    folders = _plain([journal.get("staging"), journal.get("replaced")])
    before = journal.get("before")
    if len(folders) != 2 or not isinstance(before, (str, type(None))):
        return  # not a mark this version wrote: left marked as incomplete
    staging, replaced = target / folders[0], target / folders[0] / folders[1]
    if not (_is_staging(staging) and re.fullmatch(r"\.replaced-[a-z0-9_]{8}", replaced.name)):
        return  # its staging folder gone: left marked as incomplete, for a run to replace
    try:
        for name in names["moving_in"]:  # one in DIR, no more in staging, and the earlier
            came = not os.path.lexists(staging / name) and os.path.lexists(target / name)
            if came and (name not in names["moving_out"] or os.path.lexists(replaced / name)):
                os.replace(target / name, staging / name)  # run's moved out: it moved in
        for name in names["moving_out"]:
            if os.path.lexists(replaced / name) and not os.path.lexists(target / name):
                os.replace(replaced / name, target / name)
        restore_mark(target, before)
    except OSError as e:
        raise LoftUpError(
            f"--save-masks {folder}: a run killed while moving its masks in left them "
            f"incomplete, and this user could not put the earlier run's back ({e.strerror or e}"
            f": {e.filename}); have the killed run's user run loftup eval davis --save-masks "
            f"{folder} (it puts them back first), or empty the folder and run again"
        ) from None


def _remove_staging(entry: Path, target: Path, folder: str) -> None:
    """Remove the staging folder ``entry`` a killed run left, first moving back the earlier
    masks a staging folder of an older loftup holds that ``target`` lacks and its mark lists.
    One this user may not remove (another user's, made 0700 by an older loftup): a warning
    naming it and its owner, and left as it is."""
    listed = set(earlier_sequences(target) or ())
    try:
        for seq in sorted(entry.glob(".earlier-*/*")):
            if seq.name in listed and not os.path.lexists(target / seq.name):
                os.replace(seq, target / seq.name)
    except OSError:
        pass  # said below, with the folder left as it is
    else:
        shutil.rmtree(entry, ignore_errors=True)
    if not os.path.lexists(entry):
        return
    owner = owner_name(entry)
    why = " (0700: an older loftup made it so)" if entry.lstat().st_mode & 0o077 == 0 else ""
    warnings.warn(
        f"--save-masks {folder}: {entry}, a staging folder a killed run left, is {owner}'s "
        f"and this user may not remove it{why}; it is left there, and this run goes on "
        f"without it. Ask {owner} to remove it: a loftup eval davis --save-masks {folder} run "
        f"of theirs does (moving back the earlier masks it may hold), or rm -rf {entry}",
        stacklevel=4,
    )
