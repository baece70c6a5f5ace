"""Writing what ``loftup upsample`` produces: feature files and comparison pictures.

Every file is written atomically (a temporary file in the same folder, then a rename), and the
bytes depend only on the values: the same features give the same file, run after run.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write, replace_durably, temp_beside
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
    that cannot be written (a full disk) raises ``OSError``, whatever the format."""
    _check_format(fmt, dtype)
    t = _stored(feats, dtype)

    def write(tmp: str) -> None:
        if fmt == "safetensors":  # written from the tensor, without the bytes in memory
            from safetensors.torch import save_file

            _serialising(lambda: save_file({"features": t}, tmp))
            return
        with open(tmp, "wb") as f:
            _serialising(lambda: _serialise(t, fmt, f))

    atomic_write(path, write)


#: How each stored dtype is mapped (NumPy has no bfloat16: its 16 bits as unsigned integers),
#: and its name in a safetensors header.
_MAPPED = {
    torch.float32: (np.float32, "F32"),
    torch.float16: (np.float16, "F16"),
    torch.bfloat16: (np.uint16, "BF16"),
}


#: posix_fallocate's answers that mean "not supported" rather than "no room".
_NO_FALLOCATE = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


class FeatureFile:
    """A feature file filled in place through a memory map, tile by tile: an output of any
    size in the memory of one tile, and the same bytes as :func:`save_features` writes for the
    same values (tested for every format and dtype).

        f = FeatureFile("feats/a.npy", "npy", torch.float32, (384, 4000, 3000))
        f.features[:, rows, cols] = tile     # a (C, H, W) tensor mapping the file's data
        f.commit()                           # complete: renamed onto its path
        # or f.discard(): nothing is left behind

    The file is made under a temporary name in the destination folder and its space reserved
    at once, so a full disk is an ``OSError`` here (not a crash on a later write through the
    map). A ``.pt`` file is a zip archive: its data is mapped in a second temporary file and
    saved into the archive at ``commit`` (twice its size on disk for a moment). Features are
    (C, H, W); any other shape is mapped alike (:func:`loftup.tiling.upsample_to_npy` writes
    whole batches, in either layout).
    """

    def __init__(self, path: str | Path, fmt: str, dtype: torch.dtype, shape: tuple) -> None:
        _check_format(fmt, dtype)
        if dtype not in _MAPPED:
            raise UsageError(
                f"a feature file holds float32, float16 or bfloat16, not {dtype}; pass one of those"
            )
        shape = tuple(int(n) for n in shape)
        if not shape or min(shape) < 1:
            raise UsageError(f"a feature file needs a shape with positive sizes, got {shape}")
        self.path, self.fmt, self.dtype, self.shape = Path(path), fmt, dtype, shape
        np_dtype, st_name = _MAPPED[dtype]
        nbytes = int(np.prod(shape)) * np.dtype(np_dtype).itemsize
        self._tmp = temp_beside(self.path)
        self._raw = None  # the .pt data, mapped beside the archive
        try:
            if fmt == "npy":
                header = io.BytesIO()  # exactly what numpy.save writes before the data
                descr = np.lib.format.dtype_to_descr(np.dtype(np_dtype))
                d = {"descr": descr, "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(header, d)
                mapped = self._reserve(self._tmp, header.getvalue(), nbytes)
            elif fmt == "safetensors":  # a little-endian length, a JSON header padded to 8
                meta = {
                    "features": {
                        "dtype": st_name,
                        "shape": list(shape),
                        "data_offsets": [0, nbytes],
                    }
                }
                text = json.dumps(meta, separators=(",", ":")).encode()
                text += b" " * (-len(text) % 8)
                mapped = self._reserve(self._tmp, len(text).to_bytes(8, "little") + text, nbytes)
            else:
                self._raw = temp_beside(self.path)
                mapped = self._reserve(self._raw, b"", nbytes)
            self._map = np.memmap(mapped[0], np_dtype, "r+", offset=mapped[1], shape=shape)
        except BaseException:
            self.discard()
            raise
        t = torch.from_numpy(self._map)
        #: (C, H, W) in ``dtype``, mapping the file's data: write the features here.
        self.features = t.view(torch.bfloat16) if dtype == torch.bfloat16 else t

    @staticmethod
    def _reserve(tmp: str, header: bytes, nbytes: int) -> tuple[str, int]:
        """Write ``header`` and reserve ``nbytes`` after it: (file, offset of the data)."""
        with open(tmp, "r+b") as f:
            f.write(header)
            f.flush()
            try:  # ENOSPC now, not SIGBUS on a write through the map later
                os.posix_fallocate(f.fileno(), len(header), nbytes)
            except (AttributeError, OSError) as e:  # no such call here, or not on this file system
                if getattr(e, "errno", None) not in (None, *_NO_FALLOCATE):
                    raise
                f.truncate(len(header) + nbytes)
        return tmp, len(header)

    def commit(self) -> None:
        """Flush the data and put the complete file in place (renamed onto ``path``)."""
        try:
            self._map.flush()
            if self.fmt == "pt":
                with open(self._tmp, "wb") as f:
                    _serialising(lambda: torch.save(self.features, f))
            self.features = self._map = None
            if self._raw is not None:
                os.unlink(self._raw)
                self._raw = None
            replace_durably(self._tmp, self.path)
            self._tmp = None
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Drop the map and the temporary files; ``path`` is left as it was."""
        self.features = self._map = None
        for name in ("_tmp", "_raw"):
            tmp = getattr(self, name, None)
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            setattr(self, name, None)


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
    fig.savefig(buf, format="png")
    return buf.getvalue()
