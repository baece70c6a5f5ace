"""How much class a backbone's features carry in the scene world, and where.

Two linear probes, both fitted on one half of a set of fresh scenes and scored on the other:

- patch probe: patch features (B, C, h, w) -> the majority class of each patch; scored on all
  patches and on pure ones (a single class under the whole patch);
- pixel probe on bilinear-upsampled features (B, C, H, W) -> the class of each pixel; scored on
  the boundary band (pixels within 2 px of another class) and on the interior (more than one
  patch from any other class).

The gap between interior and boundary accuracy of the bilinear pixel probe is the work left to an
upsampler: the features know the class, bilinear interpolation does not know where it stops.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.scenes import SceneConfig, generate_scene
from ..stops import first


def fit_linear_probe(
    x: torch.Tensor, y: torch.Tensor, classes: int, *, iters: int = 50, l2: float = 1e-4
) -> torch.nn.Linear:
    """Multinomial logistic regression: features (N, C), labels (N,) -> a Linear(C, classes).

    Full-batch L-BFGS (``iters`` iterations) with a small L2 penalty on the weights.
    """
    x, y = x.detach().float(), y.detach().long()
    probe = torch.nn.Linear(x.shape[1], classes).to(x.device)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(probe(x), y) + l2 * probe.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return probe.requires_grad_(False)


def near_other_class(labels: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, H, W) integer labels -> (B, H, W) bool: another class within ``radius`` px (square)."""
    lab = labels[:, None].float()
    k = 2 * radius + 1
    hi = F.max_pool2d(lab, k, stride=1, padding=radius)
    lo = -F.max_pool2d(-lab, k, stride=1, padding=radius)
    # max-pooling pads with -inf, so the image border itself never counts as another class
    return (hi != lo)[:, 0]


def patch_majority(labels: torch.Tensor, patch: int, classes: int) -> tuple[torch.Tensor, ...]:
    """(B, H, W) labels -> majority class (B, h, w) and its fraction of the patch (B, h, w)."""
    onehot = F.one_hot(labels.long(), classes).permute(0, 3, 1, 2).float()
    frac = F.avg_pool2d(onehot, patch)
    purity, major = frac.max(1)
    return major, purity


def scene_batch(
    config: SceneConfig, seed: int, indices, jpeg_quality: int | None = 95, progress: bool = False
):
    """Scenes as tensors: images (B, 3, H, W) float in [0, 1] and labels (B, H, W) int64.

    With ``jpeg_quality`` the images go through the same JPEG encoding as the files on disk.
    ``progress``: a bar over the scenes (tens of milliseconds each: minutes for thousands).
    """
    from tqdm.auto import tqdm

    from ..bars import bar_settings
    from ..data.scene_files import decode_jpeg, encode_jpeg

    images, labels = [], []
    for i in tqdm(indices, desc="scenes", **bar_settings(shown=progress)):
        s = generate_scene(config, seed, int(i))
        img = s.image if jpeg_quality is None else decode_jpeg(encode_jpeg(s.image, jpeg_quality))
        images.append(torch.from_numpy(img).permute(2, 0, 1))
        labels.append(torch.from_numpy(s.labels.astype(np.int64)))
    return torch.stack(images).float() / 255, torch.stack(labels)


@torch.no_grad()
def features_of(featurizer, images01: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] -> featurizer outputs (B, C, h, w), in batches."""
    device = first(featurizer.parameters()).device  # (closed: loftup.stops)
    out = [
        featurizer(featurizer.normalize(images01[i : i + batch_size].to(device))).cpu()
        for i in range(0, len(images01), batch_size)
    ]
    return torch.cat(out)


def probe_report(
    feats: torch.Tensor, labels: torch.Tensor, classes: int, *, pixels: int = 20000, seed: int = 0
) -> dict:
    """Accuracies of the patch probe and of the bilinear pixel probe (see the module note).

    feats (B, C, h, w) of B scenes with labels (B, H, W); the first half fits, the second scores.
    """
    b, c, h, w = feats.shape
    height, width = labels.shape[-2:]
    patch = height // h
    fit, test = slice(0, b // 2), slice(b // 2, b)
    major, purity = patch_majority(labels, patch, classes)
    flat = feats.permute(0, 2, 3, 1)
    probe = fit_linear_probe(flat[fit].reshape(-1, c), major[fit].reshape(-1), classes)
    right = probe(flat[test]).argmax(-1) == major[test]
    pure = purity[test] == 1

    g = torch.Generator().manual_seed(seed)
    up = F.interpolate(feats, size=(height, width), mode="bilinear", align_corners=False)
    up = up.permute(0, 2, 3, 1)
    x_fit, y_fit = up[fit].reshape(-1, c), labels[fit].reshape(-1)
    pick = torch.randperm(len(y_fit), generator=g)[:pixels]
    pixel_probe = fit_linear_probe(x_fit[pick], y_fit[pick], classes)
    correct = pixel_probe(up[test]).argmax(-1) == labels[test]
    boundary = near_other_class(labels[test], 2)
    interior = ~near_other_class(labels[test], patch)
    return {
        "patch_accuracy": right.float().mean().item(),
        "patch_accuracy_pure": right[pure].float().mean().item(),
        "pixel_accuracy_bilinear": correct.float().mean().item(),
        "pixel_accuracy_bilinear_boundary": correct[boundary].float().mean().item(),
        "pixel_accuracy_bilinear_interior": correct[interior].float().mean().item(),
        "boundary_fraction": boundary.float().mean().item(),
        "scenes": b,
        "classes": classes,
    }


def measure_backbone(
    featurizer,
    config: SceneConfig,
    *,
    seed: int = 1,
    count: int = 48,
    start: int = 0,
    said_as: dict | None = None,
    progress: bool = False,
) -> dict:
    """:func:`probe_report` of ``featurizer`` on scenes ``start .. start + count`` of seed ``seed``.

    ``said_as``: how errors call ``count``, ``seed``, ``start`` and the scene ``size`` (a
    command line's options, ``{"count": "--count"}``), by default by their names.
    ``progress``: a bar while the scenes are made (seconds per hundred)."""
    from ..data.world_record import check_scene_range
    from ..errors import UsageError
    from ..words import said

    if isinstance(count, int) and count < 2:
        raise UsageError(
            f"{said('count', said_as)} must be at least 2 (half the scenes fit, half score), "
            f"got {count}"
        )
    patch = getattr(featurizer, "patch_size", 1)
    if config.height % patch or config.width % patch:  # the labels' patches must be the features'
        fit = "x".join(
            str(max(patch, round(n / patch) * patch)) for n in (config.height, config.width)
        )
        size = said("size", said_as)
        raise UsageError(
            f"{'scene size' if size == 'size' else size} {config.height}x{config.width} is not "
            f"a multiple of {patch} (the "
            f"backbone's patch) on both sides; give one that is, e.g. {fit}"
        )
    check_scene_range(count, seed=seed, start=start, said_as=said_as)
    images, labels = scene_batch(config, seed, range(start, start + count), progress=progress)
    report = probe_report(features_of(featurizer, images), labels, config.num_classes)
    return {**report, "seed": seed, "size": [config.height, config.width]}
