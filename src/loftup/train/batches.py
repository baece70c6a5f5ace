"""Per-step randomness and the gradient-free inputs of each stage (backbone features, targets, teacher).

All randomness of a step is drawn for the *global* batch from a generator seeded by (seed, step);
each process then takes its own rows. So N processes draw exactly what one process with the
whole batch draws, and a resumed run draws what the uninterrupted run would have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.dataset import unpack_masks
from ..featurizers.sizes import snap_to_patches
from .config import TrainConfig
from .losses import project, random_projection
from .noise import apply_mask_noise
from .targets import mask_adjust, mask_bicubic
from .views import draw_jitters, jitter


def default_global_sizes(patch: int) -> list[int]:
    """The recipe's global-view sizes: 224, 336, 448 and 518 (patch 14) or 512 (patch 16)."""
    if patch == 14:
        return [224, 336, 448, 518]
    return [max(patch, round(s / patch) * patch) for s in (224, 336, 448, 512)]


@dataclass
class StepDraws:
    """Random choices of one step for the global batch (G samples)."""

    proj: torch.Tensor  # (C, K) random projection
    jitters: torch.Tensor  # (G, n_jitters, 3)
    keep: torch.Tensor  # (G, n_jitters, h, w) downsampler windows that keep their logits
    size: int  # stage 2: side s of the global view (stage 1: the image size)
    offsets: torch.Tensor  # (G, n_jitters, 2) stage 2: teacher crop (top, left) at load size
    noise_seeds: torch.Tensor  # (G,) seeds of the per-sample mask noise

    def rows(self, start: int, stop: int) -> StepDraws:
        """This process's samples [start, stop) of the global batch."""
        return StepDraws(
            self.proj,
            self.jitters[start:stop],
            self.keep[start:stop],
            self.size,
            self.offsets[start:stop],
            self.noise_seeds[start:stop],
        )


def step_seed(seed: int, step: int) -> int:
    """The generator seed of step ``step`` of a run of ``seed``. PyTorch's CPU generator keeps
    a seed's low 32 bits, so ``seed * 2**32 + step`` gave every seed the same draws at each
    step. Each seed now starts its steps at ``seed`` times the 32-bit golden ratio (mod 2**32):
    seed 0's draws are unchanged, and the first thousand seeds' windows are more than a million
    steps apart, so no two runs of fewer steps share a step's draws."""
    return (step + seed * 0x9E3779B9) % 2**32


def draw_step(cfg: TrainConfig, step: int, dim: int, patch: int, sizes: list[int]) -> StepDraws:
    """Everything random about step ``step`` of the run configured by ``cfg``."""
    g = torch.Generator().manual_seed(step_seed(cfg.seed, step))
    n, rc = cfg.batch_size, cfg.recon
    if cfg.stage == 1:
        size, n_jit = cfg.stage1.image_size, cfg.stage1.n_jitters
    else:
        size = sizes[int(torch.randint(len(sizes), (1,), generator=g))]
        n_jit = cfg.stage2.n_jitters
    proj = random_projection(dim, rc.proj_dim, generator=g)
    jitters = draw_jitters(n, n_jit, max_shift=rc.max_shift, zoom_range=tuple(rc.zoom), generator=g)
    grid = snap_to_patches(size, size, patch)[0] // patch  # the featurizer's grid of `size`
    keep = torch.rand(n, n_jit, grid, grid, generator=g) >= rc.dropout
    offsets = torch.zeros(n, n_jit, 2, dtype=torch.long)
    if cfg.stage == 2:
        s2 = cfg.stage2
        offsets = crop_offsets((n, n_jit, 2), s2.load_size, size, s2.crop_align, generator=g)
    seeds = torch.randint(2**62, (n,), generator=g)
    return StepDraws(proj, jitters, keep, size, offsets, seeds)


def region_side(size: int, load: int) -> int:
    """The side of the region that an ``size``-px crop of the ``load``-px image covers in the
    global view of side ``size`` (that view is the whole image resized)."""
    return max(1, round(size * size / load))


def crop_offsets(shape, load: int, size: int, align: int, *, generator=None) -> torch.Tensor:
    """Offsets (top or left) of ``size``-px crops of a ``load``-px image, shaped ``shape``.

    The recipe's: an offset drawn uniformly in [0, load - size], then rounded down to a
    multiple of ``align``. So where load - size is not a multiple of ``align`` the last
    multiple is rarer than the others (at 896 and 224, offset 672 comes 1 time in 673), not
    as frequent (1 in 43) as it would be were the multiples themselves drawn uniformly.
    """
    raw = torch.randint(load - size + 1, tuple(shape), generator=generator)
    return raw // align * align


@torch.no_grad()
def backbone_views(featurizer, image: torch.Tensor, draws: StepDraws) -> list[dict]:
    """Backbone features of each jittered view of the normalised ``image`` (B, 3, H, W)."""
    views = []
    for j in range(draws.jitters.shape[1]):
        params = draws.jitters[:, j]
        views.append(
            {
                "params": params,
                "feats": featurizer(jitter(image, params)).float(),
                "keep": draws.keep[:, j].to(image.device),
            }
        )
    return views


def noisy_masks(
    masks: torch.Tensor, n_masks: torch.Tensor, cfg, seeds
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``cfg.mask_noise`` to each sample's masks (B, K, H, W) -> (B, K', H, W), counts (B,)."""
    if not cfg.mask_noise.active:
        return masks, n_masks
    out = []
    for b in range(masks.shape[0]):
        g = torch.Generator().manual_seed(int(seeds[b]))
        out.append(apply_mask_noise(masks[b, : int(n_masks[b])], cfg.mask_noise, g))
    k = max(1, max(m.shape[0] for m in out))
    padded = masks.new_zeros(masks.shape[0], k, *masks.shape[-2:])
    for b, m in enumerate(out):
        padded[b, : m.shape[0]] = m
    return padded, torch.tensor([m.shape[0] for m in out])


def settle(device: torch.device) -> None:
    """Wait for the work queued on a CUDA ``device``; elsewhere the work is done already."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def stage1_inputs(featurizer, image: torch.Tensor, batch: dict, draws: StepDraws, cfg) -> dict:
    """Backbone features, jittered views and the projected mask-bicubic target of stage 1."""
    device = image.device
    masks = unpack_masks(batch["masks"].to(device), image.shape[-1])
    masks, n_masks = noisy_masks(masks, batch["n_masks"], cfg, draws.noise_seeds)
    lr_feats = featurizer(image).float()
    proj = draws.proj.to(device)
    # the clock times the target alone, not the backbone's kernels still queued (proj's copy
    # from pageable memory waits for them too, but only as a side effect of how it is copied)
    settle(device)
    started = time.perf_counter()
    with torch.autocast(device.type, enabled=False):  # targets in float32 even under bf16
        target = mask_bicubic(project(lr_feats, proj), masks, cfg.stage1.mask_alpha, n_masks)
    settle(device)
    return {
        "target_seconds": time.perf_counter() - started,
        "stage": 1,
        "lr_feats": lr_feats,
        "image": image,
        "views": backbone_views(featurizer, image, draws),
        "proj": proj,
        "target": target,
    }


def crop_packed(packed: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """Masks packed (K, H, W/8) -> bool (K, size, size) of the square at (top, left)."""
    first, last = left // 8, -(-(left + size) // 8)
    bits = unpack_masks(packed[:, top : top + size, first:last], (last - first) * 8)
    return bits[..., left - first * 8 : left - first * 8 + size]


def resize_packed(packed: torch.Tensor, width: int, size: int) -> torch.Tensor:
    """Masks packed (..., H, W/8) at side ``width`` -> bool (..., size, size), nearest pixel."""
    idx = ((torch.arange(size, device=packed.device) + 0.5) * width / size).long()
    rows = unpack_masks(packed[..., idx, :], width)
    return rows[..., idx]


@torch.no_grad()
def stage2_inputs(featurizer, teacher, images01, batch: dict, draws: StepDraws, cfg) -> dict:
    """The global view, its backbone views, and the teacher's regions for the affinity loss.

    ``images01`` (B, 3, L, L) in [0, 1] at the load size L; the global view is them resized to s.
    """
    s2, device = cfg.stage2, images01.device
    load, s = images01.shape[-1], draws.size
    image = featurizer.normalize(
        F.interpolate(images01, size=(s, s), mode="bilinear", antialias=True)
    )
    lr_feats = featurizer(image).float()
    packed = batch["masks"].to(device)
    n_masks = batch["n_masks"]
    # the clock times the targets: the teacher's regions (the crops' backbone features it
    # takes, its forward, the mask adjustment), not the global view's backbone queued before
    settle(device)
    started = time.perf_counter()
    region = region_side(s, load)  # a crop's side in the global view
    side = min(region, s2.affinity_max_side)
    full = None  # the teacher on the global view: the same region for every jitter
    if s2.teacher_view in ("full", "both"):
        out = teacher(lr_feats, image).float()
        with torch.autocast(device.type, enabled=False):
            masks = resize_packed(packed, load, s)
            out = mask_adjust(out, masks, s2.teacher_alpha, n_masks)
        out = F.interpolate(out, size=(side, side), mode="bilinear", antialias=True)
        boxes = torch.tensor([[0, 0, s]] * image.shape[0])
        full = {"teacher": out, "boxes": boxes, "central": s2.central}
    regions = []
    for j in range(draws.offsets.shape[1]):
        if s2.teacher_view in ("crops", "both"):
            offsets = draws.offsets[:, j]
            crops = torch.stack(
                [images01[b, :, t : t + s, x : x + s] for b, (t, x) in enumerate(offsets.tolist())]
            )
            crop_images = featurizer.normalize(crops)
            out = teacher(featurizer(crop_images).float(), crop_images).float()
            adjusted = []
            for b, (t, x) in enumerate(offsets.tolist()):
                m = crop_packed(packed[b, : int(n_masks[b])], t, x, s)
                with torch.autocast(device.type, enabled=False):
                    adjusted.append(mask_adjust(out[b : b + 1], m[None], s2.teacher_alpha))
            out = F.interpolate(
                torch.cat(adjusted), size=(side, side), mode="bilinear", antialias=True
            )
            boxes = torch.stack(
                [(offsets[:, 0] * s / load).round(), (offsets[:, 1] * s / load).round()], dim=1
            ).long()
            boxes = torch.cat(
                [boxes.clamp(max=s - region), torch.full_like(boxes[:, :1], region)], 1
            )
            regions.append({"teacher": out, "boxes": boxes, "central": s2.central})
    if full is not None:  # counted once per jitter, as the crops: "both" weighs the two alike
        regions.append({**full, "weight": float(draws.offsets.shape[1])})
    settle(device)
    return {
        "target_seconds": time.perf_counter() - started,
        "stage": 2,
        "lr_feats": lr_feats,
        "image": image,
        "views": backbone_views(featurizer, image, draws),
        "proj": draws.proj.to(device),
        "regions": regions,
    }
