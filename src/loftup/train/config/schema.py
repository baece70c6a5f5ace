"""The training config's typed dataclasses, one per section, and the recipe's defaults per stage.

Every field is checked when a config is built (:func:`loftup.train.config.validate`)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from ...model_config import LoftUpConfig
from ..noise import MaskNoise


def _model_config() -> type:
    """:class:`ModelConfig`: the fields of :class:`~loftup.model.LoftUpConfig` but ``dim`` (the
    backbone's width), same names, types, defaults and bounds, so that an architecture field
    added there is a ``model.*`` key of the training YAML with nothing written here."""
    hints = typing.get_type_hints(LoftUpConfig)
    fields = [
        (
            f.name,
            hints[f.name],
            field(default=f.default, default_factory=f.default_factory, metadata=f.metadata),
        )
        for f in dataclasses.fields(LoftUpConfig)
        if f.name not in FROM_BACKBONE
    ]
    cls = dataclasses.make_dataclass("ModelConfig", fields)
    cls.__module__ = __name__
    cls.__doc__ = (
        "The upsampler's architecture, the training config's ``model`` section: the fields of "
        "``LoftUpConfig`` (see there) but ``dim``, which comes from the backbone."
    )
    return cls


#: the LoftUpConfig fields a training run takes from its backbone, not from ``model.*``
FROM_BACKBONE = ("dim",)

ModelConfig = _model_config()


@dataclass
class DataConfig:
    """Where the images and masks come from (see :class:`loftup.data.dataset.MaskedImages`).

    ``timeout``: seconds the loader waits for a batch from its workers (with
    ``num_workers=0``, for each item from the thread that reads it) before the run stops with
    an error naming the file being read; 0 waits for ever.
    """

    root: str = ""
    masks: str = "sa1b"
    max_masks: int = 150
    max_images: int | None = None
    superpixels: list[int] = field(default_factory=lambda: [16, 64])
    sam_weights: str | None = None
    cache_dir: str | None = None
    num_workers: int = 4
    max_image_pixels: int | None = None
    timeout: float = 600.0


@dataclass
class OptimConfig:
    """Optimiser (``nadam``, ``adamw``, ``adam`` or ``sgd``) and the early gradient clipping.

    ``momentum`` is used by ``sgd`` only.
    """

    name: str = "nadam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    clip_grad_norm: float = 1e-4
    clip_steps: int = 10
    momentum: float = 0.9


class _StageOptim(OptimConfig):
    """The ``optim`` a TrainConfig is built without: replaced, as the config is built, by its
    stage's recipe (:data:`STAGE_OPTIM`), so that ``TrainConfig(stage=2)`` trains with stage
    2's AdamW, not stage 1's NAdam."""


#: each stage's optimiser in the released recipe (method.md §2)
STAGE_OPTIM = {
    1: OptimConfig(),  # NAdam, lr 1e-4, no weight decay, clip 1e-4 for the first 10 steps
    2: OptimConfig("adamw", 1e-3, 0.01, clip_steps=0),
}


@dataclass
class ReconConfig:
    """The multi-view reconstruction loss shared by both stages."""

    weight: float = 1.0
    proj_dim: int = 64
    max_shift: float = 8.0
    zoom: list[float] = field(default_factory=lambda: [0.9, 1.1])
    uncertainty: bool = True
    dropout: float = 0.2
    blur: int = 5


@dataclass
class Stage1Config:
    """Stage 1: mask-bicubic pseudo ground truth."""

    image_size: int = 224
    n_jitters: int = 4
    tv_weight: float = 0.001
    target_weight: float = 1.0
    mask_alpha: float = 0.8


@dataclass
class Stage2Config:
    """Stage 2: self-distillation from an EMA teacher on zoomed crops.

    ``teacher_view``: ``crops`` (the paper: the teacher sees s x s crops of the load_size image),
    ``full`` (the teacher sees the whole global view) or ``both`` (the mean of both losses).
    ``global_sizes``: sizes s of the global view (default by patch size: 224, 336, 448, 518 for
    patch 14; 224, 336, 448, 512 for 16). ``affinity_max_side``: regions larger than this are
    resized down before the affinity (an N x N affinity of a 299-px region would not fit).
    """

    load_size: int = 896
    global_sizes: list[int] | None = None
    n_jitters: int = 2
    crop_align: int = 16
    teacher_view: str = "crops"
    teacher_alpha: float = 0.5
    affinity_weight: float = 20.0
    central: float = 0.8
    affinity_max_side: int = 56
    tv_weight: float = 0.05
    ema_beta: float = 0.99
    ema_every: int = 10


@dataclass
class LogConfig:
    """Run folder, checkpoints, scalars and pictures (all written on rank 0 only)."""

    out_dir: str = "runs/loftup"
    log_every: int = 10
    ckpt_every: int = 1000
    #: also a checkpoint once this many minutes have passed since the last (0: by steps only)
    ckpt_minutes: float = 10.0
    viz_every: int = 1000
    num_viz: int = 4
    tensorboard: bool = True
    progress: bool = True


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint.

    Arguments:
      stage: 1 (mask-bicubic targets) or 2 (self-distillation; needs ``init``).
      backbone, backbone_weights: the frozen featurizer (``loftup.get_featurizer``);
        backbone_norm: what it is given (its ``input_norm``): "imagenet", the ImageNet-
        normalised image as it is (the paper's recipe), or "own" (CLIP's, SigLIP's own).
      init: stage 2's starting point (any ``load_upsampler`` source: a stage-1 checkpoint, folder,
        released name).
      batch_size: the global batch (split over processes under torchrun).
      epochs, max_steps: the run's length: max_steps steps where set (fewer or more than an
        epoch; epochs then counts for nothing), else epochs passes over the data.
      device: ``auto`` (cuda when available), ``cpu``, ``cuda``, ``cuda:1``...; under torchrun a
        CUDA device is each process's own GPU, ``cuda:LOCAL_RANK``.
      precision: ``fp32`` or ``bf16`` (autocast for the backbone and the upsampler).

    The field defaults are the recipe's; ``optim``, when not given, is that of ``stage``
    (:data:`STAGE_OPTIM`: stage 1's NAdam at lr 1e-4 with early clipping, stage 2's AdamW at
    lr 1e-3 and weight decay 0.01).
    """

    stage: int = 1
    backbone: str = "dinov2_vits14"
    backbone_weights: str | None = None
    backbone_norm: str = "imagenet"
    init: str | None = None
    batch_size: int = 8
    epochs: int = 1
    max_steps: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=_StageOptim)
    recon: ReconConfig = field(default_factory=ReconConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    mask_noise: MaskNoise = field(default_factory=MaskNoise)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        from .checks import validate

        validate(self)  # the stage checked (and "2" read as 2) before its optimiser is chosen
        if type(self.optim) is _StageOptim:  # not given: the stage's
            self.optim = dataclasses.replace(STAGE_OPTIM[self.stage])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_config(stage: int = 1) -> TrainConfig:
    """The released recipe's defaults for ``stage``."""
    return TrainConfig(stage=stage)
