"""The gradient guard of a training step: the bound its gradient norm is clipped to
(:func:`clip_limit`), and what the run says when a step's gradient is not finite
(:func:`not_finite`): the step is not taken, and the message names the loss terms and how to go
on from the checkpoint on disk."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .config import TrainConfig


def clip_limit(cfg: TrainConfig, step: int) -> float:
    """The gradient-norm bound of 0-based ``step``: ``optim.clip_grad_norm`` for the first
    ``optim.clip_steps`` steps (stage 1: 1e-4 for steps 0-9), no bound after."""
    return cfg.optim.clip_grad_norm if step < cfg.optim.clip_steps else math.inf


def not_finite(step: int, losses: dict, ckpt_path: Path, saved: int | None) -> str:
    """What a step whose gradient is NaN or infinite says: which loss terms were not finite,
    that the weights were not updated, and how to go on from the checkpoint left on disk."""
    bad = [k for k, v in losses.items() if not torch.isfinite(v.detach()).all()]
    terms = f"loss terms not finite: {', '.join(bad)}" if bad else "the loss itself is finite"
    if saved is None:
        where = "No checkpoint was written yet: run again without --resume"
    else:
        where = f"{ckpt_path} (step {saved}) is untouched: run the same command with --resume"
    return (
        f"step {step}: the gradient is not finite ({terms}); the run stops before its weights "
        f"take it. {where}, after lowering optim.lr or, with precision=bf16, in fp32"
    )
