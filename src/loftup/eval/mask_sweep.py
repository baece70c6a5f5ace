"""What a run of ``loftup eval davis --save-masks DIR`` holding DIR's lock does first: put right
what killed runs (``kill -9``, the OOM killer, a lost node) left in DIR.

A run killed while moving its masks in left DIR with some sequence folders of its own and some
of the run before, or lacking some, under a mark that says so (:func:`.mask_mark.moving_in`):
:func:`sweep_staging` moves its folders back into its staging folder and the earlier run's
back into DIR, and puts back the earlier mark; DIR then holds the earlier run's masks as they
were. A run killed after its own mark was written left DIR whole, with its masks: only its
staging folder (holding the replaced ones) is removed. Every other run's staging folder, and a
mark's temporary file, is removed too, but one this user may not remove: said, and left; and
while the mark still says incomplete (a move-in this version cannot undo: a later loftup's),
the folders that may hold the earlier masks. The marks are written here too (:func:`write_mark`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path

from .. import atomic
from ..atomic import remove_temps, replace_durably, temp_beside
from ..errors import LoftUpError
from ..escaping import printable, shell_quoted
from .mask_mark import (
    MARK,
    MARK_BEFORE,
    MARK_TEMP,
    MOVING,
    STAGING,
    WRITTEN_BY,
    _is_moving,
    _is_staging,
    _plain,
    earlier_sequences,
    in_group,
    moving_in,
    owner_name,
)
from .mask_signal import ctrl_c_held


def sweep_staging(target: Path, folder: str) -> None:
    """Put right what killed runs left in ``target`` (``folder``, ``--save-masks``; called
    holding its lock): undo a move-in that was cut short, remove the staging folders, first
    undoing the swap an older loftup's run was killed in (:func:`_undo_older_swap`), and
    remove a mark's temporary file."""
    journal = moving_in(target)
    if journal:
        _roll_back(target, folder, journal)
    journal = moving_in(target)  # still there: one it could not undo (a later loftup's, say)
    for entry in sorted(target.iterdir()):
        if MARK_TEMP.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
            os.unlink(entry)  # a run killed while writing the mark
        elif _is_staging(entry) and not (journal is not None and _named(entry, journal)):
            _remove_staging(entry, target, folder)


def _named(entry: Path, journal: dict) -> bool:
    """Whether the staging folder ``entry`` may hold the earlier masks of the move-in
    ``journal`` (still marked): the one it names, and any moving folder (the name a staging
    folder takes as its masks move in). Such a folder stays until a run's own mark replaces
    the journal."""
    return _is_moving(entry) or entry.name == journal.get("staging")


def _roll_back(target: Path, folder: str, journal: dict) -> None:
    """Undo the move-in ``journal`` (:func:`.mask_mark.moving_in`) says was cut short: the
    moving run's sequence folders back into its staging folder, the earlier run's back into
    ``target``, the earlier mark back. Each step can be done again: a run killed here leaves
    the mark as it was for the next run to finish it."""
    folders = _plain([journal.get("staging"), journal.get("replaced")])
    before = journal.get("before")
    if len(folders) != 2 or not isinstance(before, (str, type(None))):
        return  # not a mark this version wrote: left marked as incomplete
    staging, replaced = target / folders[0], target / folders[0] / folders[1]
    if not (_is_staging(staging) and re.fullmatch(r"\.replaced-[a-z0-9_]{8}", replaced.name)):
        return  # its staging folder gone: left marked as incomplete, for a run to replace
    try:
        put_back(target, journal)
    except OSError as e:
        raise LoftUpError(
            f"--save-masks {folder}: a run killed while moving its masks in left them "
            f"incomplete, and this user could not put the earlier run's back ({e.strerror or e}"
            f": {e.filename}); have the killed run's user run loftup eval davis --save-masks "
            f"{folder} (it puts them back first), or empty the folder and run again"
        ) from None


def put_back(target: Path, journal: dict) -> None:
    """Undo the move-in ``journal`` names (:func:`.mask_mark.moving_in`'s fields, checked):
    the moving run's sequence folders back into its staging folder, the earlier run's back
    into ``target``, and the earlier mark (its copy in the staging folder, else its text),
    each step only where it is still to be done. A Ctrl-C meanwhile does not stop it (it is
    held, and raised at the end); an OSError does, leaving the mark saying incomplete."""
    with ctrl_c_held():
        _put_back(target, journal)


def _put_back(target: Path, journal: dict) -> None:
    names = {k: _plain(journal.get(k)) for k in ("moving_out", "moving_in")}
    staging = target / journal["staging"]
    replaced = staging / journal["replaced"]

    def back_in(name):  # one in DIR, no more in staging, and the earlier run's moved out
        came = not os.path.lexists(staging / name) and os.path.lexists(target / name)
        if came and (name not in names["moving_out"] or os.path.lexists(replaced / name)):
            os.replace(target / name, staging / name)

    def back_out(name):
        if os.path.lexists(replaced / name) and not os.path.lexists(target / name):
            os.replace(replaced / name, target / name)

    def mark(_):
        if os.path.lexists(staging / MARK_BEFORE):
            replace_durably(staging / MARK_BEFORE, target / MARK)
        else:  # (none, or a journal from before the copy)
            restore_mark(target, journal["before"])

    steps = [(back_in, n) for n in reversed(names["moving_in"])]
    steps += [(back_out, n) for n in reversed(names["moving_out"])] + [(mark, None)]
    for step, name in steps:
        step(name)


def write_mark(
    target: Path, names: list[str], journal: dict | None = None, *, to: Path | None = None
) -> None:
    """Mark ``target`` as holding the masks of the sequences ``names``; with ``journal``
    (:func:`moving_in`'s fields) as incomplete, the masks being moved in. ``to``: the file
    to write instead of ``target``'s mark, to be renamed onto it later."""
    mark = {"written_by": WRITTEN_BY, "sequences": names}
    if journal is not None:
        mark["incomplete"] = journal
    _write(target, json.dumps(mark) + "\n", to)


def restore_mark(target: Path, before: str | None, *, to: Path | None = None) -> None:
    """Put back the mark ``target`` had (its text, :func:`read_mark`; None: none), or write
    it to ``to``, to be renamed onto it later."""
    if before is not None:
        _write(target, before, to)
    elif to is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target / MARK)


def _write(target: Path, text: str, to: Path | None) -> None:
    """Write ``text`` to ``target``'s mark (or ``to``) whole or not at all, readable by
    ``target``'s group where ``target`` is (a group-shared folder, whatever the umask): every
    member's run and scorer reads it."""
    path = to or target / MARK
    made: list[str] = []
    try:  # (from before the file is made: an interruption anywhere removes it)
        tmp = temp_beside(path, into=made)
        Path(tmp).write_bytes(text.encode("utf-8", "surrogateescape"))
        os.chmod(tmp, atomic.FILE_MODE | (target.stat().st_mode & 0o040))
        in_group(Path(tmp), target)
        replace_durably(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_temps(made)
        raise


def _undo_older_swap(entry: Path, target: Path) -> bool:
    """Undo what a run of a loftup from before the journal, killed while swapping its masks
    in (no journal: its mark lists both runs' folders), left: its staging folder ``entry``
    holds the earlier run's folders it moved out (``.earlier-*/``) and its own it had yet to
    move in. All of them moved in: its masks, whole. Else DIR's folders that are its own
    (some of them share a name with an earlier one: they all are) move aside and the
    earlier ones back. Where which of DIR's folders are whose cannot be told (none shares a
    name with a moved or a staged one): DIR marked as incomplete, ``entry`` renamed to
    :data:`.mask_mark.MOVING` and kept until a run's own mark replaces it; False."""
    earlier = {p.name: p for p in entry.glob(".earlier-*/*")}
    staged = {p.name for p in entry.iterdir() if not p.name.startswith(".")}
    present = [n for n in earlier_sequences(target) or () if (target / n).is_dir()]
    if not list(entry.glob(".earlier-*")):  # (read whole, not left open: loftup.stops.first)
        return True  # killed before its swap: DIR as it was
    if staged and present and not set(present) & (staged | set(earlier)):
        moving = target / (MOVING + entry.name[len(STAGING) :])
        # the mark first: killed before the rename, the next run does this again; after it, no
        # run removes the moving folder (the earlier masks in it) while the mark names it
        write_mark(target, present, {"staging": moving.name, "older_loftup": True})
        os.replace(entry, moving)
        return False
    if staged and set(present) & set(earlier):  # moving in: DIR's are its own
        for name in sorted(present, key=lambda n: n in earlier):  # the telling ones last
            os.replace(target / name, entry / name)
        present = []
    if staged:  # the earlier run's back (an undo cut short: the rest of them)
        for name, seq in earlier.items():
            if not os.path.lexists(target / name):
                os.replace(seq, target / name)
                present.append(name)
    write_mark(target, sorted(present))
    return True


def _remove_staging(entry: Path, target: Path, folder: str) -> None:
    """Remove the staging folder ``entry`` a killed run left, first undoing the swap an
    older loftup's run was killed in (:func:`_undo_older_swap`). One this user may not remove (another user's, made 0700 by an older loftup): a warning
    naming it and its owner, and left as it is."""
    try:
        whole = _is_moving(entry) or _undo_older_swap(entry, target)
    except OSError:
        whole = False  # said below, with the folder left as it is
    if whole:
        shutil.rmtree(entry, ignore_errors=True)
    if not os.path.lexists(entry) or not whole and moving_in(target) is not None:
        return
    owner = owner_name(entry)
    why = " (0700: an older loftup made it so)" if entry.lstat().st_mode & 0o077 == 0 else ""
    shown, folder = printable(str(entry)), printable(str(folder))  # (the rm's: bash's quotes)
    warnings.warn(
        f"--save-masks {folder}: {shown}, a staging folder a killed run left, is {owner}'s "
        f"and this user may not remove it{why}; it is left there, and this run goes on "
        f"without it. Once this run has put its masks in place, ask {owner} to run rm -rf "
        f"{shell_quoted(entry)}; should it not, ask them to move the earlier masks it may hold "
        f"({shown}/.earlier-*/*) that {folder} lacks back into it first",
        stacklevel=4,
    )
