"""Honest low-resolution grids: the same scene seen by the backbone at g x g patches and scored at g x r pixels.

With a patch-p backbone, a grid of g cells a side is what it gives for an input of p * g pixels;
the upsampling ratio r sets the output side O = g * r. Each held-out scene is therefore
rendered once at R = max(p * g, O) pixels and resized from there (antialiased):

- the backbone sees it at p * g px; in the offline world the scene is rendered at texture scale
  R / (p * g), so that at p * g px its textures have the scale the backbone was trained on
  (a coarse grid means the same scene covered by fewer patches, never textures too fine to read);
- the guidance image is the render at O px (the render itself when O = R: for r > p the
  upsampler is guided by a truly sharper image than the backbone saw, as a camera would give);
- the labels are the render's labels at O px (nearest; exact when O = R).

Real datasets go the same way from images loaded at R px (shorter side to R, centre crop).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..featurizers.sizes import resize_images


def grid_cells(grids, ratios, max_side: int) -> list[tuple[int, int]]:
    """(g, r) pairs whose output side g * r is at most ``max_side``, by grid then ratio."""
    return [(g, r) for g in grids for r in ratios if g * r <= max_side]


def render_side(g: int, r: int, patch: int) -> int:
    """R = max(p * g, g * r): the side the scene is rendered (or loaded) at."""
    return max(patch * g, g * r)


def _resize_labels(y: torch.Tensor, side: int) -> torch.Tensor:
    if y.shape[-1] == side:
        return y
    out = F.interpolate(y[:, None].float(), size=(side, side), mode="nearest-exact")
    return out[:, 0].long()


def cell_views(images01: torch.Tensor, labels: torch.Tensor, g: int, r: int, patch: int) -> dict:
    """From renders (N, 3, R, R) and labels (N, R, R): the cell's three views.

    Returns ``backbone`` (N, 3, p*g, p*g) and ``guidance`` (N, 3, O, O) in [0, 1] and
    ``labels`` (N, O, O).
    """
    side = render_side(g, r, patch)
    if images01.shape[-1] != side or labels.shape[-1] != side:  # internal: rendered at side
        raise ValueError(f"cell ({g}, {r}) needs renders of {side} px, got {images01.shape[-1]}")
    out = g * r
    return {
        "backbone": resize_images(images01, (patch * g,) * 2).clamp(0, 1),
        "guidance": resize_images(images01, (out, out)).clamp(0, 1),
        "labels": _resize_labels(labels, out),
    }


def render_scenes(base, seed: int, count: int, side: int, texture_scale: float):
    """Held-out scenes ``0 .. count-1`` of (base config, seed) at ``side`` px and scale.

    Images go through the world's JPEG (as the scenes on disk do). Returns (N, 3, side, side)
    in [0, 1] and labels (N, side, side) int64.
    """
    from ..data.scene_files import decode_jpeg, encode_jpeg
    from ..data.scenes import generate_scene

    config = dataclasses.replace(base, height=side, width=side, scale=texture_scale)
    images, labels = [], []
    for i in range(count):
        scene = generate_scene(config, seed, i)
        image = decode_jpeg(encode_jpeg(scene.image))
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
        labels.append(torch.from_numpy(scene.labels).long())
    return torch.stack(images), torch.stack(labels)


def load_dataset_renders(name: str, root: str, side: int, count: int):
    """The first count/2 training and count/2 validation images of a seg dataset at ``side`` px."""
    from .data import _dataset_eval_set

    ev = _dataset_eval_set(name, root, side, count)
    return ev.images, ev.labels, ev.classes
