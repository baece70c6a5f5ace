"""The values each config key may take, checked before anything is loaded: types, ranges,
choices, the rules between keys, and (:func:`check_backbone_fit`) those that depend on the
backbone's registered patch size and width."""

from __future__ import annotations

import dataclasses
import math
import typing

from ...errors import UsageError
from ...featurizers import INPUT_NORMS
from ...model_config import heads_dividing, integer_bounds
from .affinity import check_affinity_positions, check_crop_room
from .paths import PATH_KEYS, check_home
from .schema import FROM_BACKBONE, TrainConfig, default_config
from .typed import _coerce, _not_a_section


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
    # the architecture's bounds are LoftUpConfig's own, one place for both
    **{f"model.{k}": _ge(v) for k, v in integer_bounds().items() if k not in FROM_BACKBONE},
    "data.max_masks": _ge(1),
    "data.max_images": _ge(1),
    "data.superpixels": _ge(1),
    "data.num_workers": _ge(0),
    "data.max_image_pixels": _ge(0),
    "data.timeout": _ge(0),
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
    "log.ckpt_minutes": (
        (lambda v: v >= 0),
        ">= 0 (minutes between checkpoints by wall time; 0: only every log.ckpt_every steps)",
    ),
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
        if key in PATH_KEYS and isinstance(value, str):
            check_home(key, value)  # read with Path.expanduser, which refuses ~nobody
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
    return "" if value is None else f" (the paper's recipe: {value})"


def _check_between_keys(cfg: TrainConfig) -> None:
    zoom = cfg.recon.zoom
    if len(zoom) != 2 or zoom[0] > zoom[1]:
        raise UsageError(
            f"config key recon.zoom must be [low, high] with 0 < low <= high, got {zoom!r} "
            "(the paper's recipe: [0.9, 1.1])"
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
    from ..batches import default_global_sizes

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


def _check_windows_fit(sides: list[int], key: str, patch: int, backbone: str) -> None:
    """The downsampler lays one patch-wide window per cell of the backbone's grid over each
    high-res map (:func:`loftup.train.downsampler.window_stride`): a side of about a multiple
    of the patch. Checked here, before any weights, rather than at the first step."""
    from ...featurizers.sizes import snap_to_patches
    from ..downsampler import window_stride

    for side in sides:
        grid = snap_to_patches(side, side, patch)[0] // patch
        try:
            window_stride(side, grid, patch)
        except UsageError:
            raise UsageError(
                f"config key {key} {side} does not fit {backbone}'s {patch} px patches (the "
                f"downsampler cannot lay its grid of {grid} windows over it); use a multiple of "
                f"{patch}, e.g. {grid * patch}"
            ) from None


def check_backbone_fit(cfg: TrainConfig) -> None:
    """The rules that depend on the backbone's registered patch size and width (read from the
    registry, nothing loaded): stage 1's ``stage1.image_size`` must hold a patch, the global
    views of stage 2 too, and (stage 1, whose architecture comes from ``model``) ``num_heads``
    must divide the token width ``dim + 4 * grid_freqs``. An unknown backbone is named here."""
    from ...featurizers import resolve

    spec = resolve(cfg.backbone)
    patch, dim = spec.patch_size, spec.dim
    _check_blur_fits(cfg, patch)
    if cfg.stage == 1:
        if cfg.stage1.image_size < patch:
            raise UsageError(
                f"config key stage1.image_size must be at least the patch size of {cfg.backbone} "
                f"({patch} px), got {cfg.stage1.image_size}; the recipe uses 224"
            )
        _check_windows_fit([cfg.stage1.image_size], "stage1.image_size", patch, cfg.backbone)
        width = dim + 4 * cfg.model.grid_freqs
        if width % cfg.model.num_heads:
            fits = heads_dividing(width)
            raise UsageError(
                f"config key model.num_heads={cfg.model.num_heads} does not divide the token "
                f"width {width} ({cfg.backbone}'s {dim} channels + 4 x model.grid_freqs "
                f"{cfg.model.grid_freqs}); use one of {', '.join(map(str, fits))}"
            )
    else:
        from ..batches import default_global_sizes

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
        _check_windows_fit(sizes, "stage2.global_sizes", patch, cfg.backbone)
        check_affinity_positions(cfg, min(sizes))
        check_crop_room(cfg, sizes)
