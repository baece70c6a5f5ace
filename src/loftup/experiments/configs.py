"""The training configs of an experiment's runs: each variant's stage 1 and (or not) stage 2,
the demo's (:func:`~loftup.world.demo.stage_config`) with the variant's switches and the
settings' backbone, masks and ``key=value`` overrides (:func:`stage_configs`), each run in its
own folder; and their check before anything is written (:func:`check_configs`): an override
that sets what each run sets for itself (:data:`PER_RUN`) or what the variants compare."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .settings import ExperimentSettings


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
