"""Globs given to ``loftup upsample``: their matches, a ``**`` going into each real folder once
(Python's glob goes round a loop of links), and what they could not see: the folders they had
to list and could not read (Python's glob passes over them in silence, their images missing
from the run, which then ended with status 0). Both come from one listing of each folder
(:func:`search`): the unreadable ones were found by listing every folder again, two to three
more listings a folder."""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import re

from ..listing import fsck_folder, is_folder, walk


def search(pattern: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(the matches of ``pattern``, each folder it had to list and could not read with the
    reason, in path order, as a folder given is told: :func:`.inputs._images_under`).

    The matches are ``glob.glob(pattern, recursive=True)``'s, but that a ``**`` lists each
    real folder once, by its shortest name (:meth:`_Folders._subfolders`): a link back up (``t/self
    -> .``) is not gone round, where glob named ``t/self/self/.../x.png`` 40 links deep, and
    hung with two such links (each level doubled the names). The other parts match as glob's
    do: hidden names only where the part begins with a dot, folders only but for the last
    part, a last part of no magic where it exists. ``photos/*/*.png`` lists ``photos`` and each
    folder in it, ``photos/**/*.png`` every folder under it (hidden ones left out, as the glob
    leaves them, and fsck's ``lost+found`` at the top of a disk, unreadable but to root)."""
    if not glob.has_magic(pattern):
        return glob.glob(pattern), []
    parts = re.split(f"[{re.escape(os.sep + (os.altsep or ''))}]", pattern)  # Windows: / too
    i = next(n for n, part in enumerate(parts) if glob.has_magic(part))
    head = os.sep.join(parts[:i]) or (pattern[0] if parts[0] == "" else "")  # /*: /
    folders = _Folders()
    found = folders.match([head], parts[i:])
    return found, sorted(folders.unreadable.items())


class _Folders:
    """The folders one search lists, each once (its entries kept for the parts still to
    match in it), and those that could not be read (``unreadable``: folder -> why)."""

    def __init__(self) -> None:
        self.listed: dict[str, list[os.DirEntry]] = {}
        self.unreadable: dict[str, str] = {}

    def match(self, folders: list[str], parts: list[str]) -> list[str]:
        """The paths under ``folders`` that ``parts`` (a glob split at its separators) match."""
        for n, part in enumerate(parts):
            last = n == len(parts) - 1
            if part == "**":
                return self._recursive(folders, parts[n + 1 :])
            if glob.has_magic(part):
                folders = [os.path.join(f, name) for f in folders
                           for name in self.names(f, part, dirs_only=not last)]  # fmt: skip
            elif not last:  # a folder's name: a listing in it says whether it is one
                folders = [os.path.join(f, part) for f in folders]
            elif part:  # the file or folder itself, where it is there
                folders = [p for f in folders if os.path.lexists(p := os.path.join(f, part))]
            else:  # a trailing separator: folders only
                folders = [os.path.join(f, "") for f in folders if os.path.isdir(f or os.curdir)]
        return folders

    def _recursive(self, folders: list[str], rest: list[str]) -> list[str]:
        """The paths that ``**`` followed by ``rest`` matches under ``folders``."""
        tops = [f for f in folders if f == "" or os.path.isdir(f)]
        found = [os.path.join(top, "") for top in tops if top and not rest]  # t/**: t/ too
        for folder, _ in walk(tops, self._subfolders, breadth_first=True):
            if not rest:  # t/**: every file and folder under t
                found += [os.path.join(folder, name) for name in self.names(folder, "*")]
            elif rest == [""]:  # t/**/: every folder (**/: those under the current one)
                found += [os.path.join(folder, "")] if folder else []
            else:
                found += self.match([folder], rest)
        return found

    def _subfolders(self, folder: str) -> tuple[list[str], None]:
        """``folder``'s sub-folders, for a ``**`` (:func:`~loftup.listing.walk`, breadth first:
        each real folder once, by its shortest name from a top, the first in sort order of
        those as short; a link back up is not gone round); one that cannot be read is still
        matched (``t/**/``), as glob matches it."""
        return self.names(folder, "*", dirs_only=True), None

    def names(self, folder: str, part: str, dirs_only: bool = False) -> list[str]:
        """The names in ``folder`` that ``part`` matches, sorted (hidden ones only where
        ``part`` begins with a dot; with ``dirs_only``, those of folders and links to them)."""
        entries = self._entries(folder)
        if not part.startswith("."):
            entries = [e for e in entries if not e.name.startswith(".")]
        names = fnmatch.filter([e.name for e in entries], part)
        if dirs_only:
            kept = set(names)
            names = [e.name for e in entries if e.name in kept and is_folder(e)]
        return names

    def _entries(self, folder: str) -> list[os.DirEntry]:
        """``folder``'s entries sorted by name, listed once; none where it cannot be listed
        (said in ``unreadable``, but for no folder there, or fsck's ``lost+found``)."""
        entries = self.listed.get(folder)
        if entries is None:
            try:
                with os.scandir(folder or os.curdir) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError as e:
                entries = []
                where = os.path.normpath(folder or os.curdir)
                if e.errno not in (errno.ENOENT, errno.ENOTDIR) and not fsck_folder(
                    *os.path.split(where)
                ):
                    why = f"a folder that cannot be read ({e.strerror or e})"
                    self.unreadable.setdefault(e.filename or where, why)
            self.listed[folder] = entries
        return entries
