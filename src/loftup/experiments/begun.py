"""Every begun run folder of an experiment checked before any training: those that cannot be
reused or gone on with (other settings, more steps than asked for, a stage-2 run from another
number of stage-1 steps, or from another stage-1 run than the finished one it is to start from)
are named all at once, with the runs that start from them. Checked one
by one as the runs came, a settings change named seed 0's folder only: a 3-seed experiment took
three reruns, with hours of training between the refusals."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LoftUpError
from ..train.checkpoint import has_checkpoint
from .configs import stage_configs
from .folder_reads import FolderReads
from .run_folders import (
    RunRefused,
    _begun_from,
    _check_init_steps,
    _check_same,
    _check_steps,
    _finished,
    _init_run_refusal,
)
from .settings import ExperimentSettings


def check_begun(
    s: ExperimentSettings, variants, train_root: Path, runs: Path, inputs, reads=None
) -> None:
    """Refuse, naming each of them (absolute) and the begun runs that start from them, the
    begun run folders of ``variants`` at every seed of ``s`` (under ``runs``) that
    :func:`~.runs.run_stage` would refuse; a single one as it refuses it. First those trained
    on other ``inputs`` (:func:`~.data.run_inputs`), as :func:`~.runs.run_variant` does.
    ``reads``: the start's :class:`~.folder_reads.FolderReads`, which the runs read again."""
    from ..train.config import load_config

    reads = reads or FolderReads()
    runs = Path(os.path.abspath(runs))
    reads.check_inputs(runs, inputs)
    refused: dict[Path, RunRefused] = {}
    seen = set()  # a stage-1 run that variants share: looked at once
    reused = set()  # finished stage-1 runs reused
    for seed in range(s.seeds):
        for v in variants:
            one, two = stage_configs(s, v, seed, train_root, runs)
            for config in (one, two):
                out = Path(config["log"]["out_dir"]) if config else None
                if out is None or out in seen:
                    continue
                # (a link to nothing refused here, before any run trains)
                if not has_checkpoint(out / "checkpoint.pt", "--out") and not _finished(out):
                    continue  # not begun, or begun afresh
                seen.add(out)
                try:
                    step = _check_folder(load_config(config), out, one["max_steps"], reads)
                except RunRefused as e:
                    refused[out] = e
                    continue
                if config is one and _finished(out) and step == one["max_steps"]:
                    reused.add(out)
                elif config is two:  # the checks run_variant makes after stage 1
                    _check_start(out, Path(one["log"]["out_dir"]), reused, refused, reads)
    if not refused:
        return
    also = []
    for out in refused:
        also += [f for f in _begun_from(out.parent.parent, out) if f not in [*refused, *also]]
    if len(refused) == 1:
        (e,) = refused.values()
        raise RunRefused(e.folder, e.why, also)
    raise LoftUpError(_many(list(refused.values()), also))


def _check_start(out: Path, first: Path, reused: set, refused: dict, reads) -> None:
    """Add to ``refused`` the begun stage-2 folder ``out`` where the finished stage-1 run in
    ``first`` that it starts from is reused (in ``reused``) and is not the one it started
    from (:func:`~.run_folders._init_run_refusal`): checked after stage 1, such a folder was
    named one seed per rerun, with training between."""
    if first not in reused:  # trained (again or on) first: run_variant checks it then
        return
    ckpt = first / "checkpoint.pt"
    _, why = _init_run_refusal(out, ckpt, reads.sha256(ckpt), reads)
    if why:
        refused[out] = RunRefused(out, why)


def _check_folder(cfg, out: Path, stage1_steps: int, reads: FolderReads) -> int:
    """What :func:`~.runs.run_stage` checks of a begun folder before it reuses or resumes it
    (and :func:`~.run_folders._check_init_steps` of a stage-2 one); the step it is at."""
    from ..train.earlier import read_earlier

    if _finished(out) or (out / "config.yaml").is_file():
        _check_same(cfg, out, reads)
    if cfg.stage == 2:
        _check_init_steps(out, stage1_steps, reads)
    begun = reads.step(out)  # gone from a finished run, or damaged: refused
    step = begun["step"]
    _check_steps(out, step, cfg.max_steps)
    if not (_finished(out) and step == cfg.max_steps):  # resumed: read as train will read them
        # (refused there, other runs were trained first; a damaged metrics.csv said, rebuilt)
        read_earlier(out, step, "--out", begun["history"])
    return step


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
