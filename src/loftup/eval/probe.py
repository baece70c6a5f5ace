"""Linear probes on frozen features: a 1x1 convolution for segmentation, a 1x1 convolution to
depth bins for depth (Probe3D's ``bindepth`` linear head).

Two ways to fit one:
- :func:`fit_linear_probe` / :func:`fit_depth_probe` on in-memory tensors (features at full
  resolution and their label or depth maps), for small sets such as the offline demo;
- :func:`train_probe` with a function that yields batches, for datasets whose upsampled
  features do not fit in memory (the eval runners upsample each batch on the fly).

Segmentation protocol (LoftUp's evaluation, after FeatUp): labels resized to the feature size
with nearest, cross-entropy over non-ignored pixels, NAdam lr 1e-4, batch 8, 10 epochs.
Depth protocol (Probe3D): 256 bins uniform in [1e-3, 10] m, ReLU + 0.1 then normalised,
depth = expected bin centre; loss 10 * SigLoss + 0.5 * multi-scale gradient loss on valid
pixels (gt > 0); AdamW lr 5e-4, 1.5 warm-up epochs then cosine decay, batch 8, 10 epochs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ProbeConfig:
    """How a probe is trained.

    Arguments:
      epochs: passes over the training set.
      lr: peak learning rate.
      batch_size: images per step.
      optimizer: ``nadam`` | ``adam`` | ``adamw``.
      weight_decay: decoupled weight decay (adamw) or L2 (adam, nadam).
      warmup_epochs: linear warm-up length; with ``schedule='cosine'`` the rate then decays.
      schedule: ``constant``, ``cosine`` (linear warm-up from 0, then half a cosine to 0) or
        ``probe3d`` (Probe3D's: linear warm-up from 1% of ``lr``, then a quarter cosine down
        to 1%).
      seed: seeds the probe's initialisation and the order of the batches.
    """

    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 8
    optimizer: str = "nadam"
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    schedule: str = "constant"
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """UsageError for epochs or batch_size below 1, a learning rate that is not a
        finite number > 0 (warm-up below 0), or a seed outside [0, 2**32)."""
        from ..errors import UsageError

        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"probe {name} must be an integer >= 1, got {value!r}")
        for name, low in (("lr", None), ("warmup_epochs", 0.0)):
            value = getattr(self, name)
            finite = isinstance(value, (int, float)) and math.isfinite(value)
            if not finite or (value <= 0 if low is None else value < low):
                rule = "a finite number > 0" if low is None else "a finite number >= 0"
                raise UsageError(f"probe {name} must be {rule}, got {value!r}")
        check_seed(self.seed, "probe seed")


#: Seeds are integers in [0, SEED_LIMIT), as ``loftup train`` takes them (torch refuses some
#: larger ones only once the probe is built, after all the features).
SEED_LIMIT = 2**32


def check_seed(value, name: str = "seed") -> None:
    """UsageError unless ``value`` is an integer in [0, :data:`SEED_LIMIT`)."""
    from ..errors import UsageError, is_int

    if not is_int(value) or not 0 <= value < SEED_LIMIT:
        raise UsageError(f"{name} must be an integer in [0, {SEED_LIMIT}), got {value!r}")


#: LoftUp's segmentation probe recipe.
SEG_PROBE = ProbeConfig()
#: Probe3D's depth probe recipe.
DEPTH_PROBE = ProbeConfig(
    lr=5e-4, optimizer="adamw", warmup_epochs=1.5, schedule="probe3d", weight_decay=0.01
)

#: Probe3D's surface-normal probe recipe (its optimiser and schedule are its depth probe's).
NORMAL_PROBE = DEPTH_PROBE


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


# -- losses ------------------------------------------------------------------------------------


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) integer labels -> (B, h, w) by nearest (the FeatUp protocol)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def seg_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy of (B, K, h, w) logits against (B, H, W) labels resized to (h, w)."""
    labels = resize_labels(labels, logits.shape[-2:])
    if not (labels != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


def sig_loss(pred: torch.Tensor, gt: torch.Tensor, sigma: float = 0.85, eps: float = 1e-3):
    """Scale-invariant log loss over valid pixels (gt > 0) of the whole batch."""
    valid = gt > 0
    if not valid.any():
        return pred.sum() * 0.0
    g = torch.log(pred[valid] + eps) - torch.log(gt[valid] + eps)
    return (g.pow(2).mean() - sigma * g.mean().pow(2)).clamp_min(0).sqrt()


def gradient_loss(pred: torch.Tensor, gt: torch.Tensor, scales: int = 4, eps: float = 1e-3):
    """Multi-scale gradient matching of log depth (B, H, W) on valid pixels (MegaDepth)."""
    total = pred.new_zeros(())
    for i in range(scales):
        step = max(1, 2 * i)
        p, g = pred[:, ::step, ::step], gt[:, ::step, ::step]
        valid = (g > 0).to(p.dtype)
        n = valid.sum()
        if n == 0:
            continue
        diff = (torch.log(p + eps) - torch.log(g + eps)) * valid
        v = (diff[:, :-2] - diff[:, 2:]).abs() * valid[:, :-2] * valid[:, 2:]
        h = (diff[:, :, :-2] - diff[:, :, 2:]).abs() * valid[:, :, :-2] * valid[:, :, 2:]
        total = total + (v.sum() + h.sum()) / n
    return total


def depth_loss(pred: torch.Tensor, gt: torch.Tensor, max_depth: float = 10.0) -> torch.Tensor:
    """Probe3D's depth loss: 10 * SigLoss + 0.5 * gradient loss; pred resized to gt (bilinear)."""
    if pred.shape[-2:] != gt.shape[-2:]:
        pred = F.interpolate(pred[:, None], size=gt.shape[-2:], mode="bilinear")[:, 0]
    gt = torch.where(gt > max_depth, torch.zeros_like(gt), gt)
    return 10.0 * sig_loss(pred, gt) + 0.5 * gradient_loss(pred, gt)


def normal_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Probe3D's uncertainty-aware angular loss (Bae et al.) over valid pixels.

    ``pred`` (B, 4, h, w) from :class:`NormalProbe` (resized to the target, bicubic, as Probe3D
    does); ``target`` (B, 4, H, W): the normal (x, y, z) and a valid mask (1 where scored).
    Per pixel: kappa = ELU(raw) + 1.01, loss = log(1 + exp(-kappa pi)) - log(1 + kappa^2) +
    kappa * angle; the mean over the batch's valid pixels.
    """
    if pred.shape[-2:] != target.shape[-2:]:
        pred = F.interpolate(pred, size=target.shape[-2:], mode="bicubic")
    valid = target[:, 3] > 0
    if not valid.any():
        return pred.sum() * 0.0
    cos = F.cosine_similarity(pred[:, :3], target[:, :3], dim=1)
    angle = cos.clamp(-1 + eps, 1 - eps).acos()
    kappa = F.elu(pred[:, 3]) + 1.01
    loss = (1 + torch.exp(-kappa * math.pi)).log() - (kappa.pow(2) + 1).log() + kappa * angle
    return loss[valid].mean()


# -- training ----------------------------------------------------------------------------------


def _optimizer(params, cfg: ProbeConfig) -> torch.optim.Optimizer:
    kinds = {"nadam": torch.optim.NAdam, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if cfg.optimizer not in kinds:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of {sorted(kinds)}")
    return kinds[cfg.optimizer](params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate multiplier at ``step`` (0-based) of ``total``: linear warm-up over
    ``warmup`` steps, then constant, cosine to 0, or Probe3D's schedule (see ProbeConfig)."""
    if schedule == "probe3d":  # Probe3D's cosine_decay_linear_warmup, min_factor 0.01
        low = 0.01
        if step <= warmup and warmup > 0:
            return (1 - low) * step / warmup + low
        rel = min(1.0, (step - warmup) / max(1, total - warmup))
        return (1 - low) * math.cos(0.5 * math.pi * rel) + low
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / span)))
    raise ValueError(f"unknown schedule {schedule!r}; choose 'constant', 'cosine' or 'probe3d'")


def train_probe(
    probe: nn.Module,
    batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: ProbeConfig,
    steps_per_epoch: int,
    *,
    progress: bool = True,
    desc: str = "probe",
) -> nn.Module:
    """Fit ``probe`` in place: for each epoch, ``batches(epoch)`` yields (feats, target).

    ``loss_fn(probe(feats), target)`` is minimised; the learning rate follows ``config``'s
    schedule over ``epochs * steps_per_epoch`` steps. Returns the probe in eval mode.
    """
    from tqdm.auto import tqdm

    config.check()
    probe.train()
    opt = _optimizer(probe.parameters(), config)
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    step = 0
    # closed on an error too, so that the error's line is not the bar's
    with tqdm(total=total, desc=desc, disable=not progress, leave=False) as bar:
        for epoch in range(config.epochs):
            for feats, target in batches(epoch):
                for group in opt.param_groups:
                    group["lr"] = config.lr * lr_factor(step, total, warmup, config.schedule)
                loss = loss_fn(probe(feats), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    return probe.eval()


def _tensor_batches(feats, targets, batch_size: int, seed: int, device):
    n = feats.shape[0]

    def batches(epoch: int):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
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
        raise ValueError(
            f"expected feats (N, C, H, W) and labels (N, H, W), got {tuple(feats.shape)} and "
            f"{tuple(labels.shape)}"
        )
    labels = labels.long()
    bad = labels[(labels != ignore_index) & ((labels < 0) | (labels >= num_classes))]
    if bad.numel():
        from ..errors import UsageError

        raise UsageError(
            f"labels hold {bad.unique()[:5].tolist()}, outside the classes 0..{num_classes - 1} "
            f"and not ignore_index={ignore_index}: map them to a class or to ignore_index, or "
            "pass the right num_classes"
        )
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
    pred = probe(feats.to(next(probe.parameters()).device).float()).argmax(1)
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
        raise ValueError(
            f"expected feats (N, C, H, W) and depth (N, H, W), got {tuple(feats.shape)} and "
            f"{tuple(depth.shape)}"
        )
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
        raise ValueError(
            f"expected feats (N, C, H, W) and normals (N, 3, H, W), got {tuple(feats.shape)} and "
            f"{tuple(normals.shape)}"
        )
    if valid is None:
        valid = normals.abs().sum(1) > 0
    target = torch.cat([normals.float(), valid[:, None].float()], 1)
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
    pred = probe(feats.to(next(probe.parameters()).device).float())
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
