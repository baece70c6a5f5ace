"""Training runs of an experiment: the demo's two stages with each variant's switches.

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

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
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


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment.

    Arguments:
      name: its row in the table.
      stage1: config entries merged into stage 1's (e.g. ``{"model": {"coords": False}}``).
      stage2: None for stage 1 only, else entries merged into stage 2's ({} for the demo's).
      stage1_run: name of its stage-1 run; variants naming the same one share it (default: name).
      stage1_steps: stage 1's steps when not the experiment's.
      continues: a stage-1 run of the same config and fewer steps to continue from.
    """

    name: str
    stage1: dict = field(default_factory=dict)
    stage2: dict | None = None
    stage1_run: str | None = None
    stage1_steps: int | None = None
    continues: str | None = None

    @property
    def run_key(self) -> str:
        return self.stage1_run or self.name


@dataclass
class RunResult:
    """A finished run: its exported upsampler, checkpoint, per-step losses and seconds."""

    pretrained: Path
    checkpoint: Path
    history: list[dict]
    seconds: float


def folder_name(name: str) -> str:
    """A file-system-safe folder name for a variant or run name."""
    import re

    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-") or "run"


def base_overrides(s: ExperimentSettings) -> dict:
    """Config entries every run of the settings gets (backbone, data masks, progress), then the
    ``key=value`` overrides, read by ``loftup train``'s own reader (their paths' ``~`` and
    ``$VAR`` expanded: text from a command line, which the shell leaves in ``key=~/x``)."""
    from ..train.config import merge
    from ..train.config.loading import read_overrides

    entries = {"backbone": s.backbone, "data": {"masks": s.masks}}
    if s.backbone_weights:
        entries["backbone_weights"] = s.backbone_weights
    entries["log"] = {"progress": s.progress}
    given = read_overrides(s.overrides)
    for key, instead in PER_RUN.items():
        section, _, name = key.rpartition(".")
        where = given.get(section) if section else given
        if isinstance(where, dict) and name in where:  # log=out_dir is no log.out_dir
            raise UsageError(
                f"override {key}=... cannot be given to an experiment: it sets {key} for each "
                f"run itself; {instead}"
            )
    return merge(entries, given)


#: The training-config keys an experiment sets for each of its runs, and what to use instead
#: of an override that would set them for all (seed=1: every "seed" the same run, their spread
#: nil, and any difference a finding; log.out_dir: every run in one folder)
PER_RUN = {
    "seed": "give --seeds N (runs of seeds 0 to N-1)",
    "max_steps": "give --stage1-steps or --stage2-steps",
    # each run's max_steps outranks epochs: an epochs=3 override was taken and did nothing
    "epochs": "its max_steps outranks epochs: give --stage1-steps or --stage2-steps",
    "stage": "it trains the stages each variant needs",
    "init": "stage 2 starts from the variant's own stage-1 run",
    "data.root": "give --data",
    "log.out_dir": "give --out",
    # options of the experiment: the held-out features are --backbone's, and the report says
    # the options (backbone=x trained the runs on x's features and probed them on the other's)
    "backbone": "give --backbone",
    "backbone_weights": "give --backbone-weights",
    "data.masks": "give --masks",
}


def stage_configs(
    s: ExperimentSettings, v: Variant, seed: int, train_root: Path, runs: Path
) -> tuple[dict, dict | None]:
    """Stage 1's and (or None) stage 2's training configs of variant ``v`` at ``seed``, their
    folders absolute: a run is the same run whichever way its folder is named later (another
    current folder, --out given in full)."""
    import os

    from ..train.config import merge
    from ..world.demo import stage_config

    train_root, runs = Path(os.path.abspath(train_root)), Path(os.path.abspath(runs))
    cfg = s.demo(seed)
    if v.stage1_steps:
        cfg = dataclasses.replace(cfg, stage1_steps=v.stage1_steps)
    common = base_overrides(s)
    folder = runs / f"seed{seed}"
    first = folder / folder_name(v.run_key) / "stage1"
    one = merge(merge(stage_config(cfg, 1, train_root, first), v.stage1), common)
    if v.stage2 is None:
        return one, None
    # the folder the experiment sets, not one["log"] (an override log=null made it None: a
    # TypeError here, before load_config could say what is wrong with it)
    init = first / "checkpoint.pt"
    two = stage_config(cfg, 2, train_root, folder / folder_name(v.name) / "stage2", init=init)
    return one, merge(merge(two, v.stage2), common)


def check_configs(s: ExperimentSettings, variants) -> None:
    """Load (and so check) every variant's training configs, at seed 0, before anything is
    written: a bad ``key=value`` override is said now, not after the scenes and other runs."""
    from ..train.config import load_config
    from ..train.config.loading import read_overrides

    given = _dotted(read_overrides(s.overrides))
    for v in variants:  # the overrides win over the switches: every variant would be alike
        for key in _dotted(_switches(v)):
            same = [g for g in given if f"{key}.".startswith(f"{g}.") or g.startswith(f"{key}.")]
            if same:
                raise UsageError(
                    f"override {same[0]}=... cannot be given to experiment {s.name}: it is what "
                    f"its variants compare (variant {v.name!r} sets {key}); leave it out"
                )
    root = Path(s.data) if s.data else Path(s.out) / "scenes" / "train"
    for v in variants:
        for config in stage_configs(s, v, 0, root, Path(s.out) / "runs"):
            if config is not None:
                load_config(config)


def _switches(v: Variant) -> dict:
    """The config entries variant ``v`` sets in either stage."""
    from ..train.config import merge

    return merge(v.stage1, v.stage2 or {})


def _dotted(entries: dict, prefix: str = "") -> list[str]:
    """The keys of nested config entries as overrides write them (``model.coords``)."""
    keys = []
    for key, value in entries.items():
        if isinstance(value, dict):  # {} sets no key
            keys += _dotted(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def run_stage(
    config: dict, continues: Path | None = None, inputs: dict | None = None, reads=None
) -> RunResult:
    """Train the run ``config`` describes, or reuse / resume its folder (see the module note);
    ``inputs``: what it is trained on besides its config (:func:`~.data.run_inputs`), checked
    against a begun folder's record and recorded; ``reads``: the start's
    :class:`~.folder_reads.FolderReads` (its checkpoint loaded once per start)."""
    from ..train.checkpoint import unpack_history
    from ..train.config import load_config
    from ..train.loop import train

    reads = reads or FolderReads()
    cfg = load_config(config)
    out = Path(cfg.log.out_dir)
    ckpt = out / "checkpoint.pt"
    finished = _finished(out)
    if continues is not None and not finished and not ckpt.exists():
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
    if inputs is not None:
        reads.record_inputs(out, inputs, begun=finished or ckpt.exists())
    if finished or ckpt.exists():
        # a finished run is reused, an interrupted one goes on, only with the settings it
        # began with and at most the steps asked for (train would export more as they are)
        if finished or (out / "config.yaml").is_file():
            _check_same(cfg, out, reads)
        # gone from a finished run, or damaged: the folder refused; one to train on: held
        raw = reads.step(out, cfg.max_steps)
        _check_steps(out, raw["step"], cfg.max_steps)
        if finished and raw["step"] == cfg.max_steps:
            # read once a start: a stage-1 run that three variants share was read three times
            seconds = (reads.record(out / "summary.json") or {}).get("seconds", 0.0)
            history = _losses(unpack_history(raw["history"]))
            return RunResult(out / "final", ckpt, history, float(seconds or 0.0))
    try:
        # the checkpoint read for its step above (or up front), not loaded again
        result = train(cfg, resume=ckpt.exists(), go_on=GO_ON, checkpoint=reads.take(out))
    finally:  # its files written again: read again, whatever their identity tells
        reads.forget(out)
    return RunResult(result.pretrained, result.checkpoint, _losses(result.history), result.seconds)


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

    from .data import run_inputs, weights_fingerprint

    reads = reads or FolderReads()
    runs = Path(os.path.abspath(runs))  # the folders it names, as stage_configs' (absolute)
    if inputs is None:
        backbone = weights_fingerprint(s.backbone, s.backbone_weights)
        inputs = run_inputs(backbone, train_root, s.masks, progress=s.progress)
    reads.check_inputs(runs, inputs)  # every folder trained on other ones named at once
    one, two = stage_configs(s, v, seed, train_root, runs)
    if two is not None:  # before stage 1, which may train on (more steps) in its shared folder
        _check_init_steps(Path(two["log"]["out_dir"]), one["max_steps"], reads)
    continues = None
    if v.continues:
        continues = runs / f"seed{seed}" / folder_name(v.continues) / "stage1"
    try:
        first = run_stage(one, continues, inputs, reads)
    except RunRefused as e:  # the stage-2 runs distilled from it go with it
        also = _begun_from(runs / f"seed{seed}", e.folder)
        if also:
            raise RunRefused(e.folder, e.why, also) from None
        raise
    out = {"stage1": first}
    if two is not None:
        sha = reads.sha256(first.checkpoint)
        _check_init_run(Path(two["log"]["out_dir"]), one["max_steps"], first.checkpoint, sha, reads)
        out["stage2"] = run_stage(two, inputs=inputs, reads=reads)
    return out
