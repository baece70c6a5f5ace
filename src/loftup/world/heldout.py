"""``loftup demo``'s measurements on the held-out scenes: their features at the backbone's
resolution, each upsampler's full-resolution features, a linear probe per upsampler (fitted on
the first half of the scenes, scored on the second) and one PCA basis for the pictures.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.scene_files import read_world
from .config import DemoConfig


def load_val(val_root: Path, another: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out images (N, 3, H, W) in [0, 1] and labels (N, H, W) int64, read from disk;
    ``another``: the option that chose ``val_root`` where it is the command's own output
    ("--out": offered beside the chmod of a file this user may not read)."""
    world = read_world(val_root, another)
    images, labels = [], []
    for name in world.names:
        image, label, _ = world.load(name)
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
        labels.append(torch.from_numpy(label).long())
    return torch.stack(images), torch.stack(labels)


@torch.no_grad()
def lowres_features(featurizer, images01: torch.Tensor, batch: int = 8):
    """(guidance (N, 3, H, W) normalised, low-res features (N, C, h, w)) of images in [0, 1]."""
    guidance = featurizer.normalize(images01)
    parts = [featurizer(guidance[i : i + batch]).float() for i in range(0, len(guidance), batch)]
    return guidance, torch.cat(parts)


@torch.no_grad()
def upsampled_features(
    upsamplers: dict, lr_feats, guidance, batch: int = 8, *, progress: bool = True
) -> dict:
    """{name: (N, C, H, W)} for each upsampler ``fn(lr_feats, guidance)`` (``progress``: a
    bar over them)."""
    from tqdm.auto import tqdm

    from ..bars import bar_settings

    out = {}
    for name, fn in tqdm(upsamplers.items(), desc="upsampling", **bar_settings(shown=progress)):
        parts = [
            fn(lr_feats[i : i + batch], guidance[i : i + batch])
            for i in range(0, len(lr_feats), batch)
        ]
        out[name] = torch.cat(parts).float()
    return out


def score(
    hr: torch.Tensor, labels: torch.Tensor, classes: int, cfg: DemoConfig, *, progress: bool = False
) -> dict:
    """Probe fitted on the first half of the scenes, scored on the second half.

    Pixels labelled 255 (a dataset's void, as with ``--eval-dataset``) are left out of every
    score, the boundary F-score's boundaries along them included. ``progress``: a bar over the
    probe's steps.
    """
    from ..eval.metrics import boundary_f_score, miou, pixel_accuracy
    from ..eval.probe import ProbeConfig, fit_linear_probe

    half = len(hr) // 2
    pcfg = ProbeConfig(epochs=cfg.probe_epochs, lr=cfg.probe_lr, batch_size=4, seed=cfg.seed)
    probe = fit_linear_probe(hr[:half], labels[:half], classes, config=pcfg, progress=progress)
    with torch.no_grad():
        pred = torch.cat([probe(hr[i : i + 8]).argmax(1) for i in range(half, len(hr), 8)])
    gt = labels[half:]
    m, _ = miou(pred, gt, classes)
    bf = [boundary_f_score(p, g, 2, ignore_index=255) for p, g in zip(pred, gt)]
    return {
        "miou": m,
        "pixel_accuracy": pixel_accuracy(pred, gt),
        "boundary_f_2px": float(sum(bf) / len(bf)),
        "pred": pred,
    }


def score_all(
    hr: dict, labels: torch.Tensor, classes: int, cfg: DemoConfig, *, progress: bool = True
) -> dict:
    """{name: :func:`score`} of each upsampler's features ``hr`` {name: (N, C, H, W)}.

    ``progress``: a bar over the upsamplers and one over each probe's steps (a probe fit takes
    seconds to tens of seconds on a CPU: minutes for the demo's six)."""
    from tqdm.auto import tqdm

    from ..bars import bar_settings

    results = {}
    with tqdm(hr.items(), desc="probes", **bar_settings(shown=progress)) as bar:
        for name, feats in bar:
            bar.set_postfix_str(name, refresh=True)
            results[name] = score(feats, labels, classes, cfg, progress=progress)
    return results


def pca_panels(lr_feats: torch.Tensor, hr: dict) -> dict:
    """RGB PCA pictures (N, 3, H, W) of every upsampler's features, one basis for all."""
    from ..viz import apply_pca, fit_pca

    basis = fit_pca(lr_feats)
    return {name: apply_pca(f, basis) for name, f in hr.items()}
