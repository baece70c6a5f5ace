"""Training configuration: typed dataclasses, read from YAML, overridable with ``key=value``.

The defaults are the paper's released recipe (DINOv2 ViT-S/14 on SA-1B, see method.md §2);
:func:`default_config` gives stage 1's or stage 2's. A YAML file (or a packaged config name such
as ``stage1_sa1b``) overrides them, then ``key=value`` pairs do (dotted keys, YAML values:
``optim.lr=3e-4``, ``data.root=/data/sa1b``, ``model.attention_window=5``, ``log.out_dir=null``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import LoftUpError
from .noise import MaskNoise


@dataclass
class ModelConfig:
    """The upsampler's architecture (its width C comes from the backbone); see ``LoftUpConfig``."""

    depth: int = 2
    num_heads: int = 4
    n_freqs: int = 20
    grid_freqs: int = 5
    mlp_dim: int | None = None
    coords: bool = True
    attention_window: int | None = None


@dataclass
class DataConfig:
    """Where the images and masks come from (see :class:`loftup.data.dataset.MaskedImages`)."""

    root: str = ""
    masks: str = "sa1b"
    max_masks: int = 150
    max_images: int | None = None
    superpixels: list[int] = field(default_factory=lambda: [16, 64])
    sam_weights: str | None = None
    cache_dir: str | None = None
    num_workers: int = 4


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
    viz_every: int = 1000
    num_viz: int = 4
    tensorboard: bool = True
    progress: bool = True


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint.

    Arguments:
      stage: 1 (mask-bicubic targets) or 2 (self-distillation; needs ``init``).
      backbone, backbone_weights: the frozen featurizer (``loftup.get_featurizer``).
      init: stage 2's starting point (any ``load_upsampler`` source: a stage-1 checkpoint, folder,
        released name).
      batch_size: the global batch (split over processes under torchrun).
      epochs, max_steps: one epoch over the data, unless max_steps stops earlier.
      device: ``auto`` (cuda when available), ``cpu``, ``cuda``, ``cuda:1``...; under torchrun a
        CUDA device is each process's own GPU, ``cuda:LOCAL_RANK``.
      precision: ``fp32`` or ``bf16`` (autocast for the backbone and the upsampler).
    """

    stage: int = 1
    backbone: str = "dinov2_vits14"
    backbone_weights: str | None = None
    init: str | None = None
    batch_size: int = 8
    epochs: int = 1
    max_steps: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    mask_noise: MaskNoise = field(default_factory=MaskNoise)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise LoftUpError(f"stage must be 1 or 2, got {self.stage}")
        if self.stage2.teacher_view not in ("crops", "full", "both"):
            raise LoftUpError(
                f"stage2.teacher_view must be crops, full or both, got {self.stage2.teacher_view!r}"
            )
        if self.precision not in ("fp32", "bf16"):
            raise LoftUpError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.optim.name not in ("nadam", "adamw", "adam", "sgd"):
            raise LoftUpError(
                f"optim.name must be nadam, adamw, adam or sgd, got {self.optim.name!r}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_config(stage: int = 1) -> TrainConfig:
    """The released recipe's defaults for ``stage``."""
    if stage == 2:
        return TrainConfig(stage=2, optim=OptimConfig("adamw", 1e-3, 0.01, clip_steps=0))
    return TrainConfig(stage=stage)


def packaged_configs() -> list[str]:
    """Names of the YAML configs shipped inside the package."""
    folder = resources.files("loftup") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_yaml(name_or_path: str) -> dict:
    """A config file's contents: a path, or the name of a packaged config."""
    import yaml

    path = Path(name_or_path).expanduser()
    if path.is_file():
        text = path.read_text()
    else:
        name = name_or_path[:-5] if name_or_path.endswith(".yaml") else name_or_path
        entry = resources.files("loftup") / "configs" / f"{name}.yaml"
        if not entry.is_file():
            raise LoftUpError(
                f"no config file {name_or_path!r}; give a path or one of the packaged configs: "
                f"{', '.join(packaged_configs())}"
            )
        text = entry.read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise LoftUpError(
            f"config {name_or_path} must be a YAML mapping, got {type(data).__name__}"
        )
    return data


def parse_overrides(pairs: list[str]) -> dict:
    """``["optim.lr=1e-3", "data.root=/x"]`` -> nested dict with YAML-parsed values."""
    import yaml

    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise LoftUpError(f"override {pair!r} is not key=value (e.g. optim.lr=3e-4)")
        key, text = pair.split("=", 1)
        value = yaml.safe_load(text) if text else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def merge(base: dict, update: dict) -> dict:
    """Recursive dict update (``update`` wins)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    source: str | dict | None = None, overrides: list[str] | None = None, stage: int | None = None
) -> TrainConfig:
    """Defaults of the stage, then the YAML file/name or dict ``source``, then ``overrides``.

    ``stage`` (the command line's ``--stage``) must agree with a stage the file sets.
    """
    data = read_yaml(source) if isinstance(source, str) else dict(source or {})
    data = merge(data, parse_overrides(overrides or []))
    file_stage = data.get("stage")
    if stage is not None and file_stage is not None and int(file_stage) != int(stage):
        raise LoftUpError(
            f"--stage {stage} disagrees with the config's stage: {file_stage}; use the stage-"
            f"{stage} config (e.g. stage{stage}_sa1b) or override stage={stage}"
        )
    stage = int(stage if stage is not None else file_stage or 1)
    data["stage"] = stage
    defaults = default_config(stage).to_dict()
    return build(TrainConfig, merge(defaults, data), "")


def build(cls, data: dict, prefix: str):
    """A dataclass from a dict, checking keys and types (nested dataclasses included)."""
    if not isinstance(data, dict):
        raise LoftUpError(f"config section {prefix or 'top level'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise LoftUpError(
            f"unknown config key {prefix}{unknown[0]}; known keys here: {', '.join(names)}"
        )
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        kwargs[name] = _coerce(hints[name], data[name], prefix + name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        where = f" section {prefix.rstrip('.')}" if prefix else ""
        raise LoftUpError(f"bad config{where}: {e}") from None


def _coerce(hint, value, key: str):
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if is_union else ()
    if value is None:
        if type(None) in args:
            return None
        raise LoftUpError(f"config key {key} cannot be null")
    base = next(a for a in args if a is not type(None)) if is_union else hint
    origin = typing.get_origin(base) or base
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise LoftUpError(f"config key {key} must be a list, got {value!r}")
        (item,) = typing.get_args(base) or (object,)
        return [_coerce(item, v, key) for v in value]
    if origin is bool:
        if not isinstance(value, bool):
            raise LoftUpError(f"config key {key} must be true or false, got {value!r}")
        return value
    if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if origin is float and isinstance(value, str):  # YAML 1.1 reads 3e-4 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if origin is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if origin is str and isinstance(value, str):
        return value
    if origin is object:
        return value
    raise LoftUpError(
        f"config key {key} must be {getattr(origin, '__name__', origin)}, got {value!r}"
    )
