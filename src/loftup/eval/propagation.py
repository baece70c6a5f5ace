"""Label propagation through feature affinities (DAVIS video object segmentation).

The protocol of DINO's video segmentation evaluation, used by LiFT and by LoftUp with
upsampled features: every frame is resized to S x S (S = 224, bicubic), the backbone features
are upsampled to S/2 x S/2 (guidance image shrunk to S/2 by 2 x 2 means, which is the
reference's bilinear halving; other scales average each pixel's area) and L2-normalised. Each
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
    tile: int = 16,
) -> torch.Tensor:
    """Soft labels (K, h, w) of ``target`` (C, h, w) from ``sources`` (T, C, h, w).

    ``source_labels`` (T, K, h, w) are the sources' (soft) labels. Features are L2-normalised
    here. The target is processed in ``tile`` x ``tile`` blocks, each against the sources in
    its neighbourhood only, so memory and work stay local (radius <= 0: against everything).
    """
    t, c, h, w = sources.shape
    # a plain ValueError, as the metrics raise (see loftup.errors): a function on tensors
    if target.shape != (c, h, w) or source_labels.shape[0] != t:
        raise ValueError(
            f"shapes differ: target {tuple(target.shape)}, sources {tuple(sources.shape)}, "
            f"labels {tuple(source_labels.shape)}"
        )
    k = source_labels.shape[1]
    dev = target.device
    tgt = F.normalize(target.float(), dim=0)
    src = F.normalize(sources.float(), dim=1)
    lab = source_labels.float()
    reach = radius if radius > 0 else max(h, w)
    out = torch.empty(k, h, w, device=dev)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
            sy0, sy1 = max(0, y0 - reach), min(h, y1 + reach)
            sx0, sx1 = max(0, x0 - reach), min(w, x1 + reach)
            nq, sh, sw = (y1 - y0) * (x1 - x0), sy1 - sy0, sx1 - sx0
            q = tgt[:, y0:y1, x0:x1].reshape(c, nq)
            s = src[:, :, sy0:sy1, sx0:sx1].permute(1, 0, 2, 3).reshape(c, t * sh * sw)
            sim = (q.T @ s).view(nq, t, sh, sw)
            if radius > 0:
                dy = (
                    torch.arange(y0, y1, device=dev)[:, None] - torch.arange(sy0, sy1, device=dev)
                ).abs()
                dx = (
                    torch.arange(x0, x1, device=dev)[:, None] - torch.arange(sx0, sx1, device=dev)
                ).abs()
                near = (dy <= radius)[:, None, :, None] & (dx <= radius)[None, :, None, :]
                sim = sim.masked_fill(~near.reshape(nq, 1, sh, sw), float("-inf"))
            val, idx = sim.reshape(nq, -1).topk(min(topk, t * sh * sw), dim=1)
            weight = torch.softmax(val / temperature, dim=1)  # exp(cos / T) over the top k
            votes = lab[:, :, sy0:sy1, sx0:sx1].permute(1, 0, 2, 3).reshape(k, -1)[:, idx]
            out[:, y0:y1, x0:x1] = (votes * weight[None]).sum(-1).reshape(k, y1 - y0, x1 - x0)
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
        if cfg.n_last_frames > 0:  # 0: the first frame is the only source
            if len(queue) == cfg.n_last_frames:
                queue.pop(0)
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
