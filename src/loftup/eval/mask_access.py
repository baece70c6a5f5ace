"""What this user may do with the earlier run's masks in ``loftup eval davis --save-masks DIR``,
checked before it is done, with the fix for the class of users it is of for each (its owner,
in its group, another): read them (:func:`check_readable`, :func:`check_sequences_readable`:
a scorer's), and move them out of the way and replace their mark (:func:`check_movable`,
:func:`check_mark_replaceable`: a run's, which met a refusal at its very end)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import LoftUpError, UsageError
from ..escaping import printable
from ..read_refusal import advised_path, euid, may, mode_refuses
from .mask_mark import MARK, owner_name

#: Why a reader's chmod is ``-R``.
_EACH_MASK = "since a reader reads each mask in it"

#: A reader's other fix.
_ANOTHER = "or give another folder a loftup eval davis --save-masks run wrote"


def check_readable(target: Path) -> None:
    """LoftUpError unless ``target`` is a folder this user may read: a typo passed (no mark:
    masks made otherwise), a file or a private folder gave a traceback. The chmod is for this
    user's class of users for it, and ``-R``: a reader reads every mask in it too."""
    fix = "give the folder a loftup eval davis --save-masks run wrote"
    try:
        st = target.stat()
    except OSError as e:
        what = (
            "does not exist" if e.errno == errno.ENOENT else f"cannot be looked at ({e.strerror})"
        )
        raise LoftUpError(f"{target} {what}: {fix}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise LoftUpError(f"{target} is no folder: {fix}")
    if not may(target, os.R_OK | os.X_OK):
        why = mode_refuses(target, st, "rx", tree=_EACH_MASK)
        raise LoftUpError(f"{_p(target)} cannot be read by this user: {why}; {_ANOTHER}")


def check_sequences_readable(target: Path, names: list[str]) -> None:
    """LoftUpError where one of the sequence folders ``names`` in ``target`` (a readable DIR)
    is one this user may not read (another member's run's, private), or holds a mask it may
    not read (another's, 0600): a reader met a bare "Permission denied" at its masks. The
    chmod is ``-R`` for a folder, as for DIR; of a mask, its own, with how many more are
    alike (one access() of each)."""
    for name in names:
        seq = target / name
        try:
            st = seq.stat()
        except OSError:  # (missing: said by the caller)
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        if not may(seq, os.R_OK | os.X_OK):
            why = mode_refuses(seq, st, "rx", tree=_EACH_MASK)
            raise LoftUpError(
                f"{_p(target)}'s masks {_p(seq)} cannot be read by this user: {why}; {_ANOTHER}"
            )
        refused = sorted(p for p in seq.glob("*.png") if not may(p, os.R_OK))
        if refused:
            more = f" (and {len(refused) - 1} more of {_p(seq)}'s)" if len(refused) > 1 else ""
            why = mode_refuses(refused[0], refused[0].stat(), "r")
            raise LoftUpError(
                f"{_p(target)}'s mask {_p(refused[0])}{more} cannot be read by this user: {why}; "
                f"{_ANOTHER}"
            )


def _sticky_refuses(st: os.stat_result, where: os.stat_result) -> bool:
    """Whether the sticky folder of stat ``where`` lets this user move or replace nothing of
    stat ``st`` in it: another's, in a sticky folder not this user's (root: any)."""
    me = euid()
    return bool(where.st_mode & stat.S_ISVTX) and me not in (0, st.st_uid, where.st_uid)


def _sticky(folder: str, target: Path, whose: str, owner: str, verb: str) -> str:
    """How the sticky ``target`` (``folder`` as given) refuses what is ``owner``'s (``whose``:
    "folder") to be ``verb`` ("move")."""
    folder = _p(folder)
    return (
        f"{folder} is sticky (mode {stat.filemode(target.stat().st_mode)}), where only a {whose}'s "
        f"owner, {owner} here, or {folder}'s, {owner_name(target)}, may {verb} it"
    )


def check_movable(seq: Path, folder: str) -> None:
    """UsageError when the earlier run's sequence folder ``seq`` is one this user may not move
    out of the way (a folder moves to another parent only with write permission on itself):
    another user's, in a group-shared DIR, or this user's own made read-only; or another
    user's in a sticky DIR (only its owner or DIR's may move it there, whatever its mode: said
    alone, as a chmod of ``seq`` would not let it). Said before the work, not at its end, with
    the chmod for this user's class of users for ``seq``: of ``seq`` alone (it holds mask files
    only, whose own modes neither a move nor their removal needs)."""
    if seq.is_symlink() or not seq.is_dir():
        return
    st, where = seq.stat(), seq.parent.stat()
    owner, theirs = owner_name(seq), euid() not in (0, st.st_uid)  # (root: any)
    if _sticky_refuses(st, where):
        sticky = _sticky(folder, seq.parent, "folder", owner, "move")
        why, last = f": {sticky}; have {owner} remove them", _unsticky(folder)
    elif not may(seq, os.W_OK):
        last = ""
        why = mode_refuses(seq, st, "w") + (f"; or have {owner} remove them" if theirs else "")
        why = f" (moving a folder needs write permission on it): {why}"
    else:
        return
    raise UsageError(
        f"--save-masks {_p(folder)}: this user may not move the earlier run's masks {_p(seq)} "
        f"out of the way of this run's{why}; or give another folder{last}"
    )


def check_mark_replaceable(target: Path, folder: str) -> None:
    """UsageError where ``target`` (``folder``, DIR) is sticky and its mark is another user's
    that this one may not replace (a run replaces it twice: with the journal of its moves, then
    with its own mark; the first failed at the run's end, its masks left aside)."""
    mark = target / MARK
    try:
        st, where = os.lstat(mark), target.stat()
    except OSError:  # (no mark)
        return
    if not _sticky_refuses(st, where):
        return
    owner = owner_name(mark)
    sticky = _sticky(folder, target, "file", owner, "replace")
    raise UsageError(
        f"--save-masks {_p(folder)}: this user may not replace the mark {_p(mark)}, which says "
        f"which run's masks {_p(folder)} holds: {sticky}; have {owner} remove the masks and the "
        f"mark; or give another folder{_unsticky(folder)}"
    )


def _unsticky(folder: str) -> str:
    """The last of a sticky ``folder``'s fixes, with what it costs: a ``chmod -t`` by its owner
    lets every user who may make files in it remove or rename everyone's there."""
    return (
        f"; or have {_p(folder)}'s owner run chmod -t {advised_path(folder)}, which lets every "
        f"user who may write in {_p(folder)} remove others' files there"
    )


def _p(path) -> str:
    """``path`` escaped where the message is made (:func:`~loftup.escaping.printable`): its
    commands' paths are in bash's quotes (:func:`~loftup.read_refusal.advised_path`), which
    the message escaped whole as it is said would no longer name the file."""
    return printable(str(path))
