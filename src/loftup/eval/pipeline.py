"""The settings of an evaluation run and the image -> backbone -> upsampler step they define.

``upsampler`` is a baseline (nearest, bilinear, bicubic, jbu), anything
:func:`loftup.load_upsampler` takes, or ``highres``: the backbone run on an input
``highres_factor`` times larger, its features then resized bilinearly (a reference that pays
for resolution with backbone compute instead of an upsampler).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import LoftUpError, UsageError, from_workers, is_int, worker_ignores_sigterm
from ..featurizers import check_input_norm, imagenet_normalize
from .datasets.davis import MIN_FRAMES
from .features import FeatureCache, default_cache_dir, lowres_features
from .probe import check_seed
from .propagation import PropagationConfig


@dataclass
class EvalConfig:
    """One evaluation run.

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
      batch_size: images per batch; epochs, lr: probe training (None: the protocol's).
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

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """UsageError for a setting outside the values it may take, named as the command line
        spells it (``--limit``), with the value and the valid range: said before any data, model
        or backbone is read."""
        check_config(self)


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
    check_input_norm(cfg.backbone_norm, "--backbone-norm")
    if cfg.limit is not None:
        what = "sequences" if cfg.task == "davis" else "images of each split"
        _at_least("--limit", cfg.limit, 1, f" (the first N {what}; leave it out for all)")
    _at_least("--batch-size", cfg.batch_size, 1)
    _at_least("--workers", cfg.workers, 0, " (0: load data in this process)")
    _at_least("--highres-factor", cfg.highres_factor, 1)
    check_seed(cfg.seed, "--seed")
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
    _at_least("--context", prop.n_last_frames, 0, " (previous frames used besides the first)")
    _at_least("--topk", prop.topk, 1, " (neighbours each position takes its label from)")
    _positive("--temperature", prop.temperature)
    _at_least("--radius", prop.radius, 0, " (in feature cells; 0: no limit)")


# -- output paths, checked before any work -----------------------------------------------------


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (a file or a folder)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be made in ``folder`` (made first where missing), or None."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        return f"{base} is a file, not a folder"
    try:  # what writing will do: a file in it (os.access says yes to root on a read-only disk)
        fd, tmp = tempfile.mkstemp(dir=base, prefix=".loftup-write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        return f"{base} cannot be written ({e.strerror or e})"
    return None


def check_file_output(path: str, option: str, fix: str = "choose another path") -> None:
    """UsageError unless the file ``path`` (given as ``option``) can be written: it is not a
    folder, and its folder exists or can be made, and takes new files."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name, e.g. {path}/out")
    problem = _folder_problem(target.parent)
    if problem:
        raise UsageError(f"{option} {path} cannot be written: {problem}; {fix}")


def check_folder_output(path: str, option: str, alternative: str = "") -> None:
    """UsageError unless the folder ``path`` (given as ``option``) exists or can be made and
    takes new files."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{option} {path} is a file; give a folder")
    problem = _folder_problem(target)
    if problem:
        raise UsageError(
            f"{option} {path} cannot be written: {problem}; choose another folder{alternative}"
        )


def check_outputs(cfg: EvalConfig) -> None:
    """UsageError unless every file the run writes can be: ``--json``, the figure,
    ``--save-masks`` and the feature cache, checked before any work, not after it."""
    if cfg.json and cfg.json != "-":
        check_file_output(cfg.json, "--json")
    if cfg.figure:
        check_file_output(cfg.figure, "--figure")
    else:
        check_file_output(figure_path(cfg), "the figure", "give --figure another path")
    if cfg.json and cfg.json != "-" and _same_file(cfg.json, figure_path(cfg)):
        raise UsageError(
            f"--json {cfg.json} is where the figure would go too, and it would overwrite the "
            "numbers: give the JSON a .json name, or --figure another path"
        )
    if cfg.save_masks:
        check_folder_output(cfg.save_masks, "--save-masks")
    if cfg.cache_dir is not None:
        check_folder_output(str(cfg.cache_dir), "--cache-dir", " (or --no-cache)")


class FeaturePipeline:
    """Images in [0, 1] -> (low-res, upsampled) features, with the backbone cached on disk.

    Arguments:
      cfg: the run's settings (backbone, upsampler, size, cache, device).
      policy: names the preprocessing that produced the images (part of the cache key).
    """

    def __init__(self, cfg: EvalConfig, *, policy: str) -> None:
        from ..api import resolve_device
        from ..baselines import bilinear, get_upsampler
        from ..featurizers import get_featurizer

        self.device = resolve_device(cfg.device)  # "auto" too
        self.featurizer = get_featurizer(
            cfg.backbone, cfg.backbone_weights, device=self.device, input_norm=cfg.backbone_norm
        )
        self.featurizer = self.featurizer.to(self.device).eval()
        self.dim = int(self.featurizer.dim)
        self.highres = cfg.upsampler == "highres"
        self.input_size = backbone_size(cfg)
        self.upsample = bilinear if self.highres else get_upsampler(cfg.upsampler, self.device)
        self._check_pairing(cfg)
        self.cache = FeatureCache(
            cfg.cache_dir,
            backbone=cfg.backbone,
            weights=cfg.backbone_weights,
            size=self.input_size,
            policy=policy,
            input_norm=self.featurizer.input_norm_key(),
            revision=self.featurizer.revision,
        )

    def _check_pairing(self, cfg: EvalConfig) -> None:
        dim = getattr(self.upsample, "dim", None)
        if dim is not None and int(dim) != self.dim:
            raise LoftUpError(
                f"upsampler {cfg.upsampler!r} expects {dim}-channel features but backbone "
                f"{cfg.backbone!r} gives {self.dim}; pick the upsampler trained for this backbone"
            )
        expected = getattr(self.upsample, "backbone", None)
        if expected and expected != cfg.backbone:
            print(
                f"warning: upsampler {cfg.upsampler!r} was trained on {expected!r} features, "
                f"evaluating it on {cfg.backbone!r}",
                file=sys.stderr,
            )
        norm = getattr(self.upsample, "backbone_norm", None)
        if norm and self.featurizer.input_norm_key() not in (None, norm):
            print(
                f"warning: upsampler {cfg.upsampler!r} was trained with --backbone-norm {norm}, "
                f"evaluating it with --backbone-norm {cfg.backbone_norm}",
                file=sys.stderr,
            )

    @torch.no_grad()
    def __call__(
        self,
        images01: torch.Tensor,
        keys: list[str],
        out_size: int,
        backbone_images: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) in [0, 1] -> (lr (B, C, h, w), hr (B, C, out, out)) on the device.

        ``backbone_images`` (B, 3, S', S') are what the backbone sees when S' (the input size)
        is not S (``highres``); without them the images are resized to S'.
        """
        source = images01 if backbone_images is None else backbone_images
        lr = lowres_features(
            self.featurizer, source, list(keys), self.cache, self.input_size, self.device
        ).to(self.device)
        guide = guidance_image(images01.to(self.device), out_size)
        hr = self.upsample(lr, imagenet_normalize(guide))
        return lr, hr.float()


def guidance_image(images01: torch.Tensor, out_size: int) -> torch.Tensor:
    """(B, 3, S, S) images -> (B, 3, out, out), the guidance image of an out x out output.

    Shrunk, each pixel is the mean of the image's pixels it covers (``area``; at a factor that
    is not whole, the partly covered ones count whole): at a factor of 2
    (DAVIS' ``--feature-scale 0.5``) that is exactly the reference's bilinear halving, whose
    two taps per axis are then the whole 2 x 2 block; at larger factors bilinear would still
    read 2 x 2 of each pixel's 4 x 4 (or larger) block and alias fine texture into the guide.
    Enlarged, bilinear.
    """
    if images01.shape[-2:] == (out_size, out_size):
        return images01
    size = (out_size, out_size)
    if out_size <= min(images01.shape[-2:]):
        return F.interpolate(images01, size=size, mode="area")
    return F.interpolate(images01, size=size, mode="bilinear")


def backbone_size(cfg: EvalConfig) -> int:
    """Side of the image the backbone sees: ``size``, times ``highres_factor`` for highres."""
    if cfg.upsampler != "highres":
        return cfg.size
    _at_least("--highres-factor", cfg.highres_factor, 1)
    return cfg.size * cfg.highres_factor


def make_loader(dataset, cfg: EvalConfig, *, shuffle: bool, epoch: int = 0):
    """A DataLoader over ``dataset`` (shuffled with a seed per epoch when ``shuffle``)."""
    gen = torch.Generator().manual_seed(cfg.seed + epoch) if shuffle else None
    return Loader(
        torch.utils.data.DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=shuffle,
            generator=gen,
            num_workers=cfg.workers,
            worker_init_fn=worker_ignores_sigterm,  # SIGTERM ends the run cleanly, not the workers
        )
    )


class Loader:
    """A DataLoader whose workers' errors of ours (an unreadable file, a bad label) reach the
    caller as they were raised, one line: PyTorch re-raises them with the worker's traceback
    pasted into the message."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        yield from from_workers(self.loader, "--workers")


def finish(cfg: EvalConfig, results: dict, draw, report=None) -> dict:
    """The end of a run: ``report(results)`` first (the command line prints the scores), then
    the JSON, then the figure (``draw(path)``), so that a failure to write loses no numbers: it
    names the file, and its message carries the scores."""
    from .report import summary, write_json

    figure = figure_path(cfg)
    results["figure"] = str(figure)
    if report is not None:
        report(results)
    option, target = "--json", cfg.json
    try:
        if cfg.json and cfg.json != "-":
            write_json(cfg.json, results)
        option, target = ("--figure" if cfg.figure else "the figure"), figure
        draw(figure)
    except OSError as e:
        raise LoftUpError(
            f"{option} {target} could not be written ({e.strerror or e}); the scores: "
            f"{summary(results)}"
        ) from None
    return results


def _same_file(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def figure_path(cfg: EvalConfig) -> str:
    """Where the run's figure goes: ``cfg.figure``, else next to the JSON, else a named PNG."""
    if cfg.figure:
        return cfg.figure
    if cfg.json and cfg.json != "-":
        return str(Path(cfg.json).with_suffix(".png"))
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in cfg.upsampler)
    return f"eval_{cfg.task}_{cfg.dataset}_{safe}.png"
