"""Training runs of an experiment: each variant's stages (their configs: :mod:`.configs`)
trained, or their folders reused or gone on with.

A run folder that finished (``summary.json`` and ``final/``) is reused when its config is the
one asked for, and a folder with a checkpoint is resumed, so an interrupted experiment picks up
where it stopped; a folder made with other settings is an error, never silently reused. Runs of
one seed share work: variants naming the same ``stage1_run`` share one stage-1 run, and a variant
that ``continues`` another stage-1 run copies it and trains on (same config, more steps: a
resumed run repeats an uninterrupted one exactly). A stage-2 folder records the steps and the
checkpoint's sha256 of the stage-1 run it starts from (``init.json``), so that it is not reused
after that run trained on or was trained again; each folder records the backbone's weights and
the training data it was trained on (``inputs.json``), so that it is not reused on others.
"""

from __future__ import annotations

import shutil
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from .configs import (  # noqa: F401  (importable from here, as before configs.py)
    PER_RUN,
    Variant,
    base_overrides,
    check_configs,
    folder_name,
    stage_configs,
)
from .folder_reads import FolderReads
from .run_folders import (  # noqa: F401  (INIT_RECORD: importable from here)
    CONTINUES_RECORD,
    INIT_RECORD,
    RunRefused,
    _begun_from,
    _check_init_run,
    _check_init_steps,
    _check_same,
    _check_steps,
    _finished,
    _saved_config,
)
from .settings import ExperimentSettings

#: History columns kept for the loss curves (the rest are timings).
LOSS_KEYS = ("loss", "rec", "tv", "target", "affinity")


@dataclass
class RunResult:
    """A finished run: its exported upsampler, checkpoint and per-step losses."""

    pretrained: Path
    checkpoint: Path
    history: list[dict]


def run_stage(
    config: dict,
    continues: Path | None = None,
    inputs: dict | None = None,
    reads=None,
    inside: Path | None = None,
) -> RunResult:
    """Train the run ``config`` describes, or reuse / resume its folder (see the module note);
    ``inputs``: what it is trained on besides its config (:func:`~.data.run_inputs`), checked
    against a begun folder's record and recorded; ``reads``: the start's
    :class:`~.folder_reads.FolderReads` (a checkpoint's step read once per start; one
    resumed is loaded again by training, under its folder's lock); ``inside``: the
    experiment's --out, which a refusal of the run's folder names (as typed)."""
    from ..train.checkpoint import has_checkpoint, unpack_history
    from ..train.config import load_config
    from ..train.loop import train
    from ..train.preflight import check_out_dir
    from ..train.stop_lines import clear_stop_note

    reads = reads or FolderReads()
    cfg = load_config(config)
    out = Path(cfg.log.out_dir)
    # a file or a link to nothing in its place refused as its training would, with the fix,
    # before a record is written there ("error: OUT/...: File exists", no fix)
    check_out_dir(str(out), "--out", inside=inside)
    ckpt = out / "checkpoint.pt"
    finished = _finished(out)
    begun = has_checkpoint(ckpt, "--out")  # a link to nothing refused, not trained over
    if continues is not None and not finished and not begun:
        import os

        from ..atomic import atomic_write, write_json

        # the checkpoint last and atomically: it marks the copy done (a cut-short copy of it
        # would be resumed from, and fail); the rest is copied again over a cut-short copy
        skip = shutil.ignore_patterns("final*", ckpt.name)
        shutil.copytree(continues, out, ignore=skip, dirs_exist_ok=True)
        # named when the run it continues is refused
        write_json(out / CONTINUES_RECORD, {"from": os.path.abspath(continues)})
        atomic_write(ckpt, lambda tmp: shutil.copyfile(continues / ckpt.name, tmp))
        reads.forget(out)  # its files written again: read again
        begun = True
    if inputs is not None:
        reads.record_inputs(out, inputs, begun=finished or begun)
    if finished or begun:
        # a finished run is reused, an interrupted one goes on, only with the settings it
        # began with and at most the steps asked for (train would export more as they are)
        if finished or (out / "config.yaml").is_file():
            _check_same(cfg, out, reads)
        raw = reads.step(out)  # gone from a finished run, or damaged: the folder refused
        _check_steps(out, raw["step"], cfg.max_steps)
        if finished and raw["step"] == cfg.max_steps:
            # a stop as it ended kept its line (how the experiment goes on): it goes on now
            with suppress(OSError):  # (a folder this user may read only: the note stays)
                clear_stop_note(out)
            # read once a start: a stage-1 run that three variants share was read three times
            history = _losses(unpack_history(raw["history"]))
            return RunResult(out / "final", ckpt, history)
    try:
        result = train(cfg, resume=begun, go_on=GO_ON, out_option="--out", out_inside=inside)
    finally:  # its files written again: read again, whatever their identity tells
        reads.forget(out)
    return RunResult(result.pretrained, result.checkpoint, _losses(result.history))


#: How an experiment's training run stopped by a signal goes on (its stop line and
#: stopped.txt): ``loftup experiment`` has no --resume, and the same command again resumes.
GO_ON = "run the same command again to go on (it reuses the finished runs and resumes this one)"


def run_configs(runs: dict[str, RunResult], reads=None) -> dict:
    """{stage: the full training config of that run, as saved in its folder} (the exact
    settings, demo defaults included; the log section, which only names folders, left out),
    with the paths the run used (the file doubles each ``$`` of a path: ``$$``). ``reads``:
    the start's :class:`~.folder_reads.FolderReads`, which read them up front."""
    configs = {}
    for stage, r in runs.items():
        saved = _saved_config(r.checkpoint.parent, reads)
        configs[stage] = {k: v for k, v in saved.items() if k != "log"}
    return configs


def _losses(history: list[dict]) -> list[dict]:
    return [{k: row[k] for k in ("step", *LOSS_KEYS) if k in row} for row in history]


def run_variant(
    s: ExperimentSettings,
    v: Variant,
    seed: int,
    train_root: Path,
    runs: Path,
    inputs: dict | None = None,
    reads=None,
) -> dict[str, RunResult]:
    """The runs of one variant at one seed: {"stage1": ..., "stage2": ... (if any)}.
    ``inputs``: :func:`~.data.run_inputs` of the settings (by default worked out here);
    ``reads``: the start's :class:`~.folder_reads.FolderReads` (by default a new one)."""
    import os

    from ..train.preflight import check_out_dir
    from .data import run_inputs, weights_fingerprint

    reads = reads or FolderReads()
    inside = Path(s.out)  # the experiment's --out, as typed: its run folders' refusals name it
    runs = Path(os.path.abspath(runs))  # the folders it names, as stage_configs' (absolute)
    if inputs is None:
        backbone = weights_fingerprint(s.backbone, s.backbone_weights)
        inputs = run_inputs(backbone, train_root, s.masks, progress=s.progress)
    reads.check_inputs(runs, inputs)  # every folder trained on other ones named at once
    one, two = stage_configs(s, v, seed, train_root, runs)
    for config in (one, two):  # (stage 2's is written to before stage 1 trains, below)
        if config is not None:
            check_out_dir(config["log"]["out_dir"], "--out", inside=inside)
    if two is not None:  # before stage 1, which may train on (more steps) in its shared folder
        _check_init_steps(Path(two["log"]["out_dir"]), one["max_steps"], reads)
    continues = None
    if v.continues:
        continues = runs / f"seed{seed}" / folder_name(v.continues) / "stage1"
    try:
        first = run_stage(one, continues, inputs, reads, inside)
    except RunRefused as e:  # the stage-2 runs distilled from it go with it
        also = _begun_from(runs / f"seed{seed}", e.folder)
        if also:
            raise RunRefused(e.folder, e.why, also) from None
        raise
    out = {"stage1": first}
    if two is not None:
        sha = reads.sha256(first.checkpoint)
        _check_init_run(Path(two["log"]["out_dir"]), one["max_steps"], first.checkpoint, sha, reads)
        out["stage2"] = run_stage(two, inputs=inputs, reads=reads, inside=inside)
    return out
