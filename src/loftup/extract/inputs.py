"""The inputs of ``loftup upsample``: files, folders and globs -> jobs, each an image and the
stem of its outputs (:func:`collect_inputs`)."""

from __future__ import annotations

import glob
import os
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import LoftUpError
from ..io import IMAGE_SUFFIXES
from ..listing import (
    cannot_read,
    entry_is,
    hidden,
    link_to_nothing,
    passed_over,
    path_key,
    unsearched,
    walk,
)
from ..words import said as option_word
from .glob_fix import folders_fix
from .globs import search


@dataclass
class Job:
    """One input image (``path``: the file itself, links followed), the stem of its outputs
    (relative to the output folder), and ``given``: the image as the inputs name it (a link
    by its own name, not its target's; ``path`` where not said), which messages and the
    ``--viz`` title show."""

    path: Path
    stem: str
    given: Path | None = None

    def __post_init__(self):
        if self.given is None:
            self.given = self.path


def _images_under(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image files under ``folder``, and what there is no input, with the reason (for
    ``missing``: said, not passed over in silence): a link of an image's name to nothing (a
    moved or deleted file), a pipe or a device of an image's name, a folder that cannot be
    read, or read but not searched (said once, naming the folder to fix; its images, unseen,
    would be missing from the outputs; not fsck's ``lost+found`` at
    the top of a disk, :func:`~loftup.listing.fsck_folder`). Hidden ones and those in hidden
    folders left out (as a glob leaves them): macOS's ``._IMG_1.jpg`` companions and ``.ipynb_checkpoints`` copies
    are not images to compute, and the first cannot be read as one. Sub-folders that are links
    to folders elsewhere are searched too, as a glob's ``**`` searches them (a folder of links
    to the cameras' folders gave no image at all); a link the search would go round in, or to
    a folder it reaches anyway (whose files then have their own names), is not followed."""
    found, problems = [], []

    def scan(root: str) -> tuple[list[str], list[str]] | None:
        """(the sub-folders of ``root``, links to folders too; its other names), as os.walk
        lists them; None where it cannot be read (said in ``problems``)."""
        dirs, files = [], []
        try:
            with os.scandir(root) as entries:
                for entry in entries:
                    (dirs if entry_is(entry.is_dir) else files).append(entry.name)
        except OSError as e:
            problems.append((e.filename or root, cannot_read(root, e)))
            return None
        why = (dirs or files) and unsearched(root, (dirs or files)[0])
        if why:  # readable, not searchable: said once, not each image as "gone since listed"
            problems.append((root, why))
            return None
        return dirs, files

    def follow(sub: str) -> bool:  # not a link into the search, or round it: _reached
        return not _reached(Path(sub), folder)

    for root, files in walk([os.fspath(folder)], scan, follow=follow):
        found += [
            os.path.join(root, f)
            for f in files
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES
        ]
    files = []
    for p in sorted(map(Path, found), key=path_key):  # no link to nothing: one check each
        if os.path.isfile(p):  # False where it cannot be looked at (EACCES): said below
            files.append(p)
        else:  # as when given itself, not dropped: a link to nothing, a pipe, gone since listed
            problems.append((str(p), passed_over(p)))
    return files, problems


def _to_nothing(path: Path) -> bool:
    """Whether ``path`` is a link to nothing (its file moved or deleted)."""
    return os.path.islink(path) and not os.path.exists(path)


def _links_to_nothing(paths: list[Path]) -> list[tuple[str, str]]:
    """Each link of ``paths`` to nothing (or round a loop of links), with the reason it is no
    input (for ``missing``)."""
    return [(str(p), link_to_nothing(p)) for p in paths]


def _reached(sub: Path, folder: Path) -> bool:
    """Whether the sub-folder ``sub`` of a search of ``folder`` is a link to a folder that the
    search reaches without it, or goes round in: one under, or above, a folder on the way from
    ``folder`` to ``sub`` (their real folders, each searched whole)."""
    if not os.path.islink(sub):
        return False
    real = Path(os.path.realpath(sub))
    above = sub.parent
    while True:
        on_the_way = Path(os.path.realpath(above))
        if real.is_relative_to(on_the_way) or on_the_way.is_relative_to(real):
            return True
        if above == folder or above == above.parent:
            return False
        above = above.parent


def _is_image(path: Path) -> bool:
    """Whether ``path`` has an image file's suffix (what a folder or a glob is searched for)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def collect_inputs(
    specs: list[str], said_as: dict | None = None
) -> tuple[list[Job], list[tuple[str, str]]]:
    """Files, folders (searched recursively for images, hidden files and folders left out) and
    globs (their image files, as a folder's, a ``**`` going into each real folder once:
    :func:`.globs.search`; a file named is tried whatever its suffix) ->
    (jobs, unmatched specs with the reason: no such path, a glob or a folder of no image; and
    what a folder holds that is no input, :func:`_images_under`).

    Jobs are in path order (:func:`~loftup.listing.path_key`) with duplicates dropped (a file reached through several inputs is
    one job; two names of one file, a link beside its target, are two, ``x.jpg`` -> ``x.png``
    too; a link and its file of one name, ``links/x.png`` -> ``data/x.png``, are one), each
    named in messages as an input reached it (:attr:`Job.given`). An output stem is the file's
    name without its suffix, with the sub-folder kept for images found under a folder (a file reached through
    several inputs, ``photos photos/day1``, keeps its longest name, that of the outermost folder
    given, whatever the order of the inputs); when two inputs would
    share a stem (``a.jpg`` and ``a.png``, or ``A.jpg`` and ``a.png``: names are compared as a
    case-insensitive disk compares them, :func:`disk_key`) both keep their suffix (``a.jpg``,
    ``a.png``). Two files whose outputs would still have one name on such a disk
    (``cam1/0001.png`` and ``cam2/0001.png`` given as two folders, or ``A.png`` and ``a.png``)
    are refused (:class:`LoftUpError`), the fix naming the output folder as ``said_as`` says
    (:func:`loftup.words.said`).
    """
    found: dict[Path, tuple[Path, Path]] = {}  # the file in its real folder -> (name, path)
    real_folders: dict[Path, Path] = {}  # a folder as listed -> its real folder (_where)
    missing = []
    for spec in specs:
        p = Path(spec).expanduser()
        if os.path.isdir(p):  # os.path: False, not PermissionError, where it cannot be seen
            images, problems = _images_under(p)
            if not images and not problems:  # as a glob of no image is: named, not passed over
                kinds = ", ".join(IMAGE_SUFFIXES)
                missing.append((spec, f"a folder with no image file in it or under it ({kinds})"))
            missing += problems
            for f in images:
                _name(found, f, f.relative_to(p), real_folders)
        elif os.path.exists(p):
            _name(found, p, Path(p.name), real_folders)
        elif _to_nothing(p):  # was taken for a glob matching a folder ("give a folder ...")
            missing += _links_to_nothing([p])
        elif not glob.has_magic(spec) and (denied := hidden(p)):
            missing.append((str(p), denied))
        else:
            matched, unlisted = search(
                os.path.expanduser(spec)
            )  # and the folders it could not list
            matches = sorted(map(Path, matched), key=path_key)
            files, others = [], []
            for m in matches:  # one look at each match that is a file (200k of them)
                (files if os.path.isfile(m) else others).append(m)
            images = [m for m in files if _is_image(m)]  # a glob's .txt is no image, as a folder's
            folders = [m for m in others if os.path.isdir(m)]
            # a link to nothing, a pipe, one gone since the glob listed it: said, as in a folder
            passed = [m for m in others if _is_image(m) and not os.path.isdir(m)]
            missing += [(str(m), passed_over(m)) for m in passed]
            missing += unlisted  # as a folder's: named
            if files and not images:
                n, kinds = len(files), ", ".join(IMAGE_SUFFIXES)
                why = f"matches {n} file{'s' * (n > 1)}, none an image ({kinds})"
                missing.append((spec, f"{why}; name a file to read it as one"))
            elif not files and folders:  # folders only: "no such ... glob" was wrong, and no help
                n = len(folders)
                why = f"matches {n} folder{'s' * (n > 1)} and no file"
                missing.append((spec, f"{why}; {folders_fix(spec, folders)}"))
            elif not files and not passed and not unlisted:
                missing.append((spec, "no such file, folder or matching glob"))
            for f in images:
                _name(found, f, Path(f.name), real_folders)
    # as training lists them: by the paths as the inputs reached them, not by the real folders
    # (a linked sub-folder sorted by where its link points)
    items = sorted(found.items(), key=lambda kv: path_key(kv[1][1]))
    # a link and the file it names, given through two inputs under one name (links/x.png ->
    # data/x.png): one file, one output name, so one job, not two refused as sharing a name.
    # Names, suffixes and all: a link beside its file with another suffix (x.jpg -> x.png) is
    # a name of its own, two jobs (x.jpg, x.png) as two files of one stem are, and as it was
    seen, unique = set(), []
    for where, (rel, given) in items:
        real = _real(where)  # the key here, the job's path below
        key = (real, disk_key(str(rel)))
        if key not in seen:
            seen.add(key)
            unique.append((real, rel, given))
    stems = [str(rel.with_suffix("")) for _, rel, _ in unique]
    keys = [disk_key(s) for s in stems]
    clash = {k for k, n in Counter(keys).items() if n > 1}  # stems.count: hours for 1M files
    jobs = [
        Job(real, str(rel) if k in clash else s, given)
        for (real, rel, given), s, k in zip(unique, stems, keys)
    ]
    _refuse_shared_names(jobs, option_word("out", said_as), option_word("resume", said_as))
    said = set()  # a pipe found by two inputs (photos photos/*) is said once, as it is one job
    return jobs, [m for m in missing if not (m[0] in said or said.add(m[0]))]


def disk_key(name: str) -> str:
    """``name`` as a case-insensitive disk (macOS's APFS, Windows' NTFS) compares file names:
    ``A.pt`` and ``a.pt`` are one file there, and so are the two Unicode spellings of ``é``
    (one code point, or ``e`` and a combining accent; APFS ignores the difference)."""
    return unicodedata.normalize("NFC", name).casefold()


def _refuse_shared_names(jobs: list[Job], out: str, resume: str) -> None:
    """Refuse two jobs whose outputs would be one file, on any disk (``cam1/0001.png`` and
    ``cam2/0001.png`` given as two folders: both ``0001``) or on a case-insensitive one
    (``A.png`` and ``a.png``: ``A.pt`` and ``a.pt``): one would overwrite the other's outputs,
    and ``--resume``, which trusts the names it finds, would take one's for both."""
    first: dict[str, Job] = {}
    for job in jobs:
        other = first.setdefault(disk_key(job.stem), job)
        if other is job:
            continue
        if other.stem == job.stem:
            fix = (  # one folder's a.png and a.png.jpg ("a.png": a.jpg beside them keeps suffixes)
                "rename one of them"
                if _where(other.given).parent == _where(job.given).parent
                else "give the folder that holds both (its sub-folders are kept in the names)"
            )
            raise LoftUpError(
                f"{other.given} and {job.given} would write outputs of one name ({job.stem}); "
                f"{fix}, or run them into separate {out} folders"
            )
        raise LoftUpError(
            f"{other.given} and {job.given} would write outputs whose names differ only in letter "
            f"case or Unicode form ({other.stem}, {job.stem}): one file on a case-insensitive "
            f"disk (macOS, Windows), and {resume} would take one's for the other's; rename one of "
            f"them, or run them into separate {out} folders"
        )


def _where(path: Path, real_folders: dict[Path, Path] | None = None) -> Path:
    """``path`` as named in its real folder: the folders on the way resolved, not the file, so
    that a file reached through several inputs (or linked folders) is one, and a link to a
    file is a name of its own (``latest.png`` linked to ``0099.png`` beside it: both names get
    their outputs; one was dropped, ``0099``'s when ``latest`` sorted first). A folder is
    resolved once in ``real_folders`` (the folder as listed -> its real folder; one listing's
    own: a link may point elsewhere by the next), not once a file (200k files in 4 folders:
    17 s of CPU to list them, 10 s now)."""
    real_folders = {} if real_folders is None else real_folders
    folder = path.parent
    real = real_folders.get(folder)
    if real is None:
        real = real_folders[folder] = folder.resolve()
    return real / path.name


def _real(where: Path) -> Path:
    """The file itself of ``where`` (a name in its real folder, :func:`_where`): the target of
    a link, resolved; ``where`` otherwise (its folders are real: no resolving them again)."""
    return where.resolve() if os.path.islink(where) else where


def _name(
    found: dict[Path, tuple[Path, Path]], path: Path, rel: Path, real_folders: dict[Path, Path]
) -> None:
    """Record ``rel`` as the name of the file ``path`` (as an input reached it) in ``found``,
    under the file in its real folder (:func:`_where`), unless it already has a longer one
    (more folders; of two as long, the first in sort order): the name of a file that several
    inputs reach does not depend on their order, and is the one that keeps it apart from the
    other files of the outermost folder (``photos/day1/x.png`` is ``day1/x`` given
    ``photos/day1 photos``, where ``photos/x.png`` is ``x``). ``path`` goes with its name."""
    where = _where(path, real_folders)
    old = found.get(where)
    if old is None or (-len(rel.parts), str(rel)) < (-len(old[0].parts), str(old[0])):
        found[where] = (rel, path)
