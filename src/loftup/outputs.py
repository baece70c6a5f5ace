"""Writing what ``loftup upsample`` produces: feature files and comparison pictures.

Every file is written atomically (a temporary file in the same folder, then a rename), and the
bytes depend only on the values: the same features give the same file, run after run.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write
from .errors import UsageError

FORMATS = ("pt", "npy", "safetensors")


def _check_format(fmt: str, dtype: torch.dtype) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "npy" and dtype == torch.bfloat16:
        raise UsageError(
            "NumPy (.npy) has no bfloat16; store float32 or float16, or choose the pt or "
            "safetensors format"
        )


def _named(dtype):
    """A dtype given by name (``"float16"``, ``"bf16"``) as the torch dtype, as
    :class:`loftup.feature_file.FeatureFile` reads it (an unknown name: a UsageError naming
    the choices); any other as given."""
    if isinstance(dtype, str):
        from .checks import as_dtype

        return as_dtype(dtype)
    return dtype


def _stored(feats: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``feats`` on the CPU as ``dtype``, contiguous and alone in its storage (``torch.save``
    writes a view's whole storage), copied only where it is not so already."""
    t = feats.detach().to("cpu", dtype).contiguous()
    if t.storage_offset() or t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.clone()
    return t


def _serialise(feats: torch.Tensor, fmt: str, f) -> None:
    """Write stored features to the binary file object ``f``."""
    if fmt == "pt":
        torch.save(feats, f)
    elif fmt == "npy":
        np.save(f, feats.numpy(), allow_pickle=False)
    else:
        from safetensors.torch import save

        f.write(save({"features": feats}))


def feature_bytes(feats: torch.Tensor, fmt: str, dtype: torch.dtype = torch.float32) -> bytes:
    """Features (C, H, W) serialised as ``fmt``, stored as ``dtype``.

    pt: a plain tensor (``torch.load(path, weights_only=True)``); npy: an array (``numpy.load``;
    NumPy has no bfloat16); safetensors: the tensor under the key ``"features"``.
    """
    dtype = _named(dtype)
    _check_format(fmt, dtype)
    buf = io.BytesIO()
    _serialise(_stored(feats, dtype), fmt, buf)
    return buf.getvalue()


def _write_failure(e: Exception) -> OSError | None:
    """The ``OSError`` behind a serialiser's own error (a full disk, a lost mount): torch.save's
    zip writer raises a RuntimeError while handling the failed write's OSError, and safetensors
    says ``... (os error 28)`` (before 0.5: ``IoError(Os { code: 28, ... })``); None when the
    error is not the file system's."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    found = re.search(r"\(os error (\d+)\)|Os \{ code: (\d+)", str(e))
    if found:
        code = int(found.group(1) or found.group(2))
        return OSError(code, os.strerror(code))
    return None


def _serialising(write):
    """``write(...)`` raising the file system's ``OSError`` where a serialiser wraps it in
    another error (what callers catch for a file that cannot be written)."""
    try:
        write()
    except OSError:
        raise
    except Exception as e:
        failure = _write_failure(e)
        if failure is None:
            raise
        raise failure from e


def save_features(
    path: str | Path, feats: torch.Tensor, fmt: str, dtype: torch.dtype = torch.float32
) -> None:
    """Write features (C, H, W) to ``path`` atomically, stored as ``dtype``: the bytes of
    :func:`feature_bytes`, serialised straight into the file (no copy in memory besides the
    stored tensor, itself the features when they are already contiguous in that dtype). A file
    that cannot be written (a full disk) raises ``OSError``, whatever the format. A leading
    ``~`` in ``path`` is the home folder, as elsewhere in loftup."""
    dtype = _named(dtype)
    _check_format(fmt, dtype)
    path = os.path.expanduser(os.fspath(path))  # "~/x.pt" made a folder named ~ here
    t = _stored(feats, dtype)

    def write(tmp: str) -> None:
        if fmt == "safetensors":  # written from the tensor, without the bytes in memory
            from safetensors.torch import save_file

            _serialising(lambda: save_file({"features": t}, tmp))
            return
        with open(tmp, "wb") as f:
            _serialising(lambda: _serialise(t, fmt, f))

    atomic_write(path, write)


def __getattr__(name: str):
    """``loftup.outputs.FeatureFile``, where it was before it had a module of its own."""
    if name == "FeatureFile":
        from .feature_file import FeatureFile

        return FeatureFile
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Input images and upsampled features larger than this (in pixels, either side) are drawn from
#: every k-th row and column, k the smallest that fits (the figure's panels are about 400
#: pixels wide).
DISPLAY_SIDE = 1024


def comparison_png(
    image: torch.Tensor, lr_feats: torch.Tensor, hr_feats: torch.Tensor, title: str = ""
) -> bytes:
    """PNG of input | low-res PCA | upsampled PCA, one PCA basis fitted on the low-res features
    (on the upsampled ones shown where the low-res grid is too small or constant: see
    :func:`pca_pair`).

    image (3, H0, W0) in [0, 1]; lr_feats (C, h, w); hr_feats (C, H, W); the image and the
    features are each drawn from every k-th row and column when larger than
    :data:`DISPLAY_SIDE` (so a memory-mapped output of any size is never copied whole). The
    PCA is seeded (its own generator; the process's random numbers are left alone), so the
    picture is the same on every run.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .figure_mark import png_metadata
    from .viz import pca_pair

    (h, w), (height, width) = lr_feats.shape[-2:], hr_feats.shape[-2:]
    step = -(-max(height, width) // DISPLAY_SIDE)  # a panel shows a few hundred pixels anyway
    shown = hr_feats[:, ::step, ::step].float().cpu()  # a strided copy: any size in little memory
    lr_rgb, hr_rgb = pca_pair(lr_feats[None].float().cpu(), shown[None])  # seeded: own generator
    # the input drawn from every k-th row and column too: a 36-megapixel photo took 18 s and
    # 3 GB (seven times its own size) to draw whole into a panel of 400 pixels
    every = -(-max(image.shape[-2:]) // DISPLAY_SIDE)
    pixels = image[:, ::every, ::every].cpu().clamp(0, 1)
    panels = [
        (pixels, f"input {image.shape[-2]}x{image.shape[-1]}"),
        (lr_rgb[0], f"low-res {h}x{w}"),
        (hr_rgb[0], f"upsampled {height}x{width}"),
    ]
    # panels 4 inches wide, as tall as the image makes them, up to 16 (a 1000 x 3 image made
    # a 1200 x 133,000 pixel picture; taller ones would have taken gigabytes to draw)
    fig = Figure(figsize=(12, min(4 * height / width, 16) + 0.7), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, subplot_kw={"xticks": [], "yticks": []})
    for ax, (rgb, label) in zip(axes, panels):
        ax.imshow(rgb.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.axis("off")
    if title:  # a file name's undecodable bytes (surrogates, which no font draws) as U+FFFD
        title = title.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        # as written: matplotlib reads text between two dollar signs as TeX ($$.png raised,
        # a$b$.png was drawn as a formula)
        fig.suptitle(title, fontsize=10, parse_math=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.85 if title else 0.9, wspace=0.04)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=png_metadata())
    return buf.getvalue()
