"""The image -> backbone -> upsampler step of an evaluation run (:class:`FeaturePipeline`),
the guidance image it upsamples with, and the data loaders that feed it.

The run's settings live in :mod:`.config`, its output paths and its end in :mod:`.results`;
their names are importable from here too, as they always were.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from ..errors import LoftUpError, from_workers, printable, worker_ignores_sigterm
from ..featurizers import imagenet_normalize
from .config import EvalConfig, backbone_size, check_config
from .features import FeatureCache, lowres_features
from .probe_training import epoch_seed
from .results import (
    check_file_output,
    check_folder_output,
    check_outputs,
    figure_path,
    finish,
)


class FeaturePipeline:
    """Images in [0, 1] -> (low-res, upsampled) features, with the backbone cached on disk.

    Arguments:
      cfg: the run's settings (backbone, upsampler, size, cache, device).
      policy: names the preprocessing that produced the images (part of the cache key).
    """

    def __init__(self, cfg: EvalConfig, *, policy: str) -> None:
        from ..baselines import bilinear, get_upsampler
        from ..checks import resolve_device
        from ..featurizers import get_featurizer

        self.device = resolve_device(cfg.device)  # "auto" too
        self.featurizer = get_featurizer(
            cfg.backbone, cfg.backbone_weights, device=self.device, input_norm=cfg.backbone_norm
        )
        self.featurizer = self.featurizer.to(self.device).eval()
        self.dim = int(self.featurizer.dim)
        self.cfg = cfg
        self.sizes: dict = {}  # of the last batch (see record)
        self.highres = cfg.upsampler == "highres"
        self.input_size = backbone_size(cfg)
        self.upsample = bilinear if self.highres else get_upsampler(cfg.upsampler, self.device)
        self._check_pairing(cfg)
        self._digest: str | None = None  # of the backbone's weights, once (backbone_digest)
        self.cache = FeatureCache(
            cfg.cache_dir,
            backbone=cfg.backbone,
            weights=cfg.backbone_weights,
            size=self.input_size,
            policy=policy,
            input_norm=self.featurizer.input_norm_key(),
            revision=self.featurizer.revision,
            weights_digest=self.backbone_digest() if self._hub_weights(cfg) else None,
        )

    @staticmethod
    def _hub_weights(cfg: EvalConfig) -> bool:
        """Whether the backbone's weights came from the hub (an id, or the official ones)."""
        from pathlib import Path

        from ..featurizers import resolve

        if cfg.backbone_weights is None:
            return resolve(cfg.backbone).default_weights is not None
        return not Path(cfg.backbone_weights).expanduser().exists()

    def backbone_digest(self) -> str:
        """The digest of the backbone's weights (:meth:`record`'s), hashed once a run."""
        from ..extract.record import weights_digest

        if self._digest is None:
            self._digest = weights_digest(self.featurizer)
        return self._digest

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
                printable(  # norm: its config.json's, as written
                    f"warning: upsampler {cfg.upsampler!r} was trained with --backbone-norm "
                    f"{norm}, evaluating it with --backbone-norm {cfg.backbone_norm}"
                ),
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
        # normalised in place where it is a copy (resized, or moved to the device): one tensor
        # of its size made, not two; the caller's own images are not touched
        hr = self.upsample(lr, imagenet_normalize(guide, inplace=guide is not images01))
        self.sizes = {
            "image": list(images01.shape[-2:]),
            "backbone_input": [self.input_size, self.input_size],
            "lowres": list(lr.shape[-2:]),
            "upsampled": list(hr.shape[-2:]),
        }
        return lr, hr.float()

    def record(self) -> dict:
        """What the features of a run were, for its results: the backbone (name, weights as
        given, what it is given, its revision, patch, dim and a digest of its weights), the
        upsampler (as given, where it was loaded from and a digest of its weights; a baseline
        or ``highres`` by name) and the sizes of the last batch (the image, what the backbone
        saw, the low-res grid, the upsampled map). A digest is the first 16 hex digits of the
        SHA-256 of the loaded state (names, shapes, bytes): the same weights give the same
        digest wherever they were read from."""
        from ..extract.record import recorded_path, weights_digest

        cfg, feat = self.cfg, self.featurizer
        backbone = {
            "name": cfg.backbone,
            "weights": recorded_path(cfg.backbone_weights),
            "input_norm": cfg.backbone_norm,
            "revision": feat.revision,
            "patch_size": int(feat.patch_size),
            "dim": self.dim,
            "weights_digest": self.backbone_digest(),
        }
        if self.highres:
            kind = "backbone on a larger input, then bilinear"
            upsampler = {"name": "highres", "kind": kind, "factor": cfg.highres_factor}
        elif isinstance(self.upsample, torch.nn.Module):
            upsampler = {
                "name": recorded_path(cfg.upsampler),
                "kind": "loftup",
                "source": getattr(self.upsample, "source", None),
                "trained_on": getattr(self.upsample, "backbone", None),
                "weights_digest": weights_digest(self.upsample),
            }
        else:
            upsampler = {"name": cfg.upsampler, "kind": "baseline"}
        return {"backbone": backbone, "upsampler": upsampler, "sizes": dict(self.sizes)}


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


def make_loader(
    dataset,
    cfg: EvalConfig,
    *,
    shuffle: bool,
    epoch: int = 0,
    batches=None,
    batch_size: int | None = None,
):
    """A DataLoader over ``dataset`` (shuffled with a seed per epoch when ``shuffle``), with
    ``cfg.workers`` worker processes, ``batch_size`` items a batch (default
    ``cfg.batch_size``). ``batches``: the indices of each batch, in order (instead of
    consecutive items; not with ``shuffle``). The order of the items does not depend on the
    batch size."""
    if batches is not None:
        order = {"batch_sampler": batches}
    else:
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch)) if shuffle else None
        size = cfg.batch_size if batch_size is None else batch_size
        order = {"batch_size": size, "shuffle": shuffle, "generator": gen}
    return Loader(
        torch.utils.data.DataLoader(
            dataset,
            **order,
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


__all__ = [  # what this module has always offered, wherever it lives now
    "EvalConfig",
    "FeaturePipeline",
    "Loader",
    "backbone_size",
    "check_config",
    "check_file_output",
    "check_folder_output",
    "check_outputs",
    "figure_path",
    "finish",
    "guidance_image",
    "make_loader",
]
