"""Globs given to ``loftup upsample``: their matches, a ``**`` going into each real folder once
(:func:`expand`; Python's glob goes round a loop of links), and what they could not see: the
folders they had to list and could not read (Python's glob passes over them in silence, their
images missing from the run, which then ended with status 0)."""

from __future__ import annotations

import glob
import os
import re
from collections import deque
from collections.abc import Callable, Iterator

from ..listing import fsck_folder


def expand(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, but a ``**`` lists each real folder once, by
    its shortest name (:func:`folders_under`): a link back up (``t/self -> .``) is not gone
    round, where glob named ``t/self/self/.../x.png`` 40 links deep, and hung with two such
    links (each level doubled the names). The other parts match as glob's do."""
    parts = re.split(f"[{re.escape(os.sep + (os.altsep or ''))}]", pattern)  # Windows: / too
    if "**" not in parts:
        return glob.glob(pattern)
    i = parts.index("**")
    head = os.sep.join(parts[:i]) or (pattern[0] if parts[0] == "" else "")  # /**: /
    rest = parts[i + 1 :]
    if glob.has_magic(head):  # photos/*/**: the folders it matches (no ** in it: no loop)
        tops = sorted(p.rstrip(os.sep) or os.sep for p in glob.glob(os.path.join(head, "")))
    else:
        tops = [head] if head == "" or os.path.isdir(head) else []
    found = [os.path.join(top, "") for top in tops if top and not rest]  # t/**: t/ too
    for folder in folders_under(tops):
        if not rest:  # t/**: every file and folder under t
            found += [os.path.join(folder, name) for name in _names(folder, dirs_only=False)]
        elif rest == [""]:  # t/**/: every folder (**/: those under the current one)
            found += [os.path.join(folder, "")] if folder else []
        else:
            found += expand(os.path.join(glob.escape(folder), *rest))
    return found


def folders_under(
    tops: list[str], unreadable: Callable[[OSError], None] | None = None
) -> Iterator[str]:
    """The folders ``tops`` and every folder under them that a glob's ``**`` lists (hidden
    ones and fsck's ``lost+found`` left out, links to folders followed), each real folder once:
    breadth first, names in sorted order, so a folder is named by its shortest way from a top
    (the first in sort order of those as short), and a link back up, round a loop, is never
    followed. ``unreadable(OSError)``: called for each folder that cannot be listed."""
    seen: set[str] = set()
    queue = deque(tops)
    while queue:
        folder = queue.popleft()
        real = os.path.realpath(folder or os.curdir)
        if real in seen:
            continue
        seen.add(real)
        yield folder
        subs = _names(folder, dirs_only=True, unreadable=unreadable)
        queue.extend(os.path.join(folder, d) for d in subs if not fsck_folder(folder, d))


def _names(folder: str, dirs_only: bool, unreadable=None) -> list[str]:
    """The names in ``folder`` that are not hidden (those of folders, links to them too, with
    ``dirs_only``), sorted; none where it cannot be listed (``unreadable(OSError)`` called)."""
    try:
        with os.scandir(folder or os.curdir) as entries:
            return sorted(
                e.name
                for e in entries
                if not e.name.startswith(".") and (not dirs_only or _is_dir(e))
            )
    except OSError as e:
        if unreadable is not None:
            unreadable(e)
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def unlisted_folders(pattern: str) -> list[tuple[str, str]]:
    """Each folder that matching ``pattern`` (a glob, ``**`` recursive) lists and that cannot
    be read, with the reason, as a folder given is told (:func:`.inputs._images_under`):
    ``photos/*/*.png`` lists each folder in ``photos``, ``photos/**/*.png`` every folder
    under it (hidden ones left out, as the glob leaves them)."""
    problems: dict[str, str] = {}

    def unreadable(e: OSError) -> None:
        problems.setdefault(e.filename, f"a folder that cannot be read ({e.strerror or e})")

    _listings(pattern, unreadable)
    return sorted(problems.items())


def _listings(pattern: str, unreadable) -> None:
    """List each folder the glob ``pattern`` lists, calling ``unreadable(OSError)`` for each
    that cannot be read."""
    if not glob.has_magic(pattern):
        return
    dirname, base = os.path.split(pattern)
    if glob.has_magic(dirname):
        _listings(dirname, unreadable)
        folders = expand(os.path.join(dirname, ""))  # "day2/": folders only
        parents = [os.path.normpath(f) for f in folders]
        parents = [p for p in parents if not fsck_folder(*os.path.split(p))]
    else:
        parents = [dirname or os.curdir]
    for parent in parents:
        if not os.path.isdir(parent):
            continue
        if base == "**":
            _walk(parent, unreadable)
        elif glob.has_magic(base):
            try:
                os.scandir(parent).close()
            except OSError as e:
                unreadable(e)


def _walk(folder: str, unreadable) -> None:
    """Every folder under ``folder``, as :func:`expand` lists them (each real folder once)."""
    for _ in folders_under([folder], unreadable):
        pass
