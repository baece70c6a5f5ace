"""How a probe is trained: its settings (:class:`ProbeConfig`, the protocols' recipes), the
optimiser, the learning-rate schedule and the loop (:func:`train_probe`).

The recipes: LoftUp's segmentation probe (after FeatUp) is NAdam lr 1e-4, batch 8, 10 epochs at
a constant rate; Probe3D's depth and normal probes are AdamW lr 5e-4 (weight decay 0.01), batch
8, 10 epochs, a linear warm-up from 1% of the rate over 1.5 epochs, then a quarter cosine back
to 1% (Probe3D's ``cosine_decay_linear_warmup``, stepped once per batch). A warm-up takes at
most half a run (:func:`warmup_steps`), so that a short run still decays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import LoftUpError
from ..escaping import quoted
from ..stops import check as check_stop


@dataclass
class ProbeConfig:
    """How a probe is trained.

    Arguments:
      epochs: passes over the training set.
      lr: peak learning rate.
      batch_size: images per step.
      optimizer: ``nadam`` | ``adam`` | ``adamw``.
      weight_decay: decoupled weight decay (adamw) or L2 (adam, nadam).
      warmup_epochs: linear warm-up length, at most half the run (:func:`warmup_steps`: a
        run shorter than twice the warm-up warms up over its first half, so that the rate
        still reaches its peak and, with ``cosine`` or ``probe3d``, then decays).
      schedule: ``constant``, ``cosine`` (linear warm-up from 0, then half a cosine to 0) or
        ``probe3d`` (Probe3D's: linear warm-up from 1% of ``lr``, then a quarter cosine down
        to 1%).
      seed: seeds the probe's initialisation and the order of the batches.
    """

    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 8
    optimizer: str = "nadam"
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    schedule: str = "constant"
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """UsageError for epochs or batch_size below 1, a learning rate that is not a
        finite number > 0 (warm-up or weight decay below 0), an unknown optimizer or schedule,
        or a seed outside [0, 2**32): said before any feature is computed."""
        from ..errors import UsageError

        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"probe {name} must be an integer >= 1, got {value!r}")
        for name, low in (("lr", None), ("warmup_epochs", 0.0), ("weight_decay", 0.0)):
            value = getattr(self, name)
            finite = isinstance(value, (int, float)) and math.isfinite(value)
            if not finite or (value <= 0 if low is None else value < low):
                rule = "a finite number > 0" if low is None else "a finite number >= 0"
                raise UsageError(f"probe {name} must be {rule}, got {value!r}")
        check_choice("probe optimizer", self.optimizer, OPTIMIZERS)
        check_choice("probe schedule", self.schedule, SCHEDULES)
        check_seed(self.seed, "probe seed")


#: Seeds are integers in [0, SEED_LIMIT), as ``loftup train`` takes them (torch refuses some
#: larger ones only once the probe is built, after all the features).
SEED_LIMIT = 2**32


#: What ProbeConfig.optimizer and .schedule may be.
OPTIMIZERS = {"nadam": torch.optim.NAdam, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULES = ("constant", "cosine", "probe3d")


def check_choice(name: str, value, choices) -> None:
    """UsageError unless ``value`` is one of ``choices``."""
    from ..errors import UsageError

    if value not in tuple(choices):  # == each: an unhashable value is unknown too
        raise UsageError(f"unknown {name} {quoted(value)}; choose one of {', '.join(choices)}")


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of the order of the training images in ``epoch`` of a probe seeded ``seed``:
    a 32-bit hash of the pair (NumPy's ``SeedSequence``), one of its own for each (seed,
    epoch). Not ``seed + epoch``, which gave seed s at epoch e + 1 the order of seed s + 1 at
    epoch e (runs of "other" seeds shared all their epochs' orders but one), and not
    ``seed * 2**32 + epoch``: torch's CPU generator keeps the low 32 bits of a seed only."""
    import numpy as np

    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def check_seed(value, name: str = "seed") -> None:
    """UsageError unless ``value`` is an integer in [0, :data:`SEED_LIMIT`)."""
    from ..errors import UsageError, is_int

    if not is_int(value) or not 0 <= value < SEED_LIMIT:
        raise UsageError(f"{name} must be an integer in [0, {SEED_LIMIT}), got {value!r}")


#: LoftUp's segmentation probe recipe.
SEG_PROBE = ProbeConfig()
#: Probe3D's depth probe recipe.
DEPTH_PROBE = ProbeConfig(
    lr=5e-4, optimizer="adamw", warmup_epochs=1.5, schedule="probe3d", weight_decay=0.01
)

#: Probe3D's surface-normal probe recipe (its optimiser and schedule are its depth probe's).
NORMAL_PROBE = DEPTH_PROBE

# -- training ----------------------------------------------------------------------------------


def _optimizer(params, cfg: ProbeConfig) -> torch.optim.Optimizer:
    check_choice("probe optimizer", cfg.optimizer, OPTIMIZERS)
    return OPTIMIZERS[cfg.optimizer](params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate multiplier at ``step`` (0-based) of ``total``: linear warm-up over
    ``warmup`` steps, then constant, cosine to 0, or Probe3D's schedule (see ProbeConfig)."""
    if schedule == "probe3d":  # Probe3D's cosine_decay_linear_warmup, min_factor 0.01
        low = 0.01
        if step <= warmup and warmup > 0:
            return (1 - low) * step / warmup + low
        rel = min(1.0, (step - warmup) / max(1, total - warmup))
        return (1 - low) * math.cos(0.5 * math.pi * rel) + low
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / span)))
    check_choice("probe schedule", schedule, SCHEDULES)
    raise AssertionError(schedule)  # every schedule of SCHEDULES returned above


def warmup_steps(config: ProbeConfig, steps_per_epoch: int) -> int:
    """The warm-up of ``config`` in steps: ``warmup_epochs`` of ``steps_per_epoch`` steps,
    at most half the run's ``epochs * steps_per_epoch`` (rounded up). Probe3D's 1.5 epochs of
    a run of 1 epoch were a rate that rose to two thirds of its peak and never decayed; at 3
    epochs or more (the protocols run 10) the cap changes nothing (``round(1.5 n)`` is at most
    ``ceil(3 n / 2)``: half of 3 epochs rounded down took a step from an odd epoch's)."""
    total = max(1, config.epochs * steps_per_epoch)
    return min(int(round(config.warmup_epochs * steps_per_epoch)), (total + 1) // 2)


def train_probe(
    probe: nn.Module,
    batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: ProbeConfig,
    steps_per_epoch: int,
    *,
    progress: bool = True,
    desc: str = "probe",
) -> nn.Module:
    """Fit ``probe`` in place: for each epoch, ``batches(epoch)`` yields (feats, target).

    ``loss_fn(probe(feats), target)`` is minimised; the learning rate follows ``config``'s
    schedule over ``epochs * steps_per_epoch`` steps. Returns the probe in eval mode.
    """
    from tqdm.auto import tqdm

    from ..bars import bar_settings

    config.check()
    probe.train()
    opt = _optimizer(probe.parameters(), config)
    total = max(1, config.epochs * steps_per_epoch)
    warmup = warmup_steps(config, steps_per_epoch)
    step = 0
    # closed on an error too, so that the error's line is not the bar's
    with tqdm(total=total, desc=desc, leave=False, **bar_settings(shown=progress)) as bar:
        for epoch in range(config.epochs):
            for feats, target in batches(epoch):
                check_stop()  # one a finaliser swallowed (a loader's, a bar's): loftup.stops
                for group in opt.param_groups:
                    group["lr"] = config.lr * lr_factor(step, total, warmup, config.schedule)
                loss = loss_fn(probe(feats), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                value = loss.item()
                if not math.isfinite(value):  # its step made the weights NaN: every score too
                    raise LoftUpError(_not_finite(desc, value, step, total, epoch))
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
    return probe.eval()


def _not_finite(desc: str, value: float, step: int, total: int, epoch: int) -> str:
    """What a probe loss of NaN or infinity means, and what to do: one NaN in the features
    made the weights NaN, every pixel then got the first class, and the run reported that
    mIoU as the probe's."""
    return (
        f"the {desc} loss is {value} at step {step + 1} of {total} (epoch {epoch + 1}), so "
        "the probe's weights are no longer numbers and no score of it would mean anything: "
        "the features hold NaN or infinity (check the upsampler and the backbone on these "
        "images), or the learning rate is too high (lower --lr, or ProbeConfig.lr)"
    )
