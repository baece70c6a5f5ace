"""Label propagation through feature affinities (DAVIS video object segmentation).

The protocol of DINO's video segmentation evaluation, used by LiFT and by LoftUp with
upsampled features: every frame is resized to S x S (S = 224, bicubic), the backbone features
are upsampled to S/2 x S/2 (guidance image resized to S/2, bilinear) and L2-normalised. Each
new frame's soft labels are a weighted vote of its 5 most similar source positions, among the
first frame (ground-truth labels) and the 7 previous frames (propagated soft labels), restricted
to a square of radius 12 feature cells around the position; the weights are
``exp(cos / 0.1)`` normalised over the 5. The soft labels are then upsampled bilinearly to
S x S, each object channel min-max normalised, the arg-max taken and resized (nearest) to the
frame's original size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class PropagationConfig:
    """DAVIS label propagation settings (defaults: LiFT / DINO / LoftUp).

    Arguments:
      feature_scale: features are upsampled to the frame size (S x S) times this (LoftUp: 0.5).
      n_last_frames: previous frames used as context, besides the first.
      topk: source positions each target position takes its label from.
      temperature: affinities are exp(cosine / temperature).
      radius: sources within this many feature cells (Chebyshev distance); <= 0: everywhere.
    """

    feature_scale: float = 0.5
    n_last_frames: int = 7
    topk: int = 5
    temperature: float = 0.1
    radius: int = 12

    def to_dict(self) -> dict:
        return asdict(self)


def propagate_labels(
    target: torch.Tensor,
    sources: torch.Tensor,
    source_labels: torch.Tensor,
    *,
    topk: int = 5,
    temperature: float = 0.1,
    radius: int = 12,
    max_elements: int = 1 << 25,
) -> torch.Tensor:
    """Soft labels (K, h, w) of ``target`` (C, h, w) from ``sources`` (T, C, h, w).

    ``source_labels`` (T, K, h, w) are the sources' (soft) labels. Features are L2-normalised
    here. Target rows are processed in bands so that at most about ``max_elements`` affinities
    are held at once.
    """
    t, c, h, w = sources.shape
    if target.shape != (c, h, w) or source_labels.shape[0] != t:
        raise ValueError(
            f"shapes differ: target {tuple(target.shape)}, sources {tuple(sources.shape)}, "
            f"labels {tuple(source_labels.shape)}"
        )
    k = source_labels.shape[1]
    tgt = F.normalize(target.float(), dim=0)
    src = F.normalize(sources.float(), dim=1)
    lab = source_labels.float()
    local = radius > 0
    span = 2 * radius if local else h
    rows = max(1, min(h, max_elements // max(1, w * t * (span + 1) * w)))
    cols = torch.arange(w, device=target.device)
    out = torch.empty(k, h, w, device=target.device)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        s0, s1 = (max(0, r0 - radius), min(h, r1 + radius)) if local else (0, h)
        q = tgt[:, r0:r1].reshape(c, -1)  # (C, nq)
        s = src[:, :, s0:s1].permute(1, 0, 2, 3).reshape(c, -1)  # (C, T * ns)
        sim = q.T @ s  # (nq, T * ns)
        if local:
            qy = torch.arange(r0, r1, device=target.device).repeat_interleave(w)
            qx = cols.repeat(r1 - r0)
            sy = torch.arange(s0, s1, device=target.device).repeat_interleave(w).repeat(t)
            sx = cols.repeat((s1 - s0) * t)
            near = ((qy[:, None] - sy[None]).abs() <= radius) & (
                (qx[:, None] - sx[None]).abs() <= radius
            )
            sim = sim.masked_fill(~near, float("-inf"))
        val, idx = sim.topk(min(topk, sim.shape[1]), dim=1)
        weight = torch.softmax(val / temperature, dim=1)  # exp(cos / T) normalised over top-k
        src_lab = lab[:, :, s0:s1].permute(1, 0, 2, 3).reshape(k, -1)  # (K, T * ns)
        votes = (src_lab[:, idx] * weight[None]).sum(-1)  # (K, nq)
        out[:, r0:r1] = votes.reshape(k, r1 - r0, w)
    return out


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(h, w) integer labels -> (K, h, w) float one-hot."""
    return F.one_hot(labels.long(), num_classes).permute(2, 0, 1).float()


def propagate_video(
    frame_feats: Iterable[torch.Tensor],
    first_labels: torch.Tensor,
    config: PropagationConfig | None = None,
) -> Iterator[torch.Tensor]:
    """Soft labels (K, h, w) of frames 1, 2, ... given their features (C, h, w) in order.

    The first item of ``frame_feats`` is frame 0, whose labels are ``first_labels`` (K, h, w);
    it is a source for every frame, together with the ``n_last_frames`` previous ones.
    """
    cfg = config or PropagationConfig()
    it = iter(frame_feats)
    first = next(it)
    queue: list[tuple[torch.Tensor, torch.Tensor]] = []
    for feats in it:
        context = [(first, first_labels)] + queue
        soft = propagate_labels(
            feats,
            torch.stack([f for f, _ in context]),
            torch.stack([lab for _, lab in context]),
            topk=cfg.topk,
            temperature=cfg.temperature,
            radius=cfg.radius,
        )
        if len(queue) == cfg.n_last_frames:
            queue.pop(0)
        if cfg.n_last_frames > 0:
            queue.append((feats, soft))
        yield soft


def soft_to_mask(soft: torch.Tensor, image_size: int, out_size: tuple[int, int]) -> torch.Tensor:
    """(K, h, w) soft labels -> (H0, W0) object ids: bilinear to image_size, per-channel
    min-max normalisation (channels whose max is > 0), arg-max, nearest to the original size."""
    up = F.interpolate(soft[None], size=(image_size, image_size), mode="bilinear")[0]
    lo = up.amin((1, 2), keepdim=True)
    hi = up.amax((1, 2), keepdim=True)
    scaled = (up - lo) / (hi - lo).clamp_min(1e-12)
    up = torch.where(hi > 0, scaled, up)
    ids = up.argmax(0)
    return F.interpolate(ids[None, None].float(), size=out_size, mode="nearest-exact")[0, 0].long()
