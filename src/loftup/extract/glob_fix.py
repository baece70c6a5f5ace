"""What to give instead of a glob of ``loftup upsample`` that matched folders and no file
(``'cams/*'`` over the cameras' folders): :func:`folders_fix`, each offer tried first by the
collection the command runs on it."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ..errors import LoftUpError
from ..io import IMAGE_SUFFIXES


def folders_fix(spec: str, folders: list[Path]) -> str:
    """The end of the message for the glob ``spec`` that matched ``folders`` and no file: what
    to give instead that takes the images their searches find (as each folder given would be
    searched: sub-folders, links to folders), all and no other, without a refusal: the first
    of these that does, by :func:`~.inputs.collect_inputs` run on it:

    - a glob of the files in them, of their images' suffix (``cams/*/*.png``, as written: a
      glob's ``*.jpg`` does not match ``x.JPG``), or ``cams/*/*`` (the command keeps the
      images), or of the files under them, ``cams/*/**/*``;
    - the folder that holds them (whose sub-folders are kept in the output names, where a glob
      of their files was refused: images of one name, ``cams/a/0001.png``, ``cams/b/0001.png``);
    - else each folder to a run of its own, saying what that folder's search would take in
      (a sibling not matched, ``cams/a*`` beside ``cams/b``) or leave out (a hidden folder)."""
    from .inputs import _images_under, disk_key  # inputs imports this module

    images, suffixes = [], set()
    for folder in folders:
        found = _images_under(folder)[0]
        images += found
        suffixes.update(p.suffix for p in found if p.parent == folder)
    if not images:  # no offer could find one (and a glob of none would come back here)
        return f"no image file is found in them or under them ({', '.join(IMAGE_SUFFIXES)})"
    want = {os.path.realpath(p): p for p in images}  # the file itself, as a job's path is
    base = spec.rstrip("/" + os.sep) or spec
    globs = [("in", os.path.join(base, f"*{s}")) for s in suffixes if len(suffixes) == 1]
    globs += [("in", os.path.join(base, "*"))] * bool(suffixes)
    globs.append(("under", os.path.join(base, "**", "*")))
    refused = False
    for where, files in globs:  # each matches a file: not folders only, not back here
        jobs = _collected(files)
        refused = refused or jobs is None
        if jobs is not None and _paths(jobs) == want.keys():
            return (
                f"give a folder to search it (sub-folders too), or a glob of the files {where} "
                f"them ({files})"
            )
    named = {disk_key(p.name): p.name for p in reversed(want.values())}  # (the first's name)
    shared = Counter(disk_key(p.name) for p in want.values())
    shared = [named[k] for k in sorted(k for k, n in shared.items() if n > 1)]  # as on disk
    why = "a glob of their files would give two of them one output name; " * refused
    if shared:
        why = (
            f"their images share names ({shared[0]}{', ...' * (len(shared) > 1)}), which a "
            f"glob of their files would give one output name; "
        )
    holder = os.path.commonpath([os.fspath(f) for f in folders]) or os.curdir
    jobs = None if os.path.dirname(holder) == holder else _collected(holder)  # not all of /
    got = _paths(jobs or [])
    if jobs is not None and got == want.keys():
        them = "it" if len(folders) == 1 else "the folder that holds them"
        return f"{why}give {them}, whose sub-folders are kept in the output names ({holder})"
    each = f"{why}give each folder to a run with an output folder of its own"
    if jobs is None:  # refused too (or the file system's root, not searched whole)
        return each
    other = next((j.given for j in jobs if os.fspath(j.path) not in want), None)
    if other is not None:
        return f"{each} (the folder that holds them holds other images too: {other})"
    left = next(p for real, p in want.items() if real not in got)
    hidden = any(n.startswith(".") for n in Path(os.path.relpath(left, holder)).parts)
    return f"{each} (a search of {holder} leaves out {left}{', hidden' * hidden})"


def _collected(spec: str) -> list | None:
    """The jobs ``loftup upsample`` takes from ``spec`` alone, None where it refuses them."""
    from .inputs import collect_inputs

    try:
        return collect_inputs([spec])[0]
    except LoftUpError:
        return None


def _paths(jobs: list) -> set[str]:
    """The files themselves of ``jobs``."""
    return {os.fspath(job.path) for job in jobs}
