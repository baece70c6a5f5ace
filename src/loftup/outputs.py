"""Writing what ``loftup upsample`` produces: feature files and comparison pictures.

Every file is written atomically (a temporary file in the same folder, then a rename), and the
bytes depend only on the values: the same features give the same file, run after run.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from .atomic import atomic_write_bytes

FORMATS = ("pt", "npy", "safetensors")


def feature_bytes(feats: torch.Tensor, fmt: str, dtype: torch.dtype = torch.float32) -> bytes:
    """Features (C, H, W) serialised as ``fmt``, stored as ``dtype``.

    pt: a plain tensor (``torch.load(path, weights_only=True)``); npy: an array (``numpy.load``;
    NumPy has no bfloat16); safetensors: the tensor under the key ``"features"``.
    """
    if fmt == "npy" and dtype == torch.bfloat16:
        raise ValueError(
            "NumPy (.npy) has no bfloat16; store float32 or float16, or choose the pt or "
            "safetensors format"
        )
    feats = feats.detach().to("cpu", dtype).contiguous().clone()  # own storage only
    if fmt == "pt":
        buf = io.BytesIO()
        torch.save(feats, buf)
        return buf.getvalue()
    if fmt == "npy":
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, feats.numpy(), allow_pickle=False)
        return buf.getvalue()
    if fmt == "safetensors":
        from safetensors.torch import save

        return save({"features": feats})
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def save_features(
    path: str | Path, feats: torch.Tensor, fmt: str, dtype: torch.dtype = torch.float32
) -> None:
    """Write features (C, H, W) to ``path`` atomically, stored as ``dtype``."""
    atomic_write_bytes(path, feature_bytes(feats, fmt, dtype))


def comparison_png(
    image: torch.Tensor, lr_feats: torch.Tensor, hr_feats: torch.Tensor, title: str = ""
) -> bytes:
    """PNG of input | low-res PCA | upsampled PCA, one PCA basis fitted on the low-res features.

    image (3, H0, W0) in [0, 1]; lr_feats (C, h, w); hr_feats (C, H, W). The PCA is seeded, so
    the picture is the same on every run.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .viz import pca_pair

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lr_rgb, hr_rgb = pca_pair(lr_feats[None].float().cpu(), hr_feats[None].float().cpu())
    (h, w), (height, width) = lr_feats.shape[-2:], hr_feats.shape[-2:]
    panels = [
        (image.cpu().clamp(0, 1), f"input {image.shape[-2]}x{image.shape[-1]}"),
        (lr_rgb[0], f"low-res {h}x{w}"),
        (hr_rgb[0], f"upsampled {height}x{width}"),
    ]
    fig = Figure(figsize=(12, 4 * height / width + 0.7), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, subplot_kw={"xticks": [], "yticks": []})
    for ax, (rgb, label) in zip(axes, panels):
        ax.imshow(rgb.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.85 if title else 0.9, wspace=0.04)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
