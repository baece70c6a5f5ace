"""The settings of an evaluation run and the image -> backbone -> upsampler step they define.

``upsampler`` is a baseline (nearest, bilinear, bicubic, jbu), anything
:func:`loftup.load_upsampler` takes, or ``highres``: the backbone run on an input
``highres_factor`` times larger, its features then resized bilinearly (a reference that pays
for resolution with backbone compute instead of an upsampler).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import LoftUpError, worker_ignores_sigterm
from ..featurizers import imagenet_normalize
from .features import FeatureCache, default_cache_dir, lowres_features
from .propagation import PropagationConfig


@dataclass
class EvalConfig:
    """One evaluation run.

    Arguments:
      task: ``seg``, ``depth`` or ``davis``.
      dataset: dataset name (see :data:`loftup.eval.datasets.TASK_DATASETS`).
      root: the dataset's folder.
      backbone: featurizer name (``loftup.get_featurizer``); backbone_weights: its weights.
      upsampler: baseline name, ``highres``, or a source for ``load_upsampler``.
      size: side of the square image the backbone sees (FeatUp protocol: 224).
      limit: only the first N images of each split (N sequences for DAVIS).
      max_frames: DAVIS only: the first N frames of each sequence.
      cache_dir: where backbone features are cached (None: no cache).
      device: torch device for backbone, upsampler and probe.
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


class FeaturePipeline:
    """Images in [0, 1] -> (low-res, upsampled) features, with the backbone cached on disk.

    Arguments:
      cfg: the run's settings (backbone, upsampler, size, cache, device).
      policy: names the preprocessing that produced the images (part of the cache key).
    """

    def __init__(self, cfg: EvalConfig, *, policy: str) -> None:
        from ..baselines import bilinear, get_upsampler
        from ..featurizers import get_featurizer

        self.device = torch.device(cfg.device)
        self.featurizer = get_featurizer(cfg.backbone, cfg.backbone_weights, device=self.device)
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
        guide = images01.to(self.device)
        if guide.shape[-1] != out_size or guide.shape[-2] != out_size:
            guide = F.interpolate(guide, size=(out_size, out_size), mode="bilinear")
        hr = self.upsample(lr, imagenet_normalize(guide))
        return lr, hr.float()


def backbone_size(cfg: EvalConfig) -> int:
    """Side of the image the backbone sees: ``size``, times ``highres_factor`` for highres."""
    if cfg.upsampler != "highres":
        return cfg.size
    if cfg.highres_factor < 1:
        raise LoftUpError(f"--highres-factor must be >= 1, got {cfg.highres_factor}")
    return cfg.size * cfg.highres_factor


def make_loader(dataset, cfg: EvalConfig, *, shuffle: bool, epoch: int = 0):
    """A DataLoader over ``dataset`` (shuffled with a seed per epoch when ``shuffle``)."""
    gen = torch.Generator().manual_seed(cfg.seed + epoch) if shuffle else None
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        generator=gen,
        num_workers=cfg.workers,
        worker_init_fn=worker_ignores_sigterm,  # SIGTERM ends the run cleanly, not the workers
    )


def figure_path(cfg: EvalConfig) -> str:
    """Where the run's figure goes: ``cfg.figure``, else next to the JSON, else a named PNG."""
    if cfg.figure:
        return cfg.figure
    if cfg.json and cfg.json != "-":
        return str(Path(cfg.json).with_suffix(".png"))
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in cfg.upsampler)
    return f"eval_{cfg.task}_{cfg.dataset}_{safe}.png"
