"""What a training run returns (:func:`loftup.train.train`): its folder, checkpoint, exported
upsampler and loss history."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainResult:
    """What a run produced: its folder, last checkpoint, exported upsampler and loss history."""

    out_dir: Path
    checkpoint: Path
    pretrained: Path
    steps: int
    history: list[dict] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0

    @property
    def losses(self) -> list[float]:
        return [row["loss"] for row in self.history]
