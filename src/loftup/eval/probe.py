"""Linear probes on frozen features, and fitting them on in-memory tensors: a 1x1 convolution
for segmentation, a 1x1 convolution to depth bins for depth (Probe3D's ``bindepth`` linear
head), a 1x1 convolution to a normal and its concentration for surface normals.

Two ways to fit one:
- :func:`fit_linear_probe` / :func:`fit_depth_probe` / :func:`fit_normal_probe` on in-memory
  tensors (features at full resolution and their label, depth or normal maps), for small sets
  such as the offline demo;
- :func:`train_probe` with a function that yields batches, for datasets whose upsampled
  features do not fit in memory (the eval runners upsample each batch on the fly).

Segmentation protocol (LoftUp's evaluation, after FeatUp): labels resized to the feature size
with nearest, cross-entropy over non-ignored pixels, NAdam lr 1e-4, batch 8, 10 epochs.
Depth protocol (Probe3D): 256 bins uniform in [1e-3, 10] m, ReLU + 0.1 then normalised,
depth = expected bin centre; loss 10 * SigLoss + 0.5 * multi-scale gradient loss on valid
pixels (gt > 0); AdamW lr 5e-4, 1.5 warm-up epochs then cosine decay, batch 8, 10 epochs.

The settings and the training loop live in :mod:`.probe_training`, the losses in
:mod:`.probe_losses`; their names are importable from here too, as they always were.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ..stops import first
from .probe_losses import (
    depth_loss,
    gradient_loss,
    normal_loss,
    resize_labels,
    seg_loss,
    sig_loss,
)
from .probe_training import (
    DEPTH_PROBE,
    NORMAL_PROBE,
    SEED_LIMIT,
    SEG_PROBE,
    ProbeConfig,
    check_seed,
    epoch_seed,
    lr_factor,
    train_probe,
)

#: The fix of a probe's inputs of the wrong shapes.
_SAME_N = "pass one target per feature map (the same N), shaped as shown"

# -- the probes --------------------------------------------------------------------------------


def make_seg_probe(dim: int, num_classes: int, seed: int = 0) -> nn.Conv2d:
    """A 1x1 convolution (C -> K), seeded initialisation."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Conv2d(dim, num_classes, 1)


class DepthProbe(nn.Module):
    """1x1 convolution to ``n_bins`` depth bins; forward (B, C, H, W) -> depth (B, H, W).

    Arguments:
      dim: feature channels C.
      n_bins: bins uniform in [min_depth, max_depth].
      min_depth, max_depth: range of the bins, in metres.
      seed: seeds the initialisation.
    """

    def __init__(
        self,
        dim: int,
        *,
        n_bins: int = 256,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv = nn.Conv2d(dim, n_bins, 1)
        self.register_buffer("bins", torch.linspace(min_depth, max_depth, n_bins))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        prob = F.relu(self.conv(feats)) + 0.1
        prob = prob / prob.sum(1, keepdim=True)
        return torch.einsum("bkhw,k->bhw", prob, self.bins.to(prob.dtype))


class NormalProbe(nn.Module):
    """1x1 convolution to a surface normal and its concentration (Probe3D's uncertainty-aware
    linear probe); forward (B, C, H, W) -> (B, 4, H, W): x, y, z (not normalised) and kappa's
    raw value (see :func:`normal_loss`)."""

    def __init__(self, dim: int, *, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv = nn.Conv2d(dim, 4, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.conv(feats)


# -- fitting on in-memory tensors ---------------------------------------------------------------


def _tensor_batches(feats, targets, batch_size: int, seed: int, device):
    """The epochs' batches, on ``device`` (the features' own where ``None``: the probe is put
    there too, so features on a GPU are fitted there, not against a probe on the CPU)."""
    n = feats.shape[0]
    if n == 0:  # else no step at all, and the probe came back as initialised, as if fitted
        raise UsageError(
            f"no feature maps to fit the probe on: feats {tuple(feats.shape)} holds N = 0; "
            "pass at least one"
        )

    def batches(epoch: int):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            yield feats[idx].to(device).float(), targets[idx].to(device)

    return batches, math.ceil(n / batch_size)


def fit_linear_probe(
    feats: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    ignore_index: int = 255,
    config: ProbeConfig | None = None,
    device=None,
    progress: bool = False,
) -> nn.Conv2d:
    """A 1x1-conv segmentation probe fitted on (N, C, H, W) features and (N, H', W') labels.

    Labels are resized to the feature size with nearest for the loss. ``config`` defaults to
    :data:`SEG_PROBE` (tiny sets want more epochs or a larger rate).
    """
    cfg = config or SEG_PROBE
    cfg.check()
    if feats.ndim != 4 or labels.ndim != 3 or feats.shape[0] != labels.shape[0]:
        raise UsageError(
            f"expected feats (N, C, H, W) and labels (N, H, W), got {tuple(feats.shape)} and "
            f"{tuple(labels.shape)}; {_SAME_N}"
        )
    labels = labels.long()
    bad = labels[(labels != ignore_index) & ((labels < 0) | (labels >= num_classes))]
    if bad.numel():
        raise UsageError(
            f"labels hold {bad.unique()[:5].tolist()}, outside the classes 0..{num_classes - 1} "
            f"and not ignore_index={ignore_index}: map them to a class or to ignore_index, or "
            "pass the right num_classes"
        )
    device = feats.device if device is None else device
    probe = make_seg_probe(feats.shape[1], num_classes, cfg.seed).to(device)
    batches, steps = _tensor_batches(feats, labels, cfg.batch_size, cfg.seed, device)
    return train_probe(
        probe,
        batches,
        lambda out, y: seg_loss(out, y, ignore_index),
        cfg,
        steps,
        progress=progress,
        desc="seg probe",
    )


@torch.no_grad()
def predict(probe: nn.Module, feats: torch.Tensor, size: tuple[int, int] | None = None):
    """Class map (N, H, W) long of a segmentation probe; nearest-resized to ``size`` if given."""
    pred = probe(feats.to(first(probe.parameters()).device).float()).argmax(1)
    if size is not None:
        pred = resize_labels(pred, size)
    return pred


def fit_depth_probe(
    feats: torch.Tensor,
    depth: torch.Tensor,
    *,
    config: ProbeConfig | None = None,
    device=None,
    progress: bool = False,
) -> DepthProbe:
    """A Probe3D-style depth probe fitted on (N, C, H, W) features and (N, H', W') depth (m)."""
    cfg = config or DEPTH_PROBE
    cfg.check()
    if feats.ndim != 4 or depth.ndim != 3 or feats.shape[0] != depth.shape[0]:
        raise UsageError(
            f"expected feats (N, C, H, W) and depth (N, H, W), got {tuple(feats.shape)} and "
            f"{tuple(depth.shape)}; {_SAME_N}"
        )
    device = feats.device if device is None else device
    probe = DepthProbe(feats.shape[1], seed=cfg.seed).to(device)
    batches, steps = _tensor_batches(feats, depth.float(), cfg.batch_size, cfg.seed, device)
    return train_probe(
        probe, batches, depth_loss, cfg, steps, progress=progress, desc="depth probe"
    )


def fit_normal_probe(
    feats: torch.Tensor,
    normals: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    config: ProbeConfig | None = None,
    device=None,
    progress: bool = False,
) -> NormalProbe:
    """A Probe3D-style normal probe fitted on (N, C, H, W) features and (N, 3, H', W') normals,
    scored where ``valid`` (N, H', W') is true (default: where the normal is not 0)."""
    cfg = config or NORMAL_PROBE
    cfg.check()
    if feats.ndim != 4 or normals.ndim != 4 or normals.shape[1] != 3 or len(feats) != len(normals):
        raise UsageError(
            f"expected feats (N, C, H, W) and normals (N, 3, H, W), got {tuple(feats.shape)} and "
            f"{tuple(normals.shape)}; {_SAME_N}"
        )
    if valid is None:
        valid = normals.abs().sum(1) > 0
    target = torch.cat([normals.float(), valid[:, None].float()], 1)
    device = feats.device if device is None else device
    probe = NormalProbe(feats.shape[1], seed=cfg.seed).to(device)
    batches, steps = _tensor_batches(feats, target, cfg.batch_size, cfg.seed, device)
    return train_probe(
        probe, batches, normal_loss, cfg, steps, progress=progress, desc="normal probe"
    )


@torch.no_grad()
def predict_normals(
    probe: NormalProbe, feats: torch.Tensor, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Unit normals (N, 3, H, W) of a normal probe; bicubic-resized to ``size`` if given."""
    pred = probe(feats.to(first(probe.parameters()).device).float())
    if size is not None and tuple(pred.shape[-2:]) != tuple(size):
        pred = F.interpolate(pred, size=size, mode="bicubic")
    return F.normalize(pred[:, :3], dim=1)


@torch.no_grad()
def predict_depth(probe: DepthProbe, feats: torch.Tensor, size: tuple[int, int] | None = None):
    """Depth (N, H, W) of a depth probe; bilinear-resized to ``size`` if given."""
    pred = probe(feats.to(probe.bins.device).float())
    if size is not None and tuple(pred.shape[-2:]) != tuple(size):
        pred = F.interpolate(pred[:, None], size=size, mode="bilinear")[:, 0]
    return pred


__all__ = [  # what this module has always offered, wherever it lives now
    "DEPTH_PROBE",
    "NORMAL_PROBE",
    "SEED_LIMIT",
    "SEG_PROBE",
    "DepthProbe",
    "NormalProbe",
    "ProbeConfig",
    "check_seed",
    "depth_loss",
    "fit_depth_probe",
    "fit_linear_probe",
    "fit_normal_probe",
    "gradient_loss",
    "lr_factor",
    "make_seg_probe",
    "normal_loss",
    "predict",
    "predict_depth",
    "predict_normals",
    "resize_labels",
    "seg_loss",
    "sig_loss",
    "train_probe",
]
