"""What a resumed run takes from its checkpoint and what it may change: another kind of run is
refused (:func:`check_resumable`, naming the key, both values and the fix); another
``model.attention_window`` (:func:`window_change`) and the optimiser's own values
(:func:`apply_optim_config`) go on with this run's, and the log says which changed."""

from __future__ import annotations

import dataclasses

import torch

from ..errors import LoftUpError
from .config import ModelConfig, TrainConfig
from .config.typed import _show
from .earlier import OUT_OPTION


def _not_resumable(
    path, key: str, was: str, mine: str, same: str = "config", another: str = OUT_OPTION
) -> LoftUpError:
    """The error of a checkpoint ``path`` made with ``key={was}`` resumed with ``key={mine}``
    (both as shown); ``another``: the option that chose its folder. A demo or an experiment
    (``another`` not loftup train's) sets the run's config itself: no config to keep."""
    fix = f"use the same {same} or another {another}"
    if another != OUT_OPTION:
        fix = (
            f"this command sets {key} itself (the folder's run was made otherwise: by another "
            f"loftup version, or another command): choose another {another}, or move that "
            "folder away to train afresh"
        )
    return LoftUpError(
        f"cannot resume {path}: it was made with {key}={was}, this run has {key}={mine}; {fix}"
    )


def check_resumable(ckpt: dict, cfg: TrainConfig, path, another: str = OUT_OPTION) -> None:
    """Refuse to resume a checkpoint made by a different kind of run (``another``: the option
    that chose its folder, as the command running it takes it)."""
    saved = ckpt.get("config", {})
    # recon.uncertainty adds or removes a trained module (the optimiser's state would not fit)
    for key in ("stage", "backbone", "backbone_norm", "batch_size", "seed", "recon.uncertainty"):
        # a run from before backbone_norm existed gave its backbone the image as is
        was, mine = saved, cfg
        for part in key.split("."):
            was = was.get(part, "imagenet" if key == "backbone_norm" else None) if was else None
            mine = getattr(mine, part)
        if was != mine:
            raise _not_resumable(path, key, repr(was), repr(mine), another=another)
    if cfg.stage == 1:  # a key the run's version did not have yet: its default then
        was = {**dataclasses.asdict(ModelConfig()), **(saved.get("model") or {})}
        for key, mine in dataclasses.asdict(cfg.model).items():
            # every other key shapes the weights, or (num_heads) how they are read
            if was[key] != mine and key != "attention_window":
                raise _not_resumable(
                    path, f"model.{key}", _show(was[key]), _show(mine), another=another
                )
    name = saved.get("optim", {}).get("name", cfg.optim.name)
    if name != cfg.optim.name:  # another optimiser's state would be loaded into this one
        raise _not_resumable(
            path, "optim.name", repr(name), repr(cfg.optim.name), "optimiser", another
        )


def window_change(ckpt: dict, cfg: TrainConfig) -> str | None:
    """``model.attention_window`` of ``cfg`` (the run's architecture, as built) where it is not
    the checkpoint's, said for the log: the window changes no weight (the tokens each pixel
    attends to only), so a run resumed with another one goes on with it."""
    was = (ckpt.get("model_config") or {}).get("attention_window")
    mine = cfg.model.attention_window
    if was == mine:
        return None
    # the checkpoint records its own window, not since which step (an earlier resume may have
    # changed it): the steps before it are not counted
    step = ckpt.get("step")
    return (
        f"model.attention_window={_show(mine)} (the checkpoint, of step {step}, was made with "
        f"{_show(was)}: the steps from {step} on attend {_attends(mine)}, not {_attends(was)})"
    )


def _attends(window: int | None) -> str:
    return "globally" if window is None else f"over {window} x {window} windows"


def apply_optim_config(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> list[str]:
    """Set the config's learning rate, weight decay (and SGD momentum) on an optimiser whose
    state was just loaded from a checkpoint, which brought the checkpoint's own values: a run
    resumed with ``optim.lr=...`` trains with that rate. Returns what changed, as
    ``"optim.lr=0.0001 (the checkpoint had 0.0003)"``."""
    wanted = {"lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay}
    if cfg.optim.name == "sgd":
        wanted["momentum"] = cfg.optim.momentum
    changed = []
    for key, value in wanted.items():
        before = {group[key] for group in optimizer.param_groups}
        if before != {value}:
            had = ", ".join(map(str, sorted(before)))
            changed.append(f"optim.{key}={value} (the checkpoint had {had})")
        for group in optimizer.param_groups:
            group[key] = value
    return changed
