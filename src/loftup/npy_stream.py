"""Streaming the upsampler's output into a memory-mapped ``.npy`` file, tile by tile: an output
of any size in the memory of one tile (:func:`loftup.tiling.upsample` computes the tiles).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import UsageError
from .input_checks import check_inputs, require_eval
from .tile_plan import Tile, check_settings

if TYPE_CHECKING:
    import numpy as np

    from .model import LoftUp


def upsample_to_npy(
    model: LoftUp,
    lr_feats: torch.Tensor,
    image: torch.Tensor,
    path: str | os.PathLike,
    *,
    layout: str = "nchw",
    dtype: str = "float32",
    tile_size: int | None = None,
    chunk_size: int | None = None,
    conv: str | None = None,
    progress: bool = True,
) -> np.memmap:
    """Stream ``model(lr_feats, image)`` into a memory-mapped ``.npy`` file, tile by tile;
    returns the open memmap (read-only).

    Arguments:
      model: a :class:`loftup.LoftUp` in eval mode (tiles cannot share training mode's batch
        statistics: a model in training mode is a :class:`loftup.errors.UsageError`).
      lr_feats, image: (B, C, h, w) backbone features and (B, 3, H, W) ImageNet-normalised
        guidance image, as the model's forward takes them.
      path: the ``.npy`` file to create (written in place and renamed when complete; ``~``
        is the home folder, as elsewhere in loftup). An empty batch gives an empty array.
      layout: ``"nchw"`` for (B, C, H, W) like the model's output, ``"nhwc"`` for (B, H, W, C)
        (contiguous tiles: faster to write, and one pixel's feature vector is contiguous).
      dtype: numpy dtype of the file (``float32`` or ``float16``).
      tile_size, chunk_size, conv, progress: as :func:`loftup.tiling.upsample` (None: the
        model's ``tile_size``, ``chunk_size`` and ``conv``, as its forward uses them).
    """
    import numpy as np

    if layout not in ("nchw", "nhwc"):
        raise UsageError(f"layout must be 'nchw' or 'nhwc', got {layout!r}")
    try:
        known = np.dtype(dtype) in (np.float32, np.float16)
    except TypeError:  # not a NumPy dtype at all ("float", torch.float16)
        known = False
    if not known:
        raise UsageError(f"dtype must be float32 or float16 (a NumPy dtype name), got {dtype!r}")
    from .feature_file import FeatureFile
    from .tiling import upsample  # here, not at the top: tiling.py imports this module

    # bad input is named before the file is made, as the model's forward names it (not as a
    # shape error from inside the first tile)
    require_eval(model, "upsample_to_npy")  # a LoftUp (a pipeline's is pipeline.upsampler)
    check_inputs(lr_feats, image, model.config.dim, model.head.conv.weight.device)
    check_settings(
        tile_size=tile_size if tile_size is not None else model.tile_size,
        chunk_size=chunk_size if chunk_size is not None else model.chunk_size,
        align=getattr(model, "align", None),
    )

    path = Path(os.fspath(path)).expanduser()  # "~/x.npy" made a folder named ~ here
    b, _, height, width = image.shape
    c = model.config.dim
    shape = (b, c, height, width) if layout == "nchw" else (b, height, width, c)
    if not b:  # an empty batch (a loop's last slice): an empty file, as the forward's output
        from .atomic import atomic_write

        def save_empty(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, np.empty(shape, dtype))

        atomic_write(path, save_empty)
        return np.load(path, mmap_mode="r")
    torch_dtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float16
    made: list = []  # the file, listed before it is made: an interruption anywhere removes it

    def write(tile: Tile, feats: torch.Tensor) -> None:
        if torch_dtype == torch.float16 and feats.dtype != torch.float16:
            # float16 rounds 65520 and more to an infinity; the min and max say at no cost
            # that a tile holds none (a NaN or Inf makes them fail too: then looked at whole,
            # as a NaN or Inf beside large values hid them)
            lo, hi = (float(v) for v in torch.aminmax(feats))
            big = None if -65520 < lo <= hi < 65520 else feats.isfinite() & (feats.abs() >= 65520)
            if big is not None and bool(big.any()):
                raise UsageError(
                    f"the features hold values as large as {float(feats[big].abs().max()):.6g}"
                    f", beyond what float16 holds (65504 at most), so {path} was not written; "
                    "pass dtype='float32'"
                )
        f = feats.to("cpu", torch_dtype)
        if layout == "nchw":
            out.features[tile.batch, :, tile.rows, tile.cols] = f
        else:
            out.features[tile.batch, tile.rows, tile.cols, :] = f.permute(0, 2, 3, 1)

    try:
        out = FeatureFile(path, "npy", torch_dtype, shape, owner=made)  # under a temporary name
        upsample(
            model,
            lr_feats,
            image,
            tile_size=tile_size,
            chunk_size=chunk_size,
            conv=conv,
            callback=write,
            progress=progress,
        )
        out.commit()  # (in the try: interrupted as it is called, before its own)
    except BaseException:  # interrupted or failed: no partial file left behind
        for f in made:
            f.discard()
        raise
    return np.load(path, mmap_mode="r")
