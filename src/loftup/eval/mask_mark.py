"""The mark of ``loftup eval davis --save-masks DIR`` (the file :data:`MARK`): which run's masks
DIR holds (its sequence folders), and, while a run moves its masks in, that they are
incomplete (:func:`moving_in`'s journal); the names of DIR's own files and of runs' staging
folders. Written by :mod:`.mask_sweep`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from pathlib import Path

from ..errors import UsageError
from ..escaping import printable, shell_quoted
from ..read_refusal import advised_path, euid, folder_refusal, mode_refuses, my_groups, owner_name

#: The file that marks a folder as written by ``loftup eval davis --save-masks``.
MARK = ".loftup-eval-davis-masks"

#: The file whose lock a run holds (:mod:`.mask_lock`): one of DIR's own, as the mark is.
LOCK = MARK + ".lock"

#: The temporary file the mark is written to before its rename (:func:`..atomic.temp_beside`'s
#: name): what a run killed while writing the mark leaves.
MARK_TEMP = re.compile(rf"\.{re.escape(MARK)}\.[a-z0-9_]{{8}}\.tmp")

#: Who writes the mark, said in it.
WRITTEN_BY = "loftup eval davis --save-masks"

#: The beginning of a run's staging folder's name (then mkdtemp's 8 characters).
STAGING = ".loftup-staging-"

#: A staging folder's name once its masks move in (it may hold the earlier run's masks; a
#: loftup from before this name removed every staging folder, and refuses DIR for this one).
MOVING = ".loftup-moving-"

#: The marks to come (the earlier one, where DIR had one; the run's own), written into the
#: moving folder before the first move: each goes in place by a rename, which a full disk lets.
MARK_BEFORE, MARK_AFTER = ".mark-before", ".mark-after"


def _is_staging(entry: Path) -> bool:
    """A run's staging folder, moving or not (:data:`STAGING`, :data:`MOVING`)."""
    prefix = f"({re.escape(STAGING)}|{re.escape(MOVING)})"
    return bool(re.fullmatch(rf"{prefix}[a-z0-9_]{{8}}", entry.name)) and (
        entry.is_dir() and not entry.is_symlink()
    )


def _is_moving(entry: Path) -> bool:
    return entry.name.startswith(MOVING) and _is_staging(entry)


def _plain(names) -> list[str]:
    """The plain names in ``names`` (a list read from the mark): a mark naming ../x must not
    reach outside the folder."""
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n not in ("", ".", "..") and "/" not in n]


def read_mark(folder: Path) -> str | None:
    """The mark's text (None: no mark); bytes that are no UTF-8 kept as they were. UsageError
    where it cannot be read (another user's, private): what it says decides what may be done."""
    try:
        return (folder / MARK).read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UsageError(  # (escaped here: the commands' paths are in bash's quotes)
            f"{printable(str(folder / MARK))}, the mark saying which run's masks "
            f"{printable(str(folder))} holds and whether they are complete, cannot be read: "
            f"{_mark_refused(folder, e)}"
        ) from None


def _mark_refused(folder: Path, error: OSError) -> str:
    """Why the mark in ``folder`` cannot be read (``error``: what reading it raised), with the
    fix for the class of users this user is of for it (:func:`..read_refusal.mode_refuses`);
    for a member of DIR's group outside the mark's (DIR without setgid, the mark in its
    writer's own group), the chgrp that gives it DIR's group too, by the mark's owner, and the
    chmod g+s of DIR, by DIR's owner."""
    mark, said = folder / MARK, f"{error.strerror or error}"
    if not isinstance(error, PermissionError):  # (a folder of its name, a disk's error)
        return said
    why = folder_refusal(mark)  # a folder on the way this user may not search: no stat
    if why:
        return why
    try:
        st, dir_st = os.stat(mark), folder.stat()
    except OSError:
        return said
    why, groups, shared = mode_refuses(mark, st, "r"), my_groups(), dir_st.st_gid
    outside = st.st_uid != euid() and st.st_gid not in groups  # others' bits apply
    if outside and shared in groups and not st.st_mode & stat.S_IROTH:
        with contextlib.suppress(ImportError, KeyError):
            import grp

            name, q, writer = grp.getgrgid(shared).gr_name, advised_path, owner_name(mark)
            setgid = f"chmod g+s {q(folder)}"  # (only DIR's owner may)
            if dir_st.st_uid == euid():
                setgid = f"run {setgid} yourself"
            elif dir_st.st_uid != st.st_uid:
                setgid = f"have {owner_name(folder)} run {setgid}"
            why += (
                f"; or, to share it with {printable(str(folder))}'s group {printable(name)}, which "
                f"this user is in, have {writer} run chgrp {shell_quoted(name)} {q(mark)} && "
                f"chmod g+r {q(mark)}, "
                f"and {setgid} "
                "(new files there then take its group)"
            )
    return why


def earlier_sequences(folder: Path) -> list[str] | None:
    """The sequence folders of the run whose masks ``folder`` holds, as its mark lists them
    (None: no mark). A mark that lists none (the one line of text an earlier version wrote,
    or an empty file the user made) stands for every folder in ``folder``. While a run moves
    its masks in (:func:`moving_in`), both runs' folders."""
    text = read_mark(folder)
    if text is None:
        return None
    try:
        return _plain(json.loads(text)["sequences"])
    except (ValueError, TypeError, KeyError):  # not this version's mark
        return [p.name for p in folder.iterdir() if p.is_dir() and not _is_staging(p)]


def moving_in(folder: Path) -> dict | None:
    """What the mark says of a run that is moving its masks into ``folder``, or was killed
    doing it (None: no run is): written before its first move, replaced by the run's own mark
    after its last. Its fields, as :mod:`.mask_sweep` reads them: the run's staging folder
    ``staging``, the folder in it ``replaced`` that takes the earlier run's sequence folders
    ``moving_out``, the run's own ``moving_in``, and the mark's text ``before`` (None: none)."""
    try:
        journal = json.loads(read_mark(folder) or "null")["incomplete"]
    except (ValueError, TypeError, KeyError):
        return None
    return journal if isinstance(journal, dict) else {}


def in_group(path: Path, target: Path) -> None:
    """Give ``path`` (a file or folder in ``target``, DIR) DIR's group where it has another
    (DIR without setgid: the writer's own group) and this user may (a member of it): every
    member's run and scorer reads what DIR's group may."""
    gid = target.stat().st_gid
    if os.lstat(path).st_gid != gid:
        with contextlib.suppress(OSError):
            os.chown(path, -1, gid, follow_symlinks=False)
