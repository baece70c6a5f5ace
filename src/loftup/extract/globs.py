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

from ..listing import (
    absent,
    cannot_read,
    fsck_folder,
    hidden,
    unsearched,
    walk,
)


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
    """The folders one search lists and those it could not read (``unreadable``: folder ->
    why). A listing is held for the next look into the same folder only (a ``**``'s, whose
    walk lists a folder for its sub-folders and then matches the rest of the glob in it), and
    of a folder listed during a ``**`` walk, the names of its sub-folders until the walk has
    matched in it, or to the search's end for one the walk does not reach (listed by the rest
    of the glob: a hidden one, ``**/.h/*.jpg``; a second name of a folder it searched): each
    folder listed once (``**/images/*.jpg``, ``**/*/*.jpg``), without every folder's entries
    held to the end (20 folders of 10k entries, ``d/**/*.jpg``: 49 MB at the peak, now 8.5 MB;
    Python's glob 7.8 MB)."""

    def __init__(self) -> None:
        self.unreadable: dict[str, str] = {}
        self.walking = 0  # how many ** walks are under way
        self._last: tuple[str, tuple] | None = None  # the last folder listed, its listing
        self._subfolders_of: dict[str, list[str]] = {}  # listed in a walk, not yet reached

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
                folders = [p for f in folders if self._there(p := os.path.join(f, part))]
            else:  # a trailing separator: folders only
                folders = [os.path.join(f, "") for f in folders
                           if self._there(f or os.curdir, os.path.isdir)]  # fmt: skip
        return folders

    def _there(self, path: str, test=os.path.lexists) -> bool:
        """``test(path)``, for a path made of the glob's fixed parts; one that cannot be
        looked at, in a folder this user may not search, is said in ``unreadable`` (naming
        that folder), unless that folder is seen to hold no such name
        (:func:`~loftup.listing.absent`): glob passed over it in silence."""
        if test(path):
            return True
        why = not self._said_above(path) and hidden(path)
        if why:
            self.unreadable.setdefault(path, why)
        return False

    def _said_above(self, path: str) -> bool:
        """Whether the folder of ``path`` was said unreadable (``t/**/x.png``: ``t/locked``
        said, not ``t/locked/x.png`` too)."""
        return os.path.dirname(os.path.normpath(path)) in self.unreadable

    def _recursive(self, folders: list[str], rest: list[str]) -> list[str]:
        """The paths that ``**`` followed by ``rest`` matches under ``folders``."""
        tops = [f for f in folders if f == "" or self._there(f, os.path.isdir)]
        found = [os.path.join(top, "") for top in tops if top and not rest]  # t/**: t/ too
        self.walking += 1
        try:
            for folder, _ in walk(tops, self._subfolders, breadth_first=True):
                if not rest:  # t/**: every file and folder under t
                    found += [os.path.join(folder, name) for name in self.names(folder, "*")]
                elif rest == [""]:  # t/**/: every folder (**/: those under the current one)
                    found += [os.path.join(folder, "")] if folder else []
                else:
                    found += self.match([folder], rest)
                self._subfolders_of.pop(folder, None)  # reached and matched: not kept to the end
        finally:
            self.walking -= 1
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
        kept = self._subfolders_of.get(folder)  # listed before, in this ** walk
        if dirs_only and kept is not None and not part.startswith("."):
            return fnmatch.filter(kept, part)
        names, kinds = self._listing(folder)
        if not part.startswith("."):
            names = [n for n in names if not n.startswith(".")]
        names = fnmatch.filter(names, part)
        return [n for n in names if _folder(folder, n, kinds)] if dirs_only else names

    def _listing(self, folder: str) -> tuple[list[str], dict[str, bool | None]]:
        """``folder``'s names sorted, and which are folders (True) or links (None, until
        :func:`_folder` follows one), listed unless it was the last one listed: its names only,
        not DirEntry objects (5 times their memory: 22M SA-1B files in one folder). No names
        where it cannot be listed (said in ``unreadable``, but for no folder there, or fsck's
        ``lost+found``), or where it may be read but not searched (said: none of them opens).
        In a ``**`` walk, its sub-folders are kept for the walk."""
        if self._last is not None and self._last[0] == folder:
            return self._last[1]
        where = os.path.normpath(folder or os.curdir)
        names, kinds = [], {}
        try:
            with os.scandir(folder or os.curdir) as listing:
                for entry in listing:
                    names.append(name := entry.name)
                    try:  # the listing's d_type: no file looked at
                        if entry.is_dir(follow_symlinks=False):
                            kinds[name] = True
                        elif entry.is_symlink():
                            kinds[name] = None  # followed where a folder is asked for
                    except OSError:  # as listing.entry_is counts it: none
                        pass
        except OSError as e:
            gone = e.errno in (errno.ENOENT, errno.ENOTDIR) or fsck_folder(*os.path.split(where))
            if (
                not gone
                and not self._said_above(where)
                and not (isinstance(e, PermissionError) and absent(where))
            ):
                self.unreadable.setdefault(e.filename or where, cannot_read(where, e))
        if names and (why := unsearched(where, names[0])):
            self.unreadable.setdefault(where, why)
            names, kinds = [], {}
        names.sort()
        if self.walking and folder not in self._subfolders_of:
            self._subfolders_of[folder] = [n for n in kinds
                                           if not n.startswith(".") and _folder(folder, n, kinds)]  # fmt: skip
            self._subfolders_of[folder].sort()
        self._last = (folder, (names, kinds))
        return names, kinds


def _folder(folder: str, name: str, kinds: dict[str, bool | None]) -> bool:
    """Whether ``name`` in ``folder`` (listed with ``kinds``: :meth:`_Folders._listing`) is a
    folder or a link to one (followed once, the answer kept in ``kinds``)."""
    kind = kinds.get(name, False)
    if kind is None:
        kind = kinds[name] = os.path.isdir(os.path.join(folder, name))
    return kind
