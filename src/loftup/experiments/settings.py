"""What an experiment run depends on: the world (or the user's data), the budget, the seeds.

Settings left at ``None`` take ``loftup demo``'s value (:class:`loftup.world.demo.DemoConfig`)
at run time, so that the experiments follow the demo's world and recipe as it evolves; the step
budgets default to each experiment's own (:data:`DEFAULT_STEPS`, sized so that each experiment
runs in at most 30 minutes on a 2-core CPU). ``quick`` shrinks everything left unset to a smoke
run of a minute or so, a few for mask-noise's 16 variants (:data:`QUICK`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from ..errors import UsageError, check_threads, is_int
from ..escaping import quoted

#: (stage-1 steps, stage-2 steps) of each experiment's default run, from measured times
#: (docs/experiments.md: about 0.75-0.85 s per stage-1 step and 0.95 s per stage-2 step at
#: 64 px, batch 4, one thread of the shared 2-core machine, under 30 minutes in all).
DEFAULT_STEPS = {
    "coords": (220, 0),
    "attention": (130, 0),
    "stages": (180, 90),
    "mask-noise": (25, 0),
    "distill-view": (180, 50),
    "grid": (200, 100),
}

#: mask-noise: the levels above 0 trained by default (0 is the clean reference).
LEVELS = (0.25, 0.5, 1.0)

#: grid: the low-resolution grids (cells a side) and upsampling ratios it scores; a cell g x g
#: at ratio r has an output side of g * r, so no --max-side under the smallest holds a cell.
GRIDS = (4, 8, 16, 32)
RATIOS = (2, 4, 8, 16, 32)

#: The options that one experiment alone reads (any other is refused, not silently ignored).
ONLY = {"max_side": ("grid", "--max-side"), "noise_kinds": ("mask-noise", "--kinds"),
        "noise_levels": ("mask-noise", "--levels")}  # fmt: skip

#: What ``--quick`` sets where the user did not: a smoke run that still writes every output.
QUICK = {
    "seeds": 2,
    "size": 32,
    "train_scenes": 8,
    "val_scenes": 8,
    "stage1_steps": 2,
    "stage2_steps": 1,
    "probe_epochs": 2,
    "max_side": 64,
}

#: The settings that fill a :class:`loftup.world.demo.DemoConfig` (same names).
DEMO_FIELDS = (
    "size",
    "train_scenes",
    "val_scenes",
    "batch_size",
    "stage1_lr",
    "stage2_lr",
    "probe_epochs",
    "probe_lr",
)


@dataclass
class ExperimentSettings:
    """One experiment run.

    Arguments:
      name: the experiment (a key of :data:`DEFAULT_STEPS`).
      out: its folder (default ``experiments/NAME``; with ``quick``, ``experiments/NAME-quick``).
      seeds: seeds 0 .. seeds-1; each seeds the training runs and the probes (default 3).
      quick: smoke-test sizes for everything left unset (:data:`QUICK`).
      stage1_steps, stage2_steps: training budget (default: the experiment's).
      size, train_scenes, val_scenes, batch_size, stage1_lr, stage2_lr, probe_epochs, probe_lr:
        as in ``loftup demo`` (default: the demo's).
      backbone, backbone_weights: the frozen featurizer (default: the shipped ``scenes_vit_p8``).
      data: training images (an SA-1B folder or a folder of images); default: offline scenes.
      masks: the stage-1 mask source for ``data`` (``sa1b``, ``superpixels`` or ``sam``).
      eval_root: held-out images with labels: a scene folder (``loftup world scenes``) or, with
        ``eval_dataset``, a segmentation dataset (cocostuff, cityscapes, ade20k, voc); default:
        fresh offline scenes.
      eval_count: held-out images (half fit the probes, half score them); default val_scenes
        (grid: at most 16, since each is scored at up to 17 grid x ratio cells; a scene folder
        given as ``eval_root``: all its scenes).
      max_side: grid only: the largest output side scored (cells with g * r above it are left
        out; default 128, which keeps the grid experiment within 30 minutes).
      noise_kinds, noise_levels: mask-noise only: the kinds (default all five) and the levels
        above 0 (default 0.25, 0.5, 1) to train.
      overrides: ``key=value`` training-config entries applied to both stages, e.g.
        ``stage1.n_jitters=2``; not those each run sets (:data:`.configs.PER_RUN`) nor those the
        variants compare (``model.coords`` for coords).
      threads: torch threads (default: torch's; on a loaded machine 1 is fastest).
      progress: progress bars.
    """

    name: str
    out: str | None = None
    seeds: int | None = None
    quick: bool = False
    stage1_steps: int | None = None
    stage2_steps: int | None = None
    size: int | None = None
    train_scenes: int | None = None
    val_scenes: int | None = None
    batch_size: int | None = None
    stage1_lr: float | None = None
    stage2_lr: float | None = None
    probe_epochs: int | None = None
    probe_lr: float | None = None
    backbone: str = "scenes_vit_p8"
    backbone_weights: str | None = None
    data: str | None = None
    masks: str = "sa1b"
    eval_root: str | None = None
    eval_dataset: str | None = None
    eval_count: int | None = None
    max_side: int | None = None
    noise_kinds: list[str] | None = None
    noise_levels: list[float] | None = None
    overrides: list[str] = field(default_factory=list)
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        import numbers

        # numpy's numbers (np.int64(2) seeds, np.float32(0.003) rates) are made int or float,
        # as results.json (json) and the runs' configs (YAML) take them (np.float64, a float,
        # too: YAML writes no numpy type); a bool stays refused below
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, numbers.Integral) and not isinstance(value, (int, bool)):
                setattr(self, f.name, int(value))
            elif isinstance(value, numbers.Real) and type(value) not in (int, float, bool):
                setattr(self, f.name, float(value))
        if self.name not in DEFAULT_STEPS:
            raise UsageError(
                f"unknown experiment {quoted(self.name)}; choose one of {', '.join(DEFAULT_STEPS)}"
            )
        # 2.0 seeds (Python) failed in range() after the scenes were written: whole numbers only
        if self.seeds is not None and (not is_int(self.seeds) or self.seeds < 1):
            raise UsageError(f"--seeds must be an integer >= 1, got {self.seeds}")
        if self.eval_dataset and not self.eval_root:
            raise UsageError("--eval-dataset needs --eval-root (the dataset's folder)")
        from ..eval.datasets import SEG_DATASETS

        if self.eval_dataset and self.eval_dataset not in SEG_DATASETS:
            raise UsageError(f"unknown --eval-dataset {self.eval_dataset!r}; choose one of "
                             f"{', '.join(SEG_DATASETS)}")  # fmt: skip
        # an option of another experiment first: its values are not this one's to judge
        for key, (owner, flag) in ONLY.items():
            if getattr(self, key) is not None and self.name != owner:
                raise UsageError(f"{flag} applies to the {owner} experiment only, not to "
                                 f"{self.name}; leave it out")  # fmt: skip
        from ..train.noise import KINDS

        for flag, given in (("--kinds", self.noise_kinds), ("--levels", self.noise_levels)):
            if given is not None and not len(given):  # Python only: nargs="+" needs one
                raise UsageError(f"{flag} needs at least one value (leave it out: all of them)")
        unknown = sorted(set(self.noise_kinds or ()) - set(KINDS))
        if unknown:
            raise UsageError(f"unknown mask-noise kind {unknown[0]!r}; known: {', '.join(KINDS)}")
        if any(not 0 < lv <= 1 for lv in self.noise_levels or ()):
            raise UsageError(f"--levels (noise levels) must be in (0, 1], got {self.noise_levels}")
        # each kind and level is a variant named "{kind} {level:g}": a repeat would be scored
        # as another seed of the same runs
        for flag, names, what in (
            ("--kinds", list(self.noise_kinds or ()), "names {} twice; give each kind once"),
            ("--levels", [f"{lv:g}" for lv in self.noise_levels or ()],
             "gives {} twice; give each level once"),
        ):  # fmt: skip
            twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
            if twice is not None:
                raise UsageError(f"{flag} {what.format(twice)}")
        smallest = min(GRIDS) * min(RATIOS)
        if self.max_side is not None and self.max_side < smallest:
            raise UsageError(
                f"--max-side {self.max_side} leaves no cell to score: the smallest is "
                f"{min(GRIDS)}x{min(GRIDS)} at {min(RATIOS)}x, {smallest} px; give "
                f"--max-side {smallest} or more"
            )
        if self.masks not in ("sa1b", "superpixels", "sam"):
            raise UsageError(f"masks must be sa1b, superpixels or sam, got {self.masks!r}")
        check_threads(self.threads)
        least = {"stage1_steps": 1, "stage2_steps": 1, "eval_count": 2}
        if not DEFAULT_STEPS[self.name][1]:  # stage 1 only: no stage-2 budget to set
            if self.stage2_steps:
                raise UsageError(
                    f"{self.name} trains stage 1 only; --stage2-steps does not apply (leave it out)"
                )
            del least["stage2_steps"]
        for name, low in least.items():
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < low):
                raise UsageError(
                    f"--{name.replace('_', '-')} must be an integer >= {low}, got {value}"
                )

    def resolved(self) -> ExperimentSettings:
        """A copy with every ``None`` filled: quick sizes, the experiment's steps, the demo's."""
        from ..train.noise import KINDS
        from ..world.demo import DemoConfig

        demo = DemoConfig()
        s1, s2 = DEFAULT_STEPS[self.name]
        fill = {"seeds": 3, "stage1_steps": s1, "stage2_steps": s2, "max_side": 128}
        fill.update(noise_kinds=list(KINDS), noise_levels=list(LEVELS))
        # a smoke run of its own folder: in the full run's, its scenes and runs were refused
        # as "another world" / "other settings", with the advice to delete that folder
        fill["out"] = f"experiments/{self.name}" + ("-quick" if self.quick else "")
        fill.update({k: getattr(demo, k) for k in DEMO_FIELDS})
        if self.quick:
            fill.update({k: v for k, v in QUICK.items() if k != "stage2_steps" or s2})
        for key, (owner, _) in ONLY.items():  # what another experiment does not read stays None
            if self.name != owner:
                del fill[key]
        values = {k: v for k, v in fill.items() if getattr(self, k) is None}
        # "--out=~/x" reaches us unexpanded: the scenes and runs (DemoConfig expands it) went
        # to ~/x, the report to ./~/x
        for key in ("out", "data", "eval_root", "backbone_weights"):
            path = values.get(key, getattr(self, key))
            if path:
                values[key] = os.path.expanduser(os.fspath(path))
        out = dataclasses.replace(self, **values)
        if out.eval_count is None:
            out.eval_count = min(16, out.val_scenes) if self.name == "grid" else out.val_scenes
            if self._scene_folder():  # the user's held-out scenes: all of them
                out.eval_count = self._scenes_held()
        demo = out.demo(0)  # the demo's values checked (size, scenes, learning rates...)
        if not out.data:
            demo.check_train_scenes()
        if out.eval_count < 2:
            raise UsageError(
                f"eval_count must be at least 2 (half fit, half score), got {out.eval_count}"
            )
        if self._scene_folder() and out.eval_count > out._scenes_held():
            raise UsageError(
                f"--eval-count {out.eval_count} is more than the {out._scenes_held()} scenes in "
                f"{out.eval_root}; give --eval-count {out._scenes_held()} or less"
            )
        offline = not (out.eval_root or out.eval_dataset or self.name == "grid")
        if offline and out.eval_count > out.val_scenes:  # the held-out scenes written for it
            raise UsageError(
                f"--eval-count {out.eval_count} is more than the {out.val_scenes} held-out scenes "
                "(--val-scenes); raise --val-scenes or lower --eval-count"
            )
        return out

    def _scene_folder(self) -> bool:
        """Whether the held-out set is a scene folder of the user's (``eval_root`` alone)."""
        return bool(self.eval_root) and not self.eval_dataset and self.name != "grid"

    def _scenes_held(self) -> int:
        """The number of scenes in the ``eval_root`` scene folder (a LoftUpError naming it
        when it is none)."""
        from ..data.scene_files import read_world

        return len(read_world(os.path.expanduser(self.eval_root)).names)

    def demo(self, seed: int):
        """The :class:`DemoConfig` of one seed (resolved settings only)."""
        from ..world.demo import DemoConfig

        values = {k: getattr(self, k) for k in DEMO_FIELDS}
        return DemoConfig(
            out=self.out,
            stage1_steps=self.stage1_steps,
            stage2_steps=max(1, self.stage2_steps),
            seed=seed,
            **values,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
