"""The options of ``loftup demo``, free of torch: the command line builds its flags from them
without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DemoConfig:
    """Arguments:
    out: report folder (scenes and training runs go inside it).
    size: demo image size (held-out scenes, stage-1 images, stage-2 global view); multiple of 8.
    train_scenes, val_scenes: numbers of scenes (half the held-out ones fit the probes).
    stage1_steps, stage2_steps: training steps of each stage (batch ``batch_size``).
    stage1_lr, stage2_lr: learning rates (NAdam for stage 1, AdamW for stage 2, as released).
    probe_epochs, probe_lr: the linear probe's recipe on the small held-out set.
    seed: seeds scenes (held-out: seed + 1), training and probes.
    """

    out: str = "loftup_demo"
    size: int = 64
    train_scenes: int = 300
    val_scenes: int = 48
    stage1_steps: int = 400
    stage2_steps: int = 150
    batch_size: int = 4
    stage1_lr: float = 3e-3
    stage2_lr: float = 1e-3
    probe_epochs: int = 40
    probe_lr: float = 1e-2
    seed: int = 0

    def __post_init__(self) -> None:
        """Every value checked now, before a scene is written (a :class:`UsageError`)."""
        import math
        import os

        from ..data.paths import home_expanded
        from ..errors import UsageError, is_int

        # "--out=~/x" reaches us unexpanded (the shell expands ~ only at a word's start):
        # the folder checks expand it, so the demo must write there too, not to "./~/x";
        # ~nobody (no such user) is one line, not Path.expanduser's RuntimeError in those checks
        self.out = os.fspath(home_expanded(self.out, "--out"))
        if not is_int(self.size) or self.size < 8 or self.size % 8:
            raise UsageError(
                f"--size must be a positive multiple of 8 (the backbone's patch), e.g. 64; got "
                f"{self.size}"
            )
        least = {
            "train_scenes": 1,
            "stage1_steps": 1,
            "stage2_steps": 1,
            "batch_size": 1,
            "probe_epochs": 1,
            "seed": 0,
            "val_scenes": 2,
        }
        why = {"val_scenes": " (half fit the probes, half score them)", "seed": ""}
        for name, low in least.items():
            value = getattr(self, name)
            if not is_int(value) or value < low:
                raise UsageError(
                    f"--{name.replace('_', '-')} must be an integer >= {low}{why.get(name, '')}, "
                    f"got {value}"
                )
        for name in ("stage1_lr", "stage2_lr", "probe_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UsageError(
                    f"--{name.replace('_', '-')} (learning rate) must be a finite number > 0, "
                    f"got {value}"
                )

    def check_train_scenes(self) -> None:
        """A :class:`UsageError` unless the offline training set holds one batch or more."""
        from ..errors import UsageError

        if self.train_scenes < self.batch_size:
            raise UsageError(
                f"--train-scenes {self.train_scenes} is less than one batch (--batch-size "
                f"{self.batch_size}): raise --train-scenes or lower --batch-size"
            )
