"""``loftup eval davis --save-masks DIR``: the folder the predicted masks go to, in the DAVIS
result format (DIR/<sequence>/<frame>.png), and what is checked of it before any work.

:func:`check_masks_folder`: not inside the dataset's ``--root`` (the masks would overwrite its
annotations), and new, empty, or one an earlier ``loftup eval davis`` run wrote: it holds the
mark file :data:`MARK`, which lists that run's sequence folders, and those folders of PNGs
only; each of them one this user may move. How the masks are written and put in place:
:mod:`.mask_staging`. :func:`complete_masks`: what a reader of the masks (a scorer) checks
first: no run was killed while moving its masks in.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LoftUpError, UsageError
from ..escaping import printable, quoted, shell_quoted
from ..paths import check_folder_output
from ..read_refusal import advised_path
from .mask_access import (
    check_mark_replaceable,
    check_movable,
    check_readable,
    check_sequences_readable,
)
from .mask_mark import (
    LOCK,
    MARK,
    MARK_BEFORE,
    MARK_TEMP,
    MOVING,
    _is_staging,
    _plain,
    earlier_sequences,
    moving_in,
)

if TYPE_CHECKING:
    from .datasets import DavisSequence

#: Files a desktop's file browser leaves in any folder it shows (macOS, Windows): no one's data.
IGNORED = frozenset({".DS_Store", "Thumbs.db"})

#: The files davis2017-evaluation's scorer writes into the masks' folder (its --results_path).
SCORER_CSV = re.compile(r"(global|per-sequence)_results-\w+\.csv")


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
            f"--save-masks {folder}: the {where} {quoted(twins[0])} and {quoted(twins[1])} differ "
            "only in "
            "case, and their masks would overwrite each other on a case-insensitive disk "
            "(macOS, Windows); rename one, or leave out --save-masks"
        )


def complete_masks(folder: str | os.PathLike) -> list[str] | None:
    """The sequences of the run whose masks ``folder`` (``--save-masks``) holds, as its mark
    lists them (None: no mark, masks made otherwise). LoftUpError while a run holds the
    folder's lock, where the mark says a run was killed moving its masks in (some may be that
    run's, some the run's before), and where the mark lists a sequence the folder lacks."""
    from .mask_lock import _locked

    target = Path(folder)
    check_readable(target)
    if _locked(target):
        raise LoftUpError(
            f"{folder} is being written by a loftup eval davis --save-masks run (it holds the "
            "folder's lock): its masks may replace these while they are read; read them once "
            "that run has ended"
        )
    if moving_in(target) is not None:  # (escaped here: _by_hand's commands, in bash's quotes,
        raise LoftUpError(  # are not escaped again as the message is said)
            f"{printable(str(folder))} holds incomplete masks: a loftup eval davis --save-masks "
            "run was killed while moving its masks in, so its sequence folders "
            f"may be part that run's, part the run's before, or missing; {_repair(target)}"
        )
    listed = earlier_sequences(target)
    missing = [n for n in listed or () if not (target / n).is_dir()]
    if missing:
        raise LoftUpError(
            f"{folder}'s mark lists the sequence {missing[0]}, which {folder} lacks (moved or "
            f"deleted since the run): its masks are not that run's whole; run loftup eval "
            f"davis --save-masks {folder} again"
        )
    check_sequences_readable(target, listed or [])
    return listed


def _repair(target: Path) -> str:
    """What to do about the incomplete masks in ``target``: where its file system keeps
    locks, run again (its first step puts the earlier masks back); else by hand."""
    if (moving_in(target) or {}).get("older_loftup"):  # (:mod:`.mask_sweep`)
        return (
            "an older loftup's run, which left no word of which folders are whose: the "
            f"earlier run's are kept in {MOVING}*/.earlier-*/ until a run into it puts its "
            "own masks in place"
        )
    from .mask_lock import _locked

    if _locked(target) is not None:
        return (
            f"run loftup eval davis --save-masks {printable(str(target))} again (it first puts "
            "the earlier run's masks back) and read the masks once it has ended"
        )
    return "its file system keeps no locks, so no run puts them back; " + _by_hand(target)


def _by_hand(target: Path) -> str:
    """The commands that put the earlier masks back in ``target``, from the exact folders its
    mark names (without locks, several moving folders may be there: one is the killed run's),
    quoted as bash reads a pasted command (:func:`~loftup.escaping.shell_quoted`: a name with a
    newline in ``$'...'``), the rest escaped (:func:`~loftup.escaping.printable`)."""
    target = Path(os.path.abspath(os.path.expanduser(target)))  # (commands said: absolute)
    journal = moving_in(target) or {}
    names = _plain([journal.get("staging"), journal.get("replaced")])
    if len(names) != 2 or not names[0].startswith(MOVING):
        return f"empty {printable(str(target))} (its mark names no moving folder) and run again"
    q = shell_quoted
    moving, back = target / names[0], _plain(journal.get("moving_out"))
    replaced = moving / names[1]
    out = [n for n in back if os.path.lexists(replaced / n)]  # (not yet put back)
    theirs = [n for n in _plain(journal.get("moving_in")) if n not in back]
    steps = [f"rm -rf {q(target / n)} && mv {q(replaced / n)} {q(target / n)}"
             for n in out]  # fmt: skip
    steps += [f"rm -rf {q(target / n)}" for n in theirs if os.path.lexists(target / n)]
    if os.path.lexists(moving / MARK_BEFORE):
        steps.append(f"mv {q(moving / MARK_BEFORE)} {q(target / MARK)}")
    elif journal.get("before") is None:
        steps.append(f"rm {q(target / MARK)}")
    else:
        steps.append(f"write the mark's 'before' text into {printable(str(target / MARK))}")
    steps.append(f"rm -rf {q(moving)}")
    return "do it while no run writes there: " + "; ".join(steps)


def foreign_entries(folder: Path) -> list[Path]:
    """What ``folder`` holds besides an earlier run's masks (its mark, the sequence folders
    the mark lists, holding PNG files only) and runs' staging folders."""
    if not folder.is_dir():
        return []
    listed = set(earlier_sequences(folder) or ())
    out = []
    for entry in sorted(folder.iterdir()):
        ours = entry.name in (MARK, LOCK, *IGNORED) or MARK_TEMP.fullmatch(entry.name)
        if not ours and not _is_staging(entry):
            out += _not_masks(entry) if entry.name in listed else [entry]
    return out


def _not_masks(entry: Path) -> list[Path]:
    """What in the sequence folder ``entry`` is no mask: itself when no folder, else its
    entries that are no PNG files."""
    if entry.is_symlink() or not entry.is_dir():
        return [entry]
    found = sorted(p for p in entry.iterdir() if p.name not in IGNORED)
    return [p for p in found if p.suffix != ".png" or not p.is_file()]


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
    shown = printable(str(folder))  # (escaped here: the commands' paths are in bash's quotes)
    here = advised_path(folder)  # (absolute, ~ expanded: '~/x' quoted, or -x, named no file)
    if found and earlier_sequences(target) is None and not any(map(_not_masks, found)):
        raise UsageError(
            f"--save-masks {shown} holds masks ({printable(str(found[0]))}) but no {MARK} file, "
            "the mark of an earlier run's masks that this run may replace (masks of a loftup "
            "from before the mark, or made otherwise): delete or move them, or, if this run "
            f"may replace them, mark them: touch {here}/{MARK}"
        )
    scores = [p for p in found if p.parent == target and SCORER_CSV.fullmatch(p.name)]
    if scores:
        raise UsageError(
            f"--save-masks {shown} holds the davis2017-evaluation scorer's scores of the masks "
            f"there ({printable(str(scores[0]))}): stale scores once this run replaces the "
            f"masks; delete them (rm {here}/*_results-*.csv), or give "
            "another folder"
        )
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise UsageError(
            f"--save-masks {folder} holds files that no loftup eval davis run wrote ({found[0]}"
            f"{more}); the run replaces an earlier run's masks there with its own, so give a "
            "new or empty folder, or move those files out"
        )
    check_mark_replaceable(target, folder)
    for name in earlier_sequences(target) or ():
        check_movable(target / name, folder)


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
