"""Where training images are: the data folder a run is given (``--data``, ``data.root``), with
the hints of its errors (a ``$VAR`` taken as written, archives not extracted), and the pictures a
run draws that are not training images."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import UsageError
from ..paths import check_visible
from .paths import home_expanded


def data_folder(root: str | os.PathLike) -> Path:
    """The training images' folder, or a :class:`LoftUpError` naming it if there is none. A
    world of ``loftup world scenes`` (a ``world.json`` beside ``sa1b/`` and ``labels/``) trains
    on its ``sa1b/`` only: its label maps are PNG images too, but not training images."""
    if not str(root).strip():
        raise UsageError(
            "no data folder given: pass --data DIR or data.root=DIR, the folder of training images"
        )
    given, root = os.fspath(root), home_expanded(root, "data folder")
    check_visible(root, "data folder")
    if os.path.isfile(root):  # os.path: pathlib's raises where a folder is not searchable
        raise UsageError(
            f"data folder {root} is a file; data.root (--data) is the folder of training images "
            f"(searched recursively), e.g. {root.parent}"
        )
    if not os.path.isdir(root):
        raise UsageError(
            f"data folder {root} does not exist (pass --data /path/to/images, or data.root=)"
            f"{_variable_hint(given)}"
        )
    if (root / "world.json").is_file() and (root / "sa1b").is_dir():
        return root / "sa1b"
    return root


def _variable_hint(given: str) -> str:
    """For a missing data folder whose path holds a ``$VAR``: where such a variable is expanded
    and where not (and the folder it would name, where that one exists), else ""."""
    if not re.search(r"\$(\w|\{)", given):
        return ""
    expanded = Path(os.path.expanduser(os.path.expandvars(given)))  # never raises
    there = f" (expanded here it is {expanded}, which exists)" if expanded.is_dir() else ""
    return (
        f"; its $ was taken as written{there}: on the command line, let the shell expand it "
        '(--data "$DATA/x" or unquoted, not in single quotes); from Python, expand it first '
        "(os.path.expandvars); a config file's data.root and a data.root= override expand "
        "$VAR themselves"
    )


#: Archives a data folder may hold instead of images (SA-1B comes as sa_NNNNNN.tar shards).
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")


def _archives_hint(root: Path) -> str:
    """For a folder without images: where it holds archives (SA-1B's tar shards, downloaded
    and not extracted), how many and how to extract them, else ""."""
    found = sorted(p for p in root.rglob("*") if p.name.lower().endswith(ARCHIVES) and p.is_file())
    if not found:
        return ""
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    return (
        f"; it holds archives ({found[0].name}{more}), whose images are not read: extract them "
        f"first (an SA-1B shard: tar -xf {found[0]} -C {found[0].parent})"
    )


def drawn_by_a_run(image: Path) -> bool:
    """Whether ``image`` is a picture that ``loftup train`` drew (``RUN/viz/step_N.png``, beside
    the run's ``run.json``): not a training image, though a run whose ``--out`` lies inside its
    data folder finds it there (on ``--resume``, which would then see other data, and in every
    later run on that folder)."""
    folder = image.parent
    return (
        folder.name == "viz"
        and image.name.startswith("step_")
        and (folder.parent / "run.json").is_file()
    )
