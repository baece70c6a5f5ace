"""What to give instead of a glob of ``loftup upsample`` that matched folders and no file
(``'cams/*'`` over the cameras' folders): :func:`folders_fix`, from a look at what they hold."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ..io import IMAGE_SUFFIXES
from ..listing import entry_is


def folders_fix(spec: str, folders: list[Path]) -> str:
    """The end of the message for the glob ``spec`` that matched ``folders`` and no file: what
    to give instead, that finds their images.

    Where two of the folders hold images of one name (``cams/a/0001.png``, ``cams/b/0001.png``),
    a glob of their files would be refused (their outputs would share a name): the folder that
    holds them, whose sub-folders are kept in the output names. Otherwise a glob of the files
    in them, of the suffix their images have (``cams/*/*.png``, as written: a glob's ``*.jpg``
    does not match ``x.JPG``), ``cams/*/*`` where they have several (the command keeps the
    images), ``cams/*/**/*`` where none is in the folders themselves but deeper."""
    from .inputs import disk_key

    suffixes, stems = set(), Counter()
    for folder in folders:
        names = _images_in(folder)
        suffixes.update(os.path.splitext(n)[1] for n in names)
        stems.update({disk_key(os.path.splitext(n)[0]) for n in names})  # once a folder
    if not suffixes:  # all deeper: their ``**/*``'s outputs are named by the file's name alone
        stems = Counter(disk_key(n) for f in folders for n in _images_deeper(f))
    shared = sorted(s for s, n in stems.items() if n > 1)
    if shared:
        holder = os.path.commonpath([os.fspath(f) for f in folders]) or "."
        why = (
            f"their images share names ({shared[0]}{', ...' * (len(shared) > 1)}), which a glob "
            f"of their files would give one output name"
        )
        each = f"{why}; give each folder to a run with an output folder of its own"
        other = _other_image(holder, folders)
        if other is not None:  # the holder would take it in too: each folder on its own
            return f"{each} (the folder that holds them holds other images too: {other})"
        hidden = [f for f in folders if _hidden_under(f, holder)]
        if hidden:  # the holder's search would leave it out
            return f"{each} (a folder's search leaves hidden folders out: {hidden[0]})"
        return (
            f"{why}; give the folder that holds them, whose sub-folders are kept in the output "
            f"names ({holder})"
        )
    base = spec.rstrip("/" + os.sep) or spec
    if len(suffixes) == 1:
        files = os.path.join(base, f"*{suffixes.pop()}")
    else:
        files = os.path.join(base, "*" if suffixes else os.path.join("**", "*"))
    return f"give a folder to search it (sub-folders too), or a glob of the files in them ({files})"


def _images_in(folder: Path) -> list[str]:
    """The names of the image files in ``folder`` itself (not hidden: a glob's ``*`` leaves
    them out), none where it cannot be read (said by the search that matched it)."""
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries if _image_name(e.name) and entry_is(e.is_file)]
    except OSError:
        return []


def _other_image(holder: str, folders: list[Path]) -> str | None:
    """An image under ``holder`` (not hidden, as a folder's search leaves those out) that is
    in none of ``folders`` (a sibling the glob did not match: ``cams/a*`` beside ``cams/b``),
    None where it holds only theirs. Links to folders are followed, as the search of
    ``holder`` follows them (each real folder once: a link to one above ends)."""
    theirs = {os.path.normcase(os.path.abspath(f)) for f in folders}
    seen = set()
    for top, subs, names in os.walk(holder, followlinks=True):
        if os.path.realpath(top) in seen:  # a loop of links, or a folder reached twice
            subs[:] = []
            continue
        seen.add(os.path.realpath(top))
        subs[:] = [
            d
            for d in subs
            if not d.startswith(".")
            and os.path.normcase(os.path.abspath(os.path.join(top, d))) not in theirs
        ]
        for name in names:
            if _image_name(name):
                return os.path.join(top, name)
    return None


def _images_deeper(folder: Path) -> list[str]:
    """The names of the image files under ``folder``'s sub-folders, hidden ones left out (as
    a glob's ``*`` leaves them)."""
    names = []
    for top, subs, files in os.walk(folder):
        subs[:] = [d for d in subs if not d.startswith(".")]
        if top != os.fspath(folder):
            names += [n for n in files if _image_name(n)]
    return names


def _image_name(name: str) -> bool:
    """Whether ``name`` is an image file's that a glob's ``*`` matches (not hidden)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _hidden_under(folder: Path, holder: str) -> bool:
    """Whether ``folder`` is hidden below ``holder`` (it, or a folder between: ``.cams/a``)."""
    return any(part.startswith(".") for part in Path(os.path.relpath(folder, holder)).parts)
