"""Building the pieces of a run from its config, and moving its state in and out of checkpoints."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LoftUpError, UsageError
from ..model import LoftUp, LoftUpConfig
from .checkpoint import FORMAT as CHECKPOINT_FORMAT
from .checkpoint import pack_history, rng_state
from .config import ModelConfig, TrainConfig
from .config.typed import _show
from .objectives import Trainee

log = logging.getLogger("loftup.train")


def build_featurizer(cfg: TrainConfig, device):
    """The frozen backbone, in eval mode, without gradients."""
    from ..featurizers import get_featurizer

    featurizer = get_featurizer(
        cfg.backbone, cfg.backbone_weights, device=device, input_norm=cfg.backbone_norm
    )
    featurizer = featurizer.to(device).eval()
    for p in featurizer.parameters():
        p.requires_grad_(False)
    return featurizer


@dataclass
class Init:
    """Stage 2's starting point, read once (:func:`read_init`): the upsampler, and the states of
    the training-only modules when ``init`` is a training checkpoint of ours (else {})."""

    upsampler: LoftUp
    extras: dict


def read_init(init: str) -> Init:
    """Stage 2's ``init`` (any ``load_upsampler`` source), its file read once: the upsampler,
    and from a ``loftup train`` checkpoint the downsampler's and uncertainty's states too."""
    from ..hub.loading import load_with_record

    model, record = load_with_record(init)
    extras = {}
    if record.get("format") == CHECKPOINT_FORMAT:
        extras = {k: record[k] for k in ("downsampler", "uncertainty") if record.get(k)}
    return Init(model, extras)


def build_upsampler(
    cfg: TrainConfig,
    dim: int,
    input_norm: str | None = None,
    resume: dict | None = None,
    init: Init | None = None,
    *,
    say: bool = True,
) -> tuple[LoftUp, TrainConfig, dict]:
    """Stage 1: a fresh LoftUp of ``cfg.model``. Stage 2: the ``init`` upsampler, or, when
    resuming from the checkpoint ``resume``, one of its architecture (its weights are loaded
    from it after this, so ``init`` is not read again: it may have moved or changed since).
    ``init``: ``cfg.init`` already read (by :func:`~loftup.train.preflight.preflight`), else
    it is read here.

    ``input_norm``: the featurizer's ``input_norm_key()`` (None where the choice changes
    nothing); stage 2 warns when ``init`` was trained on the other kind of features. ``say``:
    log what it finds (under torchrun rank 0 alone does, not every process).

    Returns the upsampler, the config with ``model`` set to the architecture actually used, and
    the downsampler/uncertainty states when ``init`` is a training checkpoint of ours (else {}).
    """
    if cfg.stage == 1:
        config = LoftUpConfig(dim=dim, **dataclasses.asdict(cfg.model))
        return LoftUp(config=config), cfg, {}
    if resume is not None:
        saved = LoftUpConfig.from_dict(resume["model_config"])
        arch = stage2_architecture(cfg, saved, "the checkpoint to resume")
        model = LoftUp(config=LoftUpConfig(dim=saved.dim, **arch))
        return model.train(), dataclasses.replace(cfg, model=ModelConfig(**arch)), {}
    if not cfg.init:
        raise LoftUpError(
            "stage 2 starts from a stage-1 result: set init=RUN/checkpoint.pt (or RUN/final, or "
            "a released name such as loftup_dinov2s)"
        )
    start = init if init is not None else read_init(cfg.init)
    model = start.upsampler
    if model.backbone and model.backbone != cfg.backbone:  # the fix: either of the two
        widths = f" (C={model.config.dim}, not {dim})" if model.config.dim != dim else ""
        raise LoftUpError(
            f"init {cfg.init} was trained for backbone {model.backbone}, not {cfg.backbone}"
            f"{widths}; set backbone={model.backbone}, or init to a stage-1 result of "
            f"{cfg.backbone}"
        )
    if model.config.dim != dim:
        raise LoftUpError(
            f"init {cfg.init} upsamples C={model.config.dim} features but backbone "
            f"{cfg.backbone} gives C={dim}; use the stage-1 result of this backbone"
        )
    was = getattr(model, "backbone_norm", None)
    if say and input_norm is not None and was is not None and was != input_norm:
        # a legitimate experiment (fine-tuning on the backbone's own preprocessing), so not
        # refused; but a silent change of the features the upsampler learnt is not
        log.warning(
            "init %s was trained on %s features given the image with backbone_norm=%s; this "
            "run gives it with backbone_norm=%s (other features): set backbone_norm=%s to go "
            "on with the same", cfg.init, cfg.backbone, was, input_norm, was,
        )  # fmt: skip
    arch = stage2_architecture(cfg, model.config, f"init {cfg.init}")
    model.config = dataclasses.replace(model.config, **arch)  # attention_window, if set
    if say and arch != dataclasses.asdict(cfg.model):
        log.info("stage 2 keeps the architecture of %s: %s", cfg.init, arch)
    cfg = dataclasses.replace(cfg, model=ModelConfig(**arch))
    return model.train(), cfg, start.extras  # a plain state dict: those modules start fresh


def _arch(config: LoftUpConfig) -> dict:
    """An upsampler's architecture as the keys of ``model.*`` (its width C aside)."""
    return {k: v for k, v in config.to_dict().items() if k != "dim"}


def given_model_keys(cfg: TrainConfig) -> set[str]:
    """The ``model.*`` keys the user set: those :func:`~.config.load_config` recorded, and any
    that differ from the default (a TrainConfig built in Python records none)."""
    default = dataclasses.asdict(ModelConfig())
    mine = dataclasses.asdict(cfg.model)
    return set(getattr(cfg, "model_given", ())) | {k for k in mine if mine[k] != default[k]}


def stage2_architecture(cfg: TrainConfig, start: LoftUpConfig, source: str) -> dict:
    """Stage 2's architecture: that of the upsampler it starts from (``start``, named in an
    error as ``source``), as ``model.*`` keys, with the user's ``model.attention_window`` if
    set (it changes no parameter). A ``model.*`` key the user set to another value than
    ``start``'s is refused: the weights stage 2 starts from are of ``start``. A null the user
    set means what it means to LoftUpConfig (``mlp_dim: null``, a stage-1 run's printed or
    saved config, is ``dim``), so is compared as resolved."""
    arch = _arch(start)
    mine = dataclasses.asdict(cfg.model)
    resolved = LoftUpConfig(dim=start.dim, **mine).to_dict()
    given = given_model_keys(cfg)
    for key in sorted(given - {"attention_window"}):
        if resolved[key] != arch[key]:
            raise UsageError(
                f"model.{key}={_show(mine[key])} contradicts {source}, which has "
                f"model.{key}={_show(arch[key])}: stage 2 keeps the architecture it starts from; "
                f"drop model.{key} (only model.attention_window may change), or train a stage-1 "
                f"run with model.{key}={_show(mine[key])} and start from it"
            )
    if "attention_window" in given:
        arch = {**arch, "attention_window": cfg.model.attention_window}
    return arch


def init_architecture(init: str | Init) -> LoftUpConfig:
    """The architecture of stage 2's ``init`` (a source, read without the backbone, or read)."""
    start = init if isinstance(init, Init) else read_init(init)
    return start.upsampler.config


def with_init_architecture(cfg: TrainConfig) -> TrainConfig:
    """A stage-2 ``cfg`` with the architecture it will train (``--print-config``): its
    ``init``'s, where that is a file or folder here, with the ``model.*`` keys set checked
    against it; ``cfg`` as it is where init is not here (a released name is not downloaded)."""
    if not cfg.init or not Path(cfg.init).expanduser().exists():
        return cfg
    arch = stage2_architecture(cfg, init_architecture(cfg.init), f"init {cfg.init}")
    return dataclasses.replace(cfg, model=ModelConfig(**arch))


def build_trainee(cfg: TrainConfig, upsampler: LoftUp, patch: int, extras: dict) -> Trainee:
    trainee = Trainee(
        upsampler,
        patch=patch,
        dropout=cfg.recon.dropout,
        blur=cfg.recon.blur,
        uncertainty=cfg.recon.uncertainty,
    )
    if "downsampler" in extras:
        trainee.downsampler.load_state_dict(extras["downsampler"])
    if "uncertainty" in extras and trainee.uncertainty is not None:
        trainee.uncertainty.load_state_dict(extras["uncertainty"])
    return trainee


def build_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "nadam":
        return torch.optim.NAdam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def checkpoint_payload(
    cfg, trainee, optimizer, teacher, step, history, skipped, images: int | None = None
) -> dict:
    """Everything ``--resume`` needs, in types ``torch.load(weights_only=True)`` accepts;
    ``images``: how many the run's data holds (its order depends on it)."""
    from .. import __version__

    up = trainee.upsampler
    return {
        "model": _cpu(up.state_dict()),
        "model_config": up.config.to_dict(),
        "backbone": cfg.backbone,
        "backbone_norm": cfg.backbone_norm,
        "stage": cfg.stage,
        "step": step,
        "config": cfg.to_dict(),
        "downsampler": _cpu(trainee.downsampler.state_dict()),
        "uncertainty": _cpu(trainee.uncertainty.state_dict()) if trainee.uncertainty else {},
        "optimizer": optimizer.state_dict(),
        "teacher": _cpu(teacher.state_dict()) if teacher is not None else {},
        "rng": rng_state(),
        "history": pack_history(history),
        "skipped": skipped,
        "images": images,
        "loftup_version": __version__,
    }


def restore(ckpt: dict, trainee: Trainee, teacher) -> None:
    """Load the module states of a checkpoint (the optimiser is loaded once it exists)."""
    trainee.upsampler.load_state_dict(ckpt["model"], strict=True)
    trainee.downsampler.load_state_dict(ckpt["downsampler"], strict=True)
    if trainee.uncertainty is not None:
        trainee.uncertainty.load_state_dict(ckpt["uncertainty"], strict=True)
    if teacher is not None:
        teacher.load_state_dict(ckpt["teacher"])
