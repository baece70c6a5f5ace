"""Every begun run folder of an experiment checked before any training: those that cannot be
reused or gone on with (other settings, more steps than asked for, a stage-2 run from another
number of stage-1 steps) are named all at once, with the runs that start from them. Checked one
by one as the runs came, a settings change named seed 0's folder only: a 3-seed experiment took
three reruns, with hours of training between the refusals."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LoftUpError
from .run_folders import (
    RunRefused,
    _begun_from,
    _check_init_steps,
    _check_inputs,
    _check_same,
    _check_steps,
    _finished,
    _load_step,
)
from .runs import stage_configs
from .settings import ExperimentSettings


def check_begun(s: ExperimentSettings, variants, train_root: Path, runs: Path, inputs) -> None:
    """Refuse, naming each of them (absolute) and the begun runs that start from them, the
    begun run folders of ``variants`` at every seed of ``s`` (under ``runs``) that
    :func:`~.runs.run_stage` would refuse; a single one as it refuses it. First those trained
    on other ``inputs`` (:func:`~.data.run_inputs`), as :func:`~.runs.run_variant` does."""
    from ..train.config import load_config

    runs = Path(os.path.abspath(runs))
    _check_inputs(runs, inputs)
    refused: dict[Path, RunRefused] = {}
    seen = set()  # a stage-1 run that variants share: looked at once
    for seed in range(s.seeds):
        for v in variants:
            one, two = stage_configs(s, v, seed, train_root, runs)
            for config in (one, two):
                out = Path(config["log"]["out_dir"]) if config else None
                if out is None or out in seen:
                    continue
                if not (out / "checkpoint.pt").exists() and not _finished(out):
                    continue  # not begun, or begun afresh
                seen.add(out)
                try:
                    _check_folder(load_config(config), out, one["max_steps"])
                except RunRefused as e:
                    refused[out] = e
    if not refused:
        return
    also = []
    for out in refused:
        also += [f for f in _begun_from(out.parent.parent, out) if f not in [*refused, *also]]
    if len(refused) == 1:
        (e,) = refused.values()
        raise RunRefused(e.folder, e.why, also)
    raise LoftUpError(_many(list(refused.values()), also))


def _check_folder(cfg, out: Path, stage1_steps: int) -> None:
    """What :func:`~.runs.run_stage` checks of a begun folder before it reuses or resumes it
    (and :func:`~.run_folders._check_init_steps` of a stage-2 one)."""
    step = _load_step(out)["step"]  # first: a folder whose checkpoint is gone, whatever else
    if _finished(out) or (out / "config.yaml").is_file():
        _check_same(cfg, out)
    if cfg.stage == 2:
        _check_init_steps(out, stage1_steps)
    _check_steps(out, step, cfg.max_steps)


def _many(refused: list[RunRefused], also: list[Path]) -> str:
    """One line naming the refused folders, those of one reason together, then the fix."""
    why: dict[str, list[str]] = {}
    for e in refused:
        why.setdefault(e.why, []).append(str(e.folder))
    said = [
        f"each of {', '.join(folders)} {reason}" if len(folders) > 1 else f"{folders[0]} {reason}"
        for reason, folders in why.items()
    ]
    fix = "choose another --out or delete those folders"
    if also:
        fix += f" and those of the runs that start from them ({', '.join(map(str, also))})"
    return f"{len(refused)} run folders cannot be reused or gone on with: {'; '.join(said)}; {fix}"
