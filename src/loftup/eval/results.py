"""Where a run's results go: every output path checked before any work
(:func:`check_outputs`), and the end of a run (:func:`finish`): the scores reported, then the
JSON, then the figure, so that a file that cannot be written loses no numbers.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LoftUpError, UsageError

if TYPE_CHECKING:
    from .config import EvalConfig


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (a file or a folder)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be made in ``folder`` (made first where missing), or None."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        return f"{base} is a file, not a folder"
    try:  # what writing will do: a file in it (os.access says yes to root on a read-only disk)
        fd, tmp = tempfile.mkstemp(dir=base, prefix=".loftup-write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        return f"{base} cannot be written ({e.strerror or e})"
    return None


def check_file_output(path: str, option: str, fix: str = "choose another path") -> None:
    """UsageError unless the file ``path`` (given as ``option``) can be written: it is not a
    folder, and its folder exists or can be made, and takes new files."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name, e.g. {path}/out")
    problem = _folder_problem(target.parent)
    if problem:
        raise UsageError(f"{option} {path} cannot be written: {problem}; {fix}")


def check_folder_output(path: str, option: str, alternative: str = "") -> None:
    """UsageError unless the folder ``path`` (given as ``option``) exists or can be made and
    takes new files."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{option} {path} is a file; give a folder")
    problem = _folder_problem(target)
    if problem:
        raise UsageError(
            f"{option} {path} cannot be written: {problem}; choose another folder{alternative}"
        )


def check_outputs(cfg: EvalConfig) -> None:
    """UsageError unless every file the run writes can be: ``--json``, the figure,
    ``--save-masks`` and the feature cache, checked before any work, not after it."""
    if cfg.json and cfg.json != "-":
        check_file_output(cfg.json, "--json")
    if cfg.figure:
        check_file_output(cfg.figure, "--figure")
    else:
        check_file_output(figure_path(cfg), "the figure", "give --figure another path")
    if cfg.json and cfg.json != "-" and _same_file(cfg.json, figure_path(cfg)):
        raise UsageError(
            f"--json {cfg.json} is where the figure would go too, and it would overwrite the "
            "numbers: give the JSON a .json name, or --figure another path"
        )
    if cfg.save_masks:
        check_folder_output(cfg.save_masks, "--save-masks")
    if cfg.cache_dir is not None:
        check_folder_output(str(cfg.cache_dir), "--cache-dir", " (or --no-cache)")


def finish(cfg: EvalConfig, results: dict, draw, report=None) -> dict:
    """The end of a run: ``report(results)`` first (the command line prints the scores), then
    the JSON, then the figure (``draw(path)``), so that a failure to write loses no numbers: it
    names the file, and its message carries the scores."""
    from .report import summary, write_json

    figure = figure_path(cfg)
    results["figure"] = str(figure)
    if report is not None:
        report(results)
    option, target = "--json", cfg.json
    try:
        if cfg.json and cfg.json != "-":
            write_json(cfg.json, results)
        option, target = ("--figure" if cfg.figure else "the figure"), figure
        draw(figure)
    except OSError as e:
        raise LoftUpError(
            f"{option} {target} could not be written ({e.strerror or e}); the scores: "
            f"{summary(results)}"
        ) from None
    return results


def _same_file(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def figure_path(cfg: EvalConfig) -> str:
    """Where the run's figure goes: ``cfg.figure``, else next to the JSON, else a named PNG."""
    if cfg.figure:
        return cfg.figure
    if cfg.json and cfg.json != "-":
        return str(Path(cfg.json).with_suffix(".png"))
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in cfg.upsampler)
    return f"eval_{cfg.task}_{cfg.dataset}_{safe}.png"
