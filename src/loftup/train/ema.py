"""The stage-2 teacher: an exponential moving average (EMA) of the student."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMATeacher:
    """A frozen copy of ``student`` pulled towards it every ``every`` steps.

    ``teacher <- beta * teacher + (1 - beta) * student`` for parameters and floating-point
    buffers (BatchNorm statistics); other buffers are copied. The teacher runs in eval mode.

    Arguments:
      student: the module being trained (the teacher starts as its copy).
      beta: decay (0.99 in the recipe).
      every: update period in steps; updates happen after steps 0, every, 2 * every, ...
    """

    def __init__(self, student: nn.Module, *, beta: float = 0.99, every: int = 10) -> None:
        self.beta, self.every = beta, max(1, every)
        self.model = copy.deepcopy(student).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> bool:
        """Blend in ``student`` if ``step`` is an update step; returns whether it did."""
        if step % self.every:
            return False
        mine = self.model.state_dict()
        for key, value in student.state_dict().items():
            target = mine[key]
            if target.is_floating_point():
                target.lerp_(value.to(target.dtype), 1.0 - self.beta)
            else:
                target.copy_(value)
        return True

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state, strict=True)
