"""How a folder is searched for images, and what the search passes over, the same for
``loftup upsample``'s folders and globs and for training's listings (:func:`walk`). Imports
nothing of loftup."""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import PurePath


def fsck_folder(parent: str | os.PathLike, name: str) -> bool:
    """Whether ``parent/name`` is the ``lost+found`` folder fsck keeps at the top of a disk:
    no images of anyone's, and readable by root only, so that searching a mounted disk as
    anyone else ended "skipped /mnt/disk/lost+found: a folder that cannot be read", status 1.
    One elsewhere (not directly under a mount point) is searched as any folder. ``parent``
    may be a link to the mount point (a disk linked into the data folder): os.path.ismount
    says False for any link, so its real folder is asked."""
    return name == "lost+found" and os.path.ismount(os.path.realpath(parent))


def walk(
    tops: list[str],
    scan: Callable[[str], tuple[list[str], object] | None],
    *,
    breadth_first: bool = False,
    follow: Callable[[str], bool] | None = None,
) -> Iterator[tuple[str, object]]:
    """(folder, what ``scan`` found in it) for ``tops`` and each folder under them, as
    ``loftup upsample``'s folders and globs and training's listings search them: ``scan(folder)``
    lists a folder ((the names of its sub-folders, links to folders too; what else it found),
    or None where it cannot be read, which it says), and the search goes into each sub-folder
    but hidden ones and fsck's ``lost+found`` at the top of a disk (:func:`fsck_folder`), in
    name order. How far and in which order, each search's own:

    - ``breadth_first``: a folder's sub-folders after all folders as near the tops (a
      glob's ``**``: a folder reached twice keeps its shortest name); else depth first, each
      sub-folder searched whole before the next (``os.walk``'s order);
    - without ``follow``, each real folder searched the first time it is reached, not again by
      another name (a link back up is not gone round, a folder linked twice read once):
      training's listing and a glob;
    - ``follow(path)``: whether to go into the sub-folder ``path``, instead (``loftup
      upsample``'s folders: a name's choice must not depend on the order folders are reached
      in)."""
    once = follow is None
    seen: set[str] = set()
    queue = deque(tops if breadth_first else reversed(tops))
    while queue:
        folder = queue.popleft() if breadth_first else queue.pop()
        if once:
            real = os.path.realpath(folder or os.curdir)
            if real in seen:  # a link back up, or a folder linked twice
                continue
            seen.add(real)
        listed = scan(folder)
        if listed is None:
            continue
        dirs, found = listed
        yield folder, found
        subs = [os.path.join(folder, d) for d in sorted(dirs)
                if not d.startswith(".") and not fsck_folder(folder, d)]  # fmt: skip
        if follow is not None:
            subs = [sub for sub in subs if follow(sub)]
        queue.extend(subs if breadth_first else reversed(subs))  # depth first: the first on top


def path_key(path: str | os.PathLike) -> tuple[str, ...]:
    """The key that puts listed images in order, the same for ``loftup upsample``'s folders
    and globs and for training's listings: by path, part by part (a folder's images among its
    sibling files and folders by its name: ``set/x.png``, ``set-b/y.png``, ``set.png``; as whole
    strings ``-`` and ``.`` sort before ``/``, which put ``set-b`` and ``set.png`` first), each
    name in plain code-point order (``B.png`` before ``a.png``, ``img10`` before ``img2``): the
    order training has always listed in, so a seed picks the images it picked before; a
    "natural" order has no one definition (``img02``, ``img2``, case, other digits)."""
    return PurePath(path).parts


def entry_is(test: Callable[[], bool]) -> bool:
    """``entry.is_dir()`` or ``entry.is_file()`` of a listed entry (links followed), False
    where that cannot be told, as os.walk counts it."""
    try:
        return test()
    except OSError:
        return False


def in_a_loop(link: str | os.PathLike) -> bool:
    """Whether following ``link`` goes round in a loop of links (ELOOP): no file at its end,
    though not one moved or deleted either."""
    try:
        os.stat(link)
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


def special_kind(mode: int) -> str:
    """What a file of ``mode`` (``os.stat(...).st_mode``) that is no regular file nor folder
    is: a pipe, a socket or a device (each was "a pipe or a device")."""
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "no regular file"


def special_at(path: str | os.PathLike) -> str | None:
    """What is at ``path`` (a link followed) where it is no regular file nor folder: a pipe, a
    socket or a device, in :func:`special_kind`'s words; None for a file, a folder, or where
    nothing can be looked at (not there, a link to nothing). A name no file can have (a NUL
    byte) is os.stat's ValueError, raised."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else special_kind(mode)


def _blocked(path: str | os.PathLike) -> tuple[str, str] | None:
    """(the folder on the way to ``path`` that this user may not search, the name looked up in
    it), where looking at ``path`` fails for that (EACCES, EPERM); else None. The path is
    walked as written (``locked/../ok.png`` needs ``locked`` searched: os.path.realpath
    resolves the ``..`` first, and named the folder above), each link followed one step at a
    time; a relative one from the current folder, as the OS does (a folder above it, which
    need not be searchable, is not looked through). A name os.stat refuses (a NUL byte in it:
    ValueError) is no file, so None."""
    try:
        os.stat(path)
        return None
    except PermissionError:
        pass
    except (OSError, ValueError):
        return None
    path = os.fsdecode(path)
    folder = os.sep if os.path.isabs(path) else ""  # "": the current folder
    names = deque(path.split(os.sep))
    for _ in range(1000):  # each name, a link's too (a loop of links ends here)
        if not names:
            break
        name = names.popleft()
        if not name:  # "a//b", a leading or trailing /
            continue
        here = os.path.join(folder, name)
        try:  # os.stat, not os.lstat: the one call the conftest fixture refuses as root
            mode = os.stat(here, follow_symlinks=False).st_mode
        except PermissionError:
            return os.path.abspath(folder or os.curdir), name
        except OSError:
            break
        if stat.S_ISLNK(mode):
            target = os.readlink(here)
            folder = os.sep if os.path.isabs(target) else folder
            names.extendleft(reversed(target.split(os.sep)))
        elif name == os.pardir:  # no link in ``folder``: its parent, as the OS's; / its own
            up = os.path.basename(folder) in ("", os.pardir)  # the current folder, or above it
            folder = folder if folder == os.sep else here if up else os.path.dirname(folder)
        elif name != os.curdir:
            folder = here
    real = os.path.realpath(path)  # none found: the folder of the file, as far as resolved
    return os.path.dirname(real), os.path.basename(real)


def unsearchable(path: str | os.PathLike) -> str | None:
    """The folder on the way to ``path`` (links followed) that this user may not search (no
    ``x`` permission for them), where looking at ``path`` fails for that (EACCES, EPERM): a
    link into another user's folder of mode 700, which is there, though unseen; else None."""
    blocked = _blocked(path)
    return blocked and blocked[0]


def where_it_leads(link: str | os.PathLike, gone: str = "does not exist") -> str:
    """ "a link to TARGET, which ..." for ``link``, which leads to no file it can see: round a
    loop of links, into a folder this user may not search (:func:`unsearchable`; it was said
    not to exist), or to nothing (``gone`` says so)."""
    return _leads(link, unsearchable(link), gone)


def _leads(link: str | os.PathLike, blocked: str | None, gone: str) -> str:
    """:func:`where_it_leads`, from the folder that blocks ``link`` (None: none)."""
    if blocked is not None:
        end = f"this user may not look at (permission denied: {blocked} cannot be searched)"
    else:
        end = "leads back to it (a loop)" if in_a_loop(link) else gone
    return f"a link to {os.readlink(link)}, which {end}"


def _fix(blocked: str, other: str) -> str:
    """The fix for a path behind ``blocked``, a folder this user may not search."""
    return f"have {blocked} made searchable for this user (chmod a+x, by its owner) or {other}"


def permission_denied(
    path: str | os.PathLike, other: str = "use a copy of it where this user may look"
) -> str | None:
    """Why ``path``, a user's, cannot be looked at where it lies in a folder this user may not
    search (:func:`unsearchable`; pathlib's exists and is_file raise a bare PermissionError for
    it, os.path's say it is not there), naming the folder and the fix (``other``: what else
    may be done), a link said as one; else None (one os.stat for a path that is fine)."""
    blocked = unsearchable(path)
    return None if blocked is None else _denied(path, blocked, other)


def _denied(path: str | os.PathLike, blocked: str, other: str) -> str:
    """:func:`permission_denied`'s reason, from the folder ``blocked`` that hides ``path``."""
    if os.path.islink(path):
        return f"{_leads(path, blocked, '')}; {_fix(blocked, 'remove the link')}"
    return f"permission denied ({blocked} cannot be searched by this user); {_fix(blocked, other)}"


def absent(path: str | os.PathLike) -> bool:
    """Whether ``path``, behind a folder this user may not search (:func:`unsearchable`), is
    surely not there: that folder can be listed and holds no entry of the next name on the way
    (a glob's ``t/*/b``: ``t/noexec/b`` where ``t/noexec`` has no ``b``). False where nothing
    hides ``path``, or where what hides it cannot be listed either (it may be there)."""
    return _absent_from(_blocked(path))


def _absent_from(blocked: tuple[str, str] | None) -> bool:
    """:func:`absent`, from what :func:`_blocked` found."""
    if blocked is None or blocked[1] in (os.curdir, os.pardir):  # always there
        return False
    blocked, first = blocked
    try:
        with os.scandir(blocked) as listing:
            return not any(entry.name == first for entry in listing)
    except OSError:
        return False


def hidden(
    path: str | os.PathLike, other: str = "use a copy of it where this user may look"
) -> str | None:
    """:func:`permission_denied`'s reason for ``path``, a user's, where it is not seen to be
    absent (:func:`absent`: its folder can be listed, not searched, and lacks it, which the
    caller says is missing); else None."""
    blocked = _blocked(path)
    if blocked is None or _absent_from(blocked):
        return None
    return _denied(path, blocked[0], other)


def cannot_read(folder: str | os.PathLike, error: OSError, fix: str = "") -> str:
    """Why ``folder`` cannot be listed (``error``: what os.scandir raised), as every search
    says it; one in a folder this user may not search names that folder and the fix (it was
    "Permission denied" alone, about a folder that may itself be readable). ``fix``: what to
    do where nothing above it refuses it (its own mode), added after it."""
    why = isinstance(error, PermissionError) and permission_denied(folder)
    if why:
        return f"a folder that cannot be read: {why}"
    return f"a folder that cannot be read ({error.strerror or error}){'; ' if fix else ''}{fix}"


def unsearched(folder: str | os.PathLike, name: str) -> str | None:
    """Why the entries of ``folder``, just listed (``name``: one of them), cannot be looked at:
    this user may read it but not search it (no ``x``: mode 644), so that none of its files
    opens and none of its folders lists (its images were each "gone since its folder was
    listed", and training listed them, to fail reading them); None where they can (one
    os.stat, the link not followed)."""
    path = os.path.join(folder, name)
    try:
        os.stat(path, follow_symlinks=False)
    except PermissionError as e:
        why = permission_denied(path) or f"{e.strerror or e}"
        return f"a folder whose files cannot be looked at: {why}"
    except OSError:
        pass
    return None


def link_to_nothing(link: str | os.PathLike) -> str:
    """Why ``link``, of an image's name, leading nowhere (or round a loop, or where this user
    may not look), is passed over."""
    blocked = unsearchable(link)
    fix = "fix or remove the link" if blocked is None else _fix(blocked, "remove the link")
    return f"{_leads(link, blocked, 'does not exist (moved or deleted?)')}; {fix}"


def not_regular(path: str | os.PathLike) -> str:
    """Why ``path``, of an image's name but a pipe, socket or device, is passed over."""
    kind = special_kind(os.stat(path).st_mode)
    return f"not a regular file ({kind}); remove it or replace it with the image file"


def passed_over(path: str | os.PathLike) -> str:
    """Why ``path``, of an image's name but no regular file, is passed over by a search of a
    folder (``loftup upsample``'s and training's, in the same words; a file given on the
    command line is told to pass the image itself instead)."""
    if os.path.islink(path) and not os.path.exists(path):
        return link_to_nothing(path)
    try:
        return not_regular(path)
    except PermissionError as e:  # in a folder this user may list but not search: that one
        return permission_denied(path) or f"{e.strerror or e}"
    except OSError as e:  # deleted since the folder was listed: no crash of the listing
        return f"gone since its folder was listed ({e.strerror or e})"
