"""The trainable part of each stage as one module whose forward returns the losses.

Everything without gradients (the frozen backbone, the targets, the teacher) is computed by the
loop beforehand and passed in, so that this module is all that DistributedDataParallel wraps.
Shapes: image (B, 3, H, W), features (B, C, h, w) low-res and (B, C, H, W) high-res, projected
features (B, K, ., .).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model import LoftUp
from .downsampler import AttentionDownsampler, Uncertainty
from .losses import affinity_loss, project, reconstruction_loss, tv_loss
from .views import jitter


class Trainee(nn.Module):
    """The upsampler and the training-only modules (downsampler, uncertainty) that learn with it.

    Arguments:
      upsampler: the LoftUp being trained.
      patch: the backbone's patch size (the downsampler's window).
      dropout, blur: the downsampler's settings.
      uncertainty: learn a per-pixel uncertainty in the reconstruction loss.
    """

    def __init__(
        self, upsampler: LoftUp, *, patch: int, dropout: float, blur: int, uncertainty: bool
    ) -> None:
        super().__init__()
        dim = upsampler.config.dim
        self.upsampler = upsampler
        self.downsampler = AttentionDownsampler(dim, patch, dropout=dropout, blur=blur)
        self.uncertainty = Uncertainty(dim) if uncertainty else None

    def reconstruction(
        self,
        hr: torch.Tensor,
        views: list[dict],
        proj: torch.Tensor,
    ) -> torch.Tensor:
        """Mean over views of the reconstruction loss of the high-res prediction ``hr``.

        Each view: ``params`` (B, 3) jitter, ``feats`` (B, C, h, w) backbone features of the
        jittered image, ``keep`` (B, h, w) downsampler window dropout.
        """
        total = hr.new_zeros(())
        for view in views:
            target = view["feats"]
            down = self.downsampler(jitter(hr, view["params"]), target.shape[-2:], view["keep"])
            log_scale = self.uncertainty(target) if self.uncertainty is not None else None
            total = total + reconstruction_loss(
                project(down, proj), project(target, proj), log_scale
            )
        return total / max(1, len(views))

    def forward(self, batch: dict, weights: dict) -> dict[str, torch.Tensor]:
        """Losses of one step; ``batch`` holds the inputs of :func:`stage1_losses` or
        :func:`stage2_losses` and ``batch["stage"]`` says which."""
        if batch["stage"] == 1:
            return stage1_losses(self, batch, weights)
        return stage2_losses(self, batch, weights)


def loss_weights(cfg) -> dict[str, float]:
    """The weights of the loss terms of ``cfg.stage`` (a TrainConfig), as :meth:`Trainee.forward`
    takes them: reconstruction, TV, and stage 1's target or stage 2's affinity term."""
    if cfg.stage == 1:
        return {"rec": cfg.recon.weight, "tv": cfg.stage1.tv_weight,
                "target": cfg.stage1.target_weight}  # fmt: skip
    return {"rec": cfg.recon.weight, "tv": cfg.stage2.tv_weight,
            "affinity": cfg.stage2.affinity_weight}  # fmt: skip


def stage1_losses(trainee: Trainee, batch: dict, w: dict) -> dict[str, torch.Tensor]:
    """Reconstruction over the jittered views + tv * TV + target * MSE to the mask-bicubic target.

    batch: ``lr_feats`` (B, C, h, w), ``image`` (B, 3, H, W), ``views`` (see
    :meth:`Trainee.reconstruction`), ``proj`` (C, K), ``target`` (B, K, H, W) the projected
    mask-bicubic pseudo ground truth.
    """
    hr = trainee.upsampler(batch["lr_feats"], batch["image"])
    hr_proj = project(hr, batch["proj"])
    rec = trainee.reconstruction(hr, batch["views"], batch["proj"])
    tv = tv_loss(hr_proj)
    target = F.mse_loss(hr_proj, batch["target"].to(hr_proj.dtype))
    loss = w["rec"] * rec + w["tv"] * tv + w["target"] * target
    return {"loss": loss, "rec": rec, "tv": tv, "target": target}


def stage2_losses(trainee: Trainee, batch: dict, w: dict) -> dict[str, torch.Tensor]:
    """Reconstruction + tv * TV on the global view, + affinity * the distillation loss.

    batch: as stage 1 without ``target``, plus ``regions``: a list (one per teacher view) of
    dicts with ``teacher`` (B, C, r, r) the teacher's mask-adjusted output resized to the region's
    side r, ``boxes`` (B, 3) integer (top, left, size) of the region in the global view, and
    ``central`` the fraction of each side the affinity looks at, and optionally ``weight`` (1 if
    absent): how many regions it stands for (the global view, the same region for every jitter,
    comes once with weight n_jitters, so its affinity is computed once). The distillation term
    is the weighted mean.
    """
    hr = trainee.upsampler(batch["lr_feats"], batch["image"])
    rec = trainee.reconstruction(hr, batch["views"], batch["proj"])
    tv = tv_loss(project(hr, batch["proj"]))
    distill, count = hr.new_zeros(()), 0.0
    for region in batch["regions"]:
        student = crop_regions(hr, region["boxes"], region["teacher"].shape[-1])
        weight = region.get("weight", 1.0)
        distill = distill + weight * affinity_loss(
            student, region["teacher"].to(hr.dtype), region["central"]
        )
        count += weight
    distill = distill / max(1.0, count)
    loss = w["rec"] * rec + w["tv"] * tv + w["affinity"] * distill
    return {"loss": loss, "rec": rec, "tv": tv, "affinity": distill}


def crop_regions(feats: torch.Tensor, boxes: torch.Tensor, side: int) -> torch.Tensor:
    """Square regions ``boxes`` (B, 3) = (top, left, size) of (B, C, H, W), resized to ``side``."""
    out = []
    for b in range(feats.shape[0]):
        top, left, size = (int(v) for v in boxes[b])
        region = feats[b : b + 1, :, top : top + size, left : left + size]
        if size != side:  # float32: CPU antialiasing has no bfloat16 kernel
            small = F.interpolate(
                region.float(), size=(side, side), mode="bilinear", antialias=True
            )
            region = small.to(region.dtype)
        out.append(region)
    return torch.cat(out)
