"""Training configuration: typed dataclasses, read from YAML, overridable with ``key=value``.

The defaults are the paper's released recipe (DINOv2 ViT-S/14 on SA-1B, see method.md §2);
:func:`default_config` gives stage 1's or stage 2's. A YAML file (or a packaged config name such
as ``stage1_sa1b``) overrides them, then ``key=value`` pairs do (dotted keys, YAML values:
``optim.lr=3e-4``, ``data.root=/data/sa1b``, ``model.attention_window=5``, ``log.out_dir=null``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import LoftUpError, UsageError
from ..featurizers import INPUT_NORMS
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
    max_image_pixels: int | None = None


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
      backbone, backbone_weights: the frozen featurizer (``loftup.get_featurizer``);
        backbone_norm: what it is given (its ``input_norm``): "imagenet", the ImageNet-
        normalised image as it is (the paper's recipe), or "own" (CLIP's, SigLIP's own).
      init: stage 2's starting point (any ``load_upsampler`` source: a stage-1 checkpoint, folder,
        released name).
      batch_size: the global batch (split over processes under torchrun).
      epochs, max_steps: one epoch over the data, unless max_steps stops earlier.
      device: ``auto`` (cuda when available), ``cpu``, ``cuda``, ``cuda:1``...; under torchrun a
        CUDA device is each process's own GPU, ``cuda:LOCAL_RANK``.
      precision: ``fp32`` or ``bf16`` (autocast for the backbone and the upsampler).

    The field defaults are stage 1's recipe, ``optim`` included (NAdam, lr 1e-4, early
    clipping): for stage 2 start from ``default_config(2)`` or ``load_config(..., stage=2)``,
    which hold its AdamW at lr 1e-3 and weight decay 0.01, not from ``TrainConfig(stage=2)``.
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
    optim: OptimConfig = field(default_factory=OptimConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    mask_noise: MaskNoise = field(default_factory=MaskNoise)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        validate(self)

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
    path = Path(name_or_path).expanduser()
    if path.is_file():
        where = str(path)
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise UsageError(f"config {path} is not a text (YAML) file") from None
    elif path.is_dir():
        raise UsageError(f"config {path} is a folder; give a YAML file or a packaged config name")
    else:
        name = name_or_path[:-5] if name_or_path.endswith(".yaml") else name_or_path
        entry = resources.files("loftup") / "configs" / f"{name}.yaml"
        if not entry.is_file():
            raise UsageError(
                f"no config file {name_or_path!r}; give a path or one of the packaged configs: "
                f"{', '.join(packaged_configs())}"
            )
        where, text = f"{name}.yaml", entry.read_text()
    data = _safe_yaml(text, f"config {where}") or {}
    if not isinstance(data, dict):
        raise UsageError(
            f"config {where} must be a YAML mapping of keys (stage: 1, batch_size: 8, ...), got "
            f"{type(data).__name__}"
        )
    return data


def _safe_yaml(text: str, what: str):
    """``yaml.safe_load(text)``; a syntax error or a Python tag (``!!python/object/apply``,
    which safe_load never builds) is a UsageError naming ``what``, the line and the problem."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if isinstance(e, yaml.constructor.ConstructorError) and "tag" in problem:
            problem = (
                f"{problem.split('tag ', 1)[-1]} is not allowed: configs hold plain values "
                "(numbers, strings, lists, mappings), never Python objects"
            )
        raise UsageError(f"{what}:{at} {problem}; nothing was run") from None


def parse_overrides(pairs: list[str]) -> dict:
    """``["optim.lr=1e-3", "data.root=/x"]`` -> nested dict with YAML-parsed values."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"override {pair!r} is not key=value (e.g. optim.lr=3e-4)")
        key, text = pair.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise UsageError(f"override {pair!r} has no key before '=' (e.g. optim.lr=3e-4)")
        value = _safe_yaml(text, f"override {pair}") if text else ""
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                section = ".".join(parts[: i + 1])
                raise UsageError(
                    f"override {pair!r}: an earlier override set {section} to {_show(node)}, but "
                    f"it is a section; set its keys ({key}=...) without {section}={_show(node)}"
                )
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

    ``stage`` (the command line's ``--stage``) must agree with a stage the file sets. Every
    value is checked (type first, then its range) before anything is loaded: a
    :class:`~loftup.errors.UsageError` names the key, the value and what it may be.
    """
    data = read_yaml(source) if isinstance(source, str) else dict(source or {})
    data = merge(data, parse_overrides(overrides or []))
    file_stage = data.get("stage")
    if file_stage is not None and (isinstance(file_stage, bool) or file_stage not in (1, 2)):
        raise UsageError(f"config key stage must be 1 or 2, got {file_stage!r}")
    if stage is not None and file_stage is not None and int(file_stage) != int(stage):
        raise UsageError(
            f"--stage {stage} disagrees with the config's stage: {file_stage}; use the stage-"
            f"{stage} config (e.g. stage{stage}_sa1b) or override stage={stage}"
        )
    stage = int(stage if stage is not None else file_stage or 1)
    data["stage"] = stage
    defaults = default_config(stage).to_dict()
    cfg = build(TrainConfig, merge(defaults, data), "")
    # stage 2 takes its architecture from init: which model keys the user set, to be checked
    # against it (loftup.train.build.stage2_architecture); not a field, so not saved
    model = data.get("model")
    cfg.model_given = frozenset(model) if isinstance(model, dict) else frozenset()
    return cfg


def build(cls, data: dict, prefix: str):
    """A dataclass from a dict, checking keys and types (nested dataclasses included)."""
    if not isinstance(data, dict):
        raise _not_a_section(prefix.rstrip("."), data, cls)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        raise UsageError(
            f"unknown config key {prefix}{unknown[0]}; known keys here: {', '.join(names)}"
        )
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        kwargs[name] = _coerce(hints[name], data[name], prefix + name)
    try:
        return cls(**kwargs)
    except LoftUpError:
        raise
    except (TypeError, ValueError) as e:
        where = f" section {prefix.rstrip('.')}" if prefix else ""
        raise UsageError(f"bad config{where}: {e}") from None


def _not_a_section(key: str, value, cls) -> UsageError:
    if not key:
        return UsageError(f"a config must be a mapping of keys, got {type(value).__name__}")
    first = dataclasses.fields(cls)[0].name
    return UsageError(
        f"config key {key} is a section and must be a mapping of its keys (e.g. "
        f"{key}.{first}=...), got {_show(value)}"
    )


def _show(value) -> str:
    """A value as YAML writes it (null, true), else its repr."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def _coerce(hint, value, key: str):
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if is_union else ()
    if value is None:
        if type(None) in args:
            return None
        raise UsageError(f"config key {key} cannot be null")
    base = next(a for a in args if a is not type(None)) if is_union else hint
    origin = typing.get_origin(base) or base
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"config key {key} must be a list, got {value!r}")
        (item,) = typing.get_args(base) or (object,)
        return [_coerce(item, v, key) for v in value]
    if origin is bool:
        if not isinstance(value, bool):
            raise UsageError(f"config key {key} must be true or false, got {value!r}")
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
    raise UsageError(
        f"config key {key} must be {getattr(origin, '__name__', origin)}, got {value!r}"
    )


# -- the values each key may take -------------------------------------------------------------


def _ge(low):
    return (lambda v: v >= low), f">= {low}"


def _gt(low):
    return (lambda v: v > low), f"> {low}"


def _between(low, high, *, open_high: bool = False):
    if open_high:
        return (lambda v: low <= v < high), f"in [{low}, {high})"
    return (lambda v: low <= v <= high), f"in [{low}, {high}]"


_FRACTION = _between(0, 1)

#: dotted key -> (test, the valid range in words); lists are checked item by item. Every float
#: must also be finite (NaN and infinities are refused whatever the key).
RANGES: dict[str, tuple] = {
    "batch_size": _ge(1),
    "epochs": _ge(1),
    "max_steps": _ge(0),
    "seed": _between(0, 2**32, open_high=True),
    "model.depth": _ge(1),
    "model.num_heads": _ge(1),
    "model.n_freqs": _ge(0),
    "model.grid_freqs": _ge(0),
    "model.mlp_dim": _ge(1),
    "model.attention_window": _ge(1),
    "data.max_masks": _ge(1),
    "data.max_images": _ge(1),
    "data.superpixels": _ge(1),
    "data.num_workers": _ge(0),
    "data.max_image_pixels": _ge(0),
    "optim.lr": _gt(0),
    "optim.weight_decay": _ge(0),
    "optim.clip_grad_norm": _gt(0),
    "optim.clip_steps": _ge(0),
    "optim.momentum": _between(0, 1, open_high=True),
    "recon.weight": _ge(0),
    "recon.proj_dim": _ge(1),
    "recon.max_shift": _ge(0),
    "recon.zoom": _gt(0),
    "recon.dropout": _between(0, 1, open_high=True),
    # an even box is centred half a pixel off each pixel: the downsampled grid would shift
    "recon.blur": (
        (lambda v: v in (0, 1) or (v > 1 and v % 2 == 1)),
        "0 or 1 (none) or odd (a blur centred on each pixel)",
    ),
    "stage1.image_size": _ge(1),
    "stage1.n_jitters": _ge(1),
    "stage1.tv_weight": _ge(0),
    "stage1.target_weight": _ge(0),
    "stage1.mask_alpha": _FRACTION,
    "stage2.load_size": _ge(1),
    "stage2.global_sizes": _ge(1),
    "stage2.n_jitters": _ge(1),
    "stage2.crop_align": _ge(1),
    "stage2.teacher_alpha": _FRACTION,
    "stage2.affinity_weight": _ge(0),
    "stage2.central": ((lambda v: 0 < v <= 1), "in (0, 1]"),
    "stage2.affinity_max_side": _ge(1),
    "stage2.tv_weight": _ge(0),
    "stage2.ema_beta": _FRACTION,
    "stage2.ema_every": _ge(1),
    "mask_noise.erode": _FRACTION,
    "mask_noise.dilate": _FRACTION,
    "mask_noise.drop": _FRACTION,
    "mask_noise.merge": _FRACTION,
    "mask_noise.blobs": _FRACTION,
    "mask_noise.max_radius": _FRACTION,
    "log.log_every": _ge(1),
    "log.ckpt_every": _ge(1),
    "log.viz_every": _ge(0),
    "log.num_viz": _ge(0),
}

#: dotted key -> the words it may be (strings from a fixed set)
CHOICES: dict[str, tuple[str, ...]] = {
    "precision": ("fp32", "bf16"),
    "backbone_norm": tuple(INPUT_NORMS),  # get_featurizer's input_norm
    "data.masks": ("sa1b", "sam", "superpixels"),
    "optim.name": ("nadam", "adamw", "adam", "sgd"),
    "stage2.teacher_view": ("crops", "full", "both"),
}

#: keys that must not be empty strings, and what to set instead
NOT_EMPTY = {
    "backbone": "a backbone name such as dinov2_vits14",
    "device": "auto, cpu or cuda",
    "log.out_dir": "the run's folder: --out DIR or log.out_dir=DIR",
}


def _leaves(cfg) -> list[tuple[str, object, str, object]]:
    """(dotted key, section object, field name, type hint) of every value of ``cfg``, checking
    that each section is one (a config built by hand may hold anything)."""
    out = []
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        if not dataclasses.is_dataclass(hint):
            out.append((f.name, cfg, f.name, hint))
            continue
        section = getattr(cfg, f.name)
        if not isinstance(section, hint):
            raise _not_a_section(f.name, section, hint)
        sub_hints = typing.get_type_hints(hint)
        for g in dataclasses.fields(hint):
            out.append((f"{f.name}.{g.name}", section, g.name, sub_hints[g.name]))
    return out


def validate(cfg: TrainConfig) -> None:
    """Check every value of ``cfg``: its type first (a number given as a word is named as such,
    before any range), then the range it may take (NaN and infinities refused), then the few
    rules between keys. Raises :class:`~loftup.errors.UsageError` naming the key as the user
    writes it (``stage1.image_size``), the value and what it may be. Cheap: runs whenever a
    config is built and again when a run starts, before any backbone, weights or data."""
    leaves = _leaves(cfg)
    for key, owner, name, hint in leaves:  # types (numbers written as YAML strings normalised)
        object.__setattr__(owner, name, _coerce(hint, getattr(owner, name), key))
    if cfg.stage not in (1, 2):
        raise UsageError(f"config key stage must be 1 or 2, got {cfg.stage!r}")
    for key, owner, name, _ in leaves:
        value = getattr(owner, name)
        if key in CHOICES and value not in CHOICES[key]:
            *first, last = CHOICES[key]
            raise UsageError(
                f"config key {key} must be {', '.join(first)} or {last}, got {value!r}"
            )
        if key in NOT_EMPTY and not value.strip():
            raise UsageError(f"config key {key} is empty; set it to {NOT_EMPTY[key]}")
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None or isinstance(item, (bool, str)):
                continue
            test, words = RANGES.get(key, (None, ""))
            finite = not isinstance(item, float) or math.isfinite(item)
            if finite and (test is None or test(item)):
                continue
            noun = "an integer" if isinstance(item, int) else "a finite number"
            what = f"{noun} {words}".rstrip()
            each = " (each item)" if isinstance(value, list) else ""
            raise UsageError(
                f"config key {key}{each} must be {what}, got {item!r}{_default_hint(cfg, key)}"
            )
    _check_between_keys(cfg)


def _default_hint(cfg: TrainConfig, key: str) -> str:
    value = default_config(cfg.stage).to_dict()
    for part in key.split("."):
        value = value[part]
    return "" if value is None else f" (the recipe's value: {value})"


def _check_between_keys(cfg: TrainConfig) -> None:
    zoom = cfg.recon.zoom
    if len(zoom) != 2 or zoom[0] > zoom[1]:
        raise UsageError(
            f"config key recon.zoom must be [low, high] with 0 < low <= high, got {zoom!r} "
            "(the recipe's value: [0.9, 1.1])"
        )
    if not cfg.data.superpixels:
        raise UsageError(
            "config key data.superpixels is empty; give one or more SLIC granularities, e.g. "
            "data.superpixels=[16, 64]"
        )
    if cfg.stage2.global_sizes == []:
        raise UsageError(
            "config key stage2.global_sizes is empty; give one or more sizes, or null for the "
            "recipe's"
        )
    if cfg.stage == 2 and cfg.stage2.global_sizes:
        _check_global_sizes_fit(cfg.stage2.global_sizes, cfg.stage2.load_size)
    if cfg.stage == 1 and cfg.init:
        raise UsageError(
            f"init={cfg.init} is given to stage 1, which starts from random weights (method.md "
            "§2); init is the stage-1 checkpoint stage 2 starts from: drop init, or train "
            "--stage 2"
        )


def _check_global_sizes_fit(sizes: list[int], load_size: int, whose: str = "") -> None:
    """Stage 2's global views are cut from the ``load_size`` image: none may be larger."""
    if max(sizes) > load_size:
        raise UsageError(
            f"config key stage2.global_sizes {sizes}{whose} exceed stage2.load_size {load_size}: "
            "the teacher's crops are cut from the load_size image; raise stage2.load_size or "
            "set smaller stage2.global_sizes"
        )


def _check_blur_fits(cfg: TrainConfig, patch: int) -> None:
    """The downsampler's blur pads the high-res map by reflection, ``recon.blur // 2`` pixels
    each side, which must be fewer than the map's side (stage 1's image, stage 2's smallest
    global view)."""
    from .batches import default_global_sizes

    if cfg.stage == 1:
        side, what = cfg.stage1.image_size, "stage1.image_size"
    else:
        side = min(cfg.stage2.global_sizes or default_global_sizes(patch))
        what = "the smallest of stage2.global_sizes"
    if cfg.recon.blur // 2 >= side:
        raise UsageError(
            f"config key recon.blur={cfg.recon.blur} must be narrower than twice the smallest map "
            f"it blurs ({what} {side}); the recipe uses 5"
        )


def check_backbone_fit(cfg: TrainConfig) -> None:
    """The rules that depend on the backbone's registered patch size and width (read from the
    registry, nothing loaded): stage 1's ``stage1.image_size`` must hold a patch, the global
    views of stage 2 too, and (stage 1, whose architecture comes from ``model``) ``num_heads``
    must divide the token width ``dim + 4 * grid_freqs``. An unknown backbone is named here."""
    from ..featurizers import resolve

    spec = resolve(cfg.backbone)
    patch, dim = spec.patch_size, spec.dim
    _check_blur_fits(cfg, patch)
    if cfg.stage == 1:
        if cfg.stage1.image_size < patch:
            raise UsageError(
                f"config key stage1.image_size must be at least the patch size of {cfg.backbone} "
                f"({patch} px), got {cfg.stage1.image_size}; the recipe uses 224"
            )
        width = dim + 4 * cfg.model.grid_freqs
        if width % cfg.model.num_heads:
            fits = [h for h in range(1, min(width, 16) + 1) if width % h == 0]
            raise UsageError(
                f"config key model.num_heads={cfg.model.num_heads} does not divide the token "
                f"width {width} ({cfg.backbone}'s {dim} channels + 4 x model.grid_freqs "
                f"{cfg.model.grid_freqs}); use one of {', '.join(map(str, fits))}"
            )
    else:
        from .batches import default_global_sizes

        sizes = cfg.stage2.global_sizes or default_global_sizes(patch)
        _check_global_sizes_fit(
            sizes, cfg.stage2.load_size, f" (the global views of {cfg.backbone})"
        )
        if min(sizes) < patch:
            raise UsageError(
                f"config key stage2.global_sizes {sizes} must each be at least the patch size of "
                f"{cfg.backbone} ({patch} px)"
            )
        if cfg.stage2.load_size < patch:
            raise UsageError(
                f"config key stage2.load_size must be at least the patch size of {cfg.backbone} "
                f"({patch} px), got {cfg.stage2.load_size}"
            )
