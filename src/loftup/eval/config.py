"""The settings of an evaluation run (:class:`EvalConfig`) and their ranges, checked before any
data, model or backbone is read (:func:`check_config`).

``upsampler`` is a baseline (nearest, bilinear, bicubic, jbu), anything
:func:`loftup.load_upsampler` takes, or ``highres``: the backbone run on an input
``highres_factor`` times larger, its features then resized bilinearly (a reference that pays
for resolution with backbone compute instead of an upsampler).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

from ..errors import UsageError, is_int
from ..featurizers import check_input_norm
from .datasets.davis import MIN_FRAMES
from .features import default_cache_dir
from .probe_training import check_seed
from .propagation import PropagationConfig


@dataclass
class EvalConfig:
    """One evaluation run. Paths (root, json, ...) may be given as text or ``pathlib.Path``;
    they are kept, and recorded in the results, as text.

    Arguments:
      task: ``seg``, ``depth``, ``normals`` or ``davis``.
      dataset: dataset name (see :data:`loftup.eval.datasets.TASK_DATASETS`).
      root: the dataset's folder.
      backbone: featurizer name (``loftup.get_featurizer``); backbone_weights: its weights;
        backbone_norm: what it is given (its ``input_norm``: "imagenet", the paper's, or "own").
      upsampler: baseline name, ``highres``, or a source for ``load_upsampler``.
      size: side of the square image the backbone sees (FeatUp protocol: 224).
      limit: only the first N images of each split (N sequences for DAVIS).
      max_frames: DAVIS only: the first N frames of each sequence.
      cache_dir: where backbone features are cached (None: no cache); ``normals`` also keeps
        its one-off conversion of the normals pickle there (None: a temporary folder).
      device: torch device for backbone, upsampler and probe (``auto``: CUDA when available).
      batch_size: images whose features are computed at once (backbone and upsampler; the
        memory knob, it changes no score).
      probe_batch_size, epochs, lr: probe training: images per step, passes, peak rate (None:
        the protocol's; 8, 10 and the task's rate).
      workers: DataLoader worker processes.
      seed: seeds the probe and the order of the training images.
      highres_factor: input enlargement for ``upsampler='highres'``.
      propagation: DAVIS label propagation settings.
      json: results file; figure: PNG of a few predictions (default: next to ``json``).
      save_masks: DAVIS only: write predicted masks here in the DAVIS result format.
      progress: show progress bars.
    """

    task: str
    dataset: str
    root: str
    backbone: str
    upsampler: str
    backbone_weights: str | None = None
    backbone_norm: str = "imagenet"
    size: int = 224
    limit: int | None = None
    max_frames: int | None = None
    cache_dir: str | None = field(default_factory=lambda: str(default_cache_dir()))
    device: str = "cpu"
    batch_size: int = 8
    epochs: int | None = None
    lr: float | None = None
    workers: int = 0
    seed: int = 0
    highres_factor: int = 2
    propagation: PropagationConfig = field(default_factory=PropagationConfig)
    json: str | None = None
    figure: str | None = None
    save_masks: str | None = None
    progress: bool = True
    # last, so that the fields before it keep their positions
    probe_batch_size: int | None = None

    def __post_init__(self) -> None:
        _paths_as_text(self)

    def to_dict(self) -> dict:
        """The settings as plain values (paths as text), as the results JSON records them."""
        _paths_as_text(self)  # set after construction too
        return asdict(self)

    def check(self) -> None:
        """UsageError for a setting outside the values it may take, named as the command line
        spells it (``--limit``), with the value and the valid range (``--size``: a grid of at
        least 2x2 patches of the backbone, :func:`check_grid`; an unknown backbone is an
        UnknownNameError): said before any data, model or backbone is read."""
        check_config(self)


#: The fields that may be given as paths (``pathlib.Path``): kept as text, which the results
#: JSON records (a Path ran the whole evaluation, then failed to write it).
PATH_FIELDS = ("root", "upsampler", "backbone_weights", "cache_dir", "json", "figure", "save_masks")


def _paths_as_text(cfg: EvalConfig) -> None:
    for name in PATH_FIELDS:
        value = getattr(cfg, name)
        if isinstance(value, os.PathLike):
            setattr(cfg, name, os.fspath(value))


def _at_least(option: str, value, low: int, note: str = "") -> None:
    if not is_int(value) or value < low:
        raise UsageError(f"{option} must be an integer >= {low}{note}, got {value!r}")


def _positive(option: str, value, high: float | None = None, note: str = "") -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and value > 0 and (high is None or value <= high)
    if not ok:
        where = f"in (0, {high:g}]" if high is not None else "a finite number > 0"
        raise UsageError(f"{option} must be {where}{note}, got {value!r}")


def check_config(cfg: EvalConfig) -> None:
    """UsageError for the first setting of ``cfg`` outside its range (see :meth:`EvalConfig.check`)."""
    _at_least("--size", cfg.size, 1, " (the side of the square input, in pixels)")
    _at_least("--highres-factor", cfg.highres_factor, 1)
    check_grid(cfg)
    check_input_norm(cfg.backbone_norm, "--backbone-norm")
    if cfg.limit is not None:
        what = "sequences" if cfg.task == "davis" else "images of each split"
        _at_least("--limit", cfg.limit, 1, f" (the first N {what}; leave it out for all)")
    _at_least("--batch-size", cfg.batch_size, 1)
    _at_least("--workers", cfg.workers, 0, " (0: load data in this process)")
    check_seed(cfg.seed, "--seed")
    if cfg.probe_batch_size is not None:
        _at_least("--probe-batch-size", cfg.probe_batch_size, 1)
    if cfg.epochs is not None:
        _at_least("--epochs", cfg.epochs, 1)
    if cfg.lr is not None:
        _positive("--lr", cfg.lr)
    if cfg.task != "davis":
        return
    if cfg.max_frames is not None:
        _at_least(
            "--max-frames", cfg.max_frames, MIN_FRAMES,
            " (the benchmark scores neither the first nor the last frame)",
        )  # fmt: skip
    prop = cfg.propagation
    _positive(
        "--feature-scale", prop.feature_scale, 1.0,
        " (the side of the upsampled feature map as a fraction of the frame's --size)",
    )  # fmt: skip
    check_feature_map(cfg)
    _at_least("--context", prop.n_last_frames, 0, " (previous frames used besides the first)")
    _at_least("--topk", prop.topk, 1, " (neighbours each position takes its label from)")
    _positive("--temperature", prop.temperature)
    _at_least("--radius", prop.radius, 0, " (in feature cells; 0: no limit)")


#: The smallest feature grid, per side, a run is scored on: a 1 x 1 grid is one feature for the
#: whole image, which every baseline spreads over every pixel alike, so its scores measure no
#: upsampling (a probe can only give the image one class); 2 x 2 is the least that varies.
MIN_GRID = 2


def check_grid(cfg: EvalConfig) -> None:
    """UsageError (before any data is read) where the backbone would see ``--size`` (times
    ``--highres-factor`` for highres) as a grid of fewer than :data:`MIN_GRID` patches a side:
    a size that is not a multiple of the patch is resized to the nearest one, at least one
    patch (:func:`loftup.featurizers.sizes.snap_to_patches`), so ``--size 8`` with patch 14
    ran on a 1 x 1 grid and reported meaningless scores. An unknown backbone is said here too."""
    from ..featurizers import resolve
    from ..featurizers.sizes import snap_to_patches

    patch = resolve(cfg.backbone).patch_size
    side = _requested_side(cfg)
    grid = snap_to_patches(side, side, patch)[0] // patch
    if grid >= MIN_GRID:
        return
    factor = cfg.highres_factor if cfg.upsampler == "highres" else 1
    valid = -(-MIN_GRID * patch // factor)  # the smallest size whose input is MIN_GRID patches
    seen = f" (x {factor} for highres: {side} px)" if factor > 1 else ""
    raise UsageError(
        f"--size {cfg.size}{seen} gives backbone {cfg.backbone} (patch {patch}) a {grid}x{grid} "
        f"feature grid, one feature for the whole image, which scores no upsampling: give "
        f"--size {valid} or more ({MIN_GRID}x{MIN_GRID} patches; 224 is the protocol's)"
    )


def feature_side(cfg: EvalConfig) -> int:
    """DAVIS: the side of the upsampled feature map labels propagate on, ``--size`` times
    ``--feature-scale`` rounded (at least 1)."""
    return max(1, int(round(cfg.size * cfg.propagation.feature_scale)))


def check_feature_map(cfg: EvalConfig) -> None:
    """UsageError (before any data is read) where ``--size`` x ``--feature-scale`` is a
    propagation map of fewer than :data:`MIN_GRID` cells a side: ``--feature-scale 0.01``
    with ``--size 28`` propagated one label over the whole frame and reported its J&F."""
    side = feature_side(cfg)
    if side >= MIN_GRID:
        return
    low = MIN_GRID / cfg.size
    digits = max(0, 2 - math.floor(math.log10(low)))  # 3 significant digits, rounded up
    valid = math.ceil(low * 10**digits) / 10**digits
    raise UsageError(
        f"--feature-scale {cfg.propagation.feature_scale:g} with --size {cfg.size} gives a "
        f"{side}x{side} propagation map, one label for the whole frame, which scores nothing: "
        f"give --feature-scale {valid:g} or more ({MIN_GRID}x{MIN_GRID} cells; 0.5 is the "
        "protocol's)"
    )


def check_upsampler(source) -> None:
    """The error loading ``source`` (``--upsampler``) would end in where it names nothing that
    can be loaded, said as :func:`loftup.load_upsampler` says it, without reading a file: a
    baseline, ``highres``, an existing path, a released name and the shape of a hub id
    ``ORG/NAME`` pass (their weights are read once, by the run); a backbone's name, a missing
    path and an unknown name do not. For before the dataset's check, which reads every
    image's header (seconds to minutes on COCO)."""
    from ..baselines import BASELINES
    from ..errors import UnknownNameError, did_you_mean
    from ..hub.checks import hub_source, upsampler_name
    from ..paths import check_visible

    text = str(source)
    if text in BASELINES or text == "highres":  # names, no paths: whatever the current folder
        return
    if not upsampler_name(text):  # a path: os.path.exists said "no such file or folder"
        check_visible(text, "--upsampler")
    if os.path.exists(os.path.expanduser(text)):
        return
    try:
        hub_source(text)  # as load_upsampler decides it, nothing read
    except UnknownNameError as e:
        close = did_you_mean(text, [*BASELINES, "highres"])
        raise UnknownNameError(
            f"{e}; or a baseline: {', '.join(BASELINES)}, or highres{close}"
        ) from None


def check_start(cfg: EvalConfig, task: str) -> None:
    """What is checked before any data or model is read, cheapest first: settings, dataset
    name, outputs, that --root is a folder, that --upsampler names something to load, and
    that --backbone-weights given as a path are there."""
    from .datasets import check_dataset, check_root
    from .results import check_outputs

    check_config(cfg)
    check_dataset(task, cfg.dataset)
    check_outputs(cfg)
    check_root(task, cfg.dataset, cfg.root)
    check_upsampler(cfg.upsampler)
    check_backbone_weights(cfg.backbone, cfg.backbone_weights)


def check_backbone_weights(backbone: str, weights) -> None:
    """The error loading ``weights`` (``--backbone-weights``) as backbone ``backbone``'s would
    end in, where they are a local path (one that exists, or is written as a path) that holds
    no weights in the backbone's layout: said from the folder's listing, before the dataset's
    check. A hub id is left to the run (finding it may mean a download)."""
    if weights is None:
        return
    from ..featurizers.hf import find_weights
    from ..hub import looks_like_path

    text = os.fspath(weights)
    if os.path.exists(os.path.expanduser(text)) or looks_like_path(text):
        find_weights(backbone, text)


def _requested_side(cfg: EvalConfig) -> int:
    """``size``, times ``highres_factor`` for highres."""
    if cfg.upsampler != "highres":
        return cfg.size
    _at_least("--highres-factor", cfg.highres_factor, 1)
    return cfg.size * cfg.highres_factor


def backbone_size(cfg: EvalConfig) -> int:
    """Side of the image the backbone sees: ``size`` (times ``highres_factor`` for highres)
    snapped to the backbone's patch grid (:func:`loftup.featurizers.sizes.snap_to_patches`),
    which the image is resized to from the original in one step: resized to the requested
    side first, the featurizer resized it a second time (``--size 30`` highres: 60, then
    56), and the results recorded 60 as what the backbone saw."""
    from ..featurizers import resolve
    from ..featurizers.sizes import snap_to_patches

    side = _requested_side(cfg)
    return snap_to_patches(side, side, resolve(cfg.backbone).patch_size)[0]
