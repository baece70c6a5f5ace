"""Where a run's results go: every output path checked before any work
(:func:`check_outputs`), and the end of a run (:func:`finish`): the scores reported, then the
JSON, then the figure, so that a file that cannot be written loses no numbers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LoftUpError, UsageError
from ..paths import check_file_output, check_folder_output, figure_beside

if TYPE_CHECKING:
    from .config import EvalConfig

__all__ = ["check_file_output", "check_folder_output", "check_outputs", "figure_path", "finish"]


def check_outputs(cfg: EvalConfig) -> None:
    """UsageError unless every file the run writes can be: ``--json``, the figure,
    ``--save-masks`` and the feature cache, checked before any work, not after it."""
    if cfg.json and cfg.json != "-":
        check_file_output(cfg.json, "--json", example="results.json")
    if cfg.figure:
        check_file_output(cfg.figure, "--figure", example="figure.png")
    else:  # a path the user did not name: only a figure loftup drew is replaced there
        from ..figure_mark import check_replaceable

        check_file_output(figure_path(cfg), "the figure", "give --figure another path")
        beside = cfg.json if cfg.json and cfg.json != "-" else None
        by = f"the figure of --json {cfg.json}" if beside else "the run's figure (its default name)"
        check_replaceable(figure_path(cfg), by, beside=beside, own=is_eval_results)
    if cfg.json and cfg.json != "-" and _same_file(cfg.json, figure_path(cfg)):
        raise UsageError(
            f"--json {cfg.json} is where the figure would go too, and it would overwrite the "
            "numbers: give the JSON a .json name, or --figure another path"
        )
    if cfg.save_masks:
        from .mask_folder import check_masks_folder, check_outside_masks

        check_masks_folder(cfg.save_masks, cfg.root)  # not in --root, nor another's files
        outputs = {"--json": cfg.json, ("--figure" if cfg.figure else "the figure"): figure_path(cfg),
                   "--cache-dir": cfg.cache_dir}  # fmt: skip
        check_outside_masks(
            cfg.save_masks, {k: str(v) for k, v in outputs.items() if v and v != "-"}
        )
    if cfg.cache_dir is not None:
        check_folder_output(str(cfg.cache_dir), "--cache-dir", " (or --no-cache)")


def is_eval_results(obj: dict) -> bool:
    """Whether ``obj`` (a JSON object) is the results ``loftup eval`` wrote: its task and
    dataset, and its ``run`` recording ``loftup_version`` (:func:`.report.run_info`), as every
    run's has since the first (an earlier version's figure beside them bears no mark)."""
    run = obj.get("run")
    return "task" in obj and "dataset" in obj and isinstance(run, dict) and "loftup_version" in run


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
            # ~ as checked (a ./~ folder was made); the user's link stays one
            write_json(Path(cfg.json).expanduser(), results, follow_links=True)
        option, target = ("--figure" if cfg.figure else "the figure"), figure
        draw(figure)
    except (OSError, TypeError, ValueError) as e:  # TypeError: a value JSON cannot hold
        why = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise LoftUpError(
            f"{option} {target} could not be written ({why}); the scores: {summary(results)}"
        ) from None
    return results


def _same_file(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def figure_path(cfg: EvalConfig) -> str:
    """Where the run's figure goes (``~`` expanded, as the paths are checked): ``cfg.figure``;
    else next to the JSON, its ``.json`` ending made ``.png`` (another ending kept, ``.png``
    added: runs/coco.loftup and runs/coco.bilinear both drew runs/coco.png); else
    ``eval_TASK_DATASET_BACKBONE_UPSAMPLER.png`` (without the backbone, two backbones' runs
    drew one file)."""
    if cfg.figure:
        return str(Path(cfg.figure).expanduser())
    if cfg.json and cfg.json != "-":
        return figure_beside(cfg.json)
    backbone, upsampler = _safe(cfg.backbone), _safe(cfg.upsampler)
    return f"eval_{cfg.task}_{cfg.dataset}_{backbone}_{_shortened(upsampler, cfg.upsampler)}.png"


def _safe(name: str) -> str:
    """``name`` as part of a file name: characters other than letters, digits, - and _ as _."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _shortened(safe: str, upsampler: str, limit: int = 100) -> str:
    """``safe`` (the upsampler, as a file name) where at most ``limit`` bytes, else its start
    and end around a short hash of ``upsampler``: a checkpoint's long path made a name over
    the file system's 255 bytes, refused though the user never chose it."""
    raw = safe.encode()
    if len(raw) <= limit:
        return safe
    digest = hashlib.sha256(upsampler.encode()).hexdigest()[:8]
    head = raw[:30].decode(errors="ignore")  # whole characters only
    tail = raw[-(limit - 40) :].decode(errors="ignore")
    return f"{head}-{digest}-{tail}"
