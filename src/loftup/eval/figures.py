"""PNG figures of a few predictions per evaluation run (matplotlib, Agg backend).

Each function takes a list of examples (plain tensors on the CPU) and a path, and writes one
figure: a row per example, columns image / ground truth / prediction (/ features as PCA
colours when given).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def label_colours(num_classes: int, seed: int = 0) -> np.ndarray:
    """(K + 1, 3) float colours: a fixed random colour per class, black for 'not scored'."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.15, 1.0, size=(num_classes + 1, 3))
    colours[-1] = 0.0
    return colours


def colourise(labels: torch.Tensor, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) colours (ignored pixels black)."""
    lab = labels.long().clone()
    lab[(lab == ignore_index) | (lab < 0) | (lab >= num_classes)] = num_classes
    return label_colours(num_classes)[lab.numpy()]


def _image(img: torch.Tensor) -> np.ndarray:
    return img.permute(1, 2, 0).clamp(0, 1).numpy()


def _save(fig, plt, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (PNG, atomically) and close it, also when writing fails:
    pyplot keeps every figure it made until it is closed (a leak in a long-lived process)."""
    from ..figure_mark import save_figure

    path = Path(path)
    try:
        fig.tight_layout()
        # a figure is a file the user named (--figure) or asked for: a link to it stays one
        save_figure(fig, path, 100, follow_links=True)  # marked loftup's
    finally:
        plt.close(fig)
    return path


def _grid(rows: int, cols: int, plt):
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


@contextmanager
def _figure(rows: int, cols: int) -> Iterator[tuple]:
    """``(fig, axes, plt)`` of a ``rows`` x ``cols`` grid (at least one row), the figure
    closed on the way out however it ends (drawing or writing it failed)."""
    plt = _plt()
    fig, axes = _grid(max(1, rows), cols, plt)
    try:
        yield fig, axes, plt
    finally:
        plt.close(fig)


def seg_figure(examples: list[dict], num_classes: int, path, title: str = "") -> Path:
    """Examples with ``image`` (3, S, S), ``label`` and ``pred`` (S, S), optional ``pca``."""
    cols = 4 if any("pca" in e for e in examples) else 3
    with _figure(len(examples), cols) as (fig, axes, plt):
        for r, ex in enumerate(examples):
            panels = [
                ("image", _image(ex["image"])),
                ("ground truth", colourise(ex["label"], num_classes)),
            ]
            panels.append(("prediction", colourise(ex["pred"], num_classes)))
            if "pca" in ex:
                panels.append(("features (PCA)", _image(ex["pca"])))
            for c, (name, arr) in enumerate(panels):
                axes[r, c].imshow(arr, interpolation="nearest")
                if r == 0:
                    axes[r, c].set_title(name, fontsize=9)
        if title:
            fig.suptitle(title, fontsize=9)
        return _save(fig, plt, path)


def depth_figure(examples: list[dict], path, title: str = "", max_depth: float = 10.0) -> Path:
    """Examples with ``image`` (3, S, S), ``depth`` and ``pred`` (S, S) in metres."""
    with _figure(len(examples), 3) as (fig, axes, plt):
        for r, ex in enumerate(examples):
            gt = ex["depth"].numpy().copy()
            gt[gt <= 0] = np.nan
            axes[r, 0].imshow(_image(ex["image"]))
            axes[r, 1].imshow(gt, cmap="magma_r", vmin=0, vmax=max_depth)
            axes[r, 2].imshow(ex["pred"].numpy(), cmap="magma_r", vmin=0, vmax=max_depth)
            if r == 0:
                for c, name in enumerate(("image", "ground truth (m)", "prediction (m)")):
                    axes[r, c].set_title(name, fontsize=9)
        if title:
            fig.suptitle(title, fontsize=9)
        return _save(fig, plt, path)


def normals_figure(examples: list[dict], path, title: str = "") -> Path:
    """Examples with ``image`` (3, S, S), ``normals`` and ``pred`` (3, S, S) unit normals and
    ``valid`` (S, S): image, ground truth and prediction as RGB ((n + 1) / 2; not scored:
    black), and the angular error in degrees."""
    with _figure(len(examples), 4) as (fig, axes, plt):
        for r, ex in enumerate(examples):
            valid = ex["valid"].numpy()
            gt, pred = ex["normals"].numpy(), ex["pred"].numpy()
            cos = (gt * pred).sum(0) / np.maximum(np.linalg.norm(gt, axis=0), 1e-9)
            error = np.degrees(np.arccos(np.clip(cos, -1, 1)))
            error[~valid] = np.nan
            gt_rgb = np.clip((gt.transpose(1, 2, 0) + 1) / 2, 0, 1) * valid[..., None]
            axes[r, 0].imshow(_image(ex["image"]))
            axes[r, 1].imshow(gt_rgb)
            axes[r, 2].imshow(np.clip((pred.transpose(1, 2, 0) + 1) / 2, 0, 1))
            axes[r, 3].imshow(error, cmap="magma", vmin=0, vmax=60)
            if r == 0:
                names = ("image", "ground truth", "prediction", "angular error (0-60 deg)")
                for c, name in enumerate(names):
                    axes[r, c].set_title(name, fontsize=9)
        if title:
            fig.suptitle(title, fontsize=9)
        return _save(fig, plt, path)


def _overlay(image: np.ndarray, ids: torch.Tensor, colours: np.ndarray) -> np.ndarray:
    out = image.copy()
    ids = ids.numpy()
    fg = ids > 0
    out[fg] = 0.45 * out[fg] + 0.55 * colours[np.clip(ids[fg], 0, len(colours) - 1)]
    return out


def davis_figure(examples: list[dict], path, title: str = "") -> Path:
    """Examples with ``image`` (3, H, W), ``gt`` and ``pred`` (H, W) object ids, ``name``."""
    colours = label_colours(16, seed=1)
    with _figure(len(examples), 2) as (fig, axes, plt):
        for r, ex in enumerate(examples):
            img = _image(ex["image"])
            axes[r, 0].imshow(_overlay(img, ex["gt"], colours))
            axes[r, 1].imshow(_overlay(img, ex["pred"], colours))
            axes[r, 0].set_title(f"{ex['name']}: ground truth", fontsize=8)
            axes[r, 1].set_title("propagated", fontsize=8)
        if title:
            fig.suptitle(title, fontsize=9)
        return _save(fig, plt, path)
