"""What a glob given to ``loftup upsample`` could not see: the folders it had to list and
could not read (Python's glob passes over them in silence, their images missing from the
run, which then ended with status 0)."""

from __future__ import annotations

import glob
import os

from ..listing import fsck_folder


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
        folders = glob.glob(os.path.join(dirname, ""), recursive=True)  # "day2/": folders only
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
    """Every folder under ``folder``, links followed once each (a link back up is no loop)."""
    seen = set()
    for root, dirs, _ in os.walk(folder, onerror=unreadable, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not fsck_folder(root, d)]
