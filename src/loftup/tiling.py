"""Exact tiled inference: any output size in bounded memory, optionally streamed to disk.

Why it is exact: the colour min/max is the only global statistic of the image (computed once
and passed to every tile); the stem is local (two 3x3 convolutions: a tile needs a 2-pixel halo,
and where the halo leaves the image the convolutions' own zero padding is the right one); the
transformer treats every pixel on its own against the small key/value set, projected once.

Working memory is set by the tile (``tile_size`` x ``tile_size`` pixels over the images of a
batch slice, about 4 KB per pixel in float32) and by the decoding chunk, not by the output.

    >>> out = upsample(model, lr_feats, image)                        # (B, C, H, W) tensor
    >>> upsample_to_npy(model, lr_feats, image, "feats.npy")          # memory-mapped .npy
    >>> upsample(model, lr_feats, image, callback=lambda tile, f: ...)  # tile by tile

Where the tiles lie and the settings that size them are in :mod:`loftup.tile_plan`, the
``.npy`` streaming in :mod:`loftup.npy_stream`, starting the stem before the backbone's features
exist in :mod:`loftup.early_start`; their names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import UsageError
from .fast_stem import conv3x3_relu, encode_region, stem
from .fastpath import decode, encode_kv
from .layers import image_minmax, neighbour_index, neighbour_span
from .npy_stream import upsample_to_npy  # noqa: F401  (importable from here, as before the split)
from .stops import check as check_stop
from .tile_plan import (  # noqa: F401  (split_axis: importable from here, as before the split)
    Tile,
    check_settings,
    default_chunk_size,
    default_tile_size,
    plan_tiles,
    split_axis,
)

#: Output block of NNPACK's Winograd convolution (F(6x6, 3x3)): tiles start on its multiples.
WINOGRAD_BLOCK = 6


def compute_dtype(model, device: torch.device) -> torch.dtype:
    """The model's dtype, or the autocast dtype when autocast is on for the device."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return model.stem.conv1.weight.dtype


@torch.no_grad()
def upsample(
    model,
    lr_feats: torch.Tensor,
    image: torch.Tensor,
    *,
    tile_size: int | None = None,
    chunk_size: int | None = None,
    out: torch.Tensor | None = None,
    callback: Callable[[Tile, torch.Tensor], None] | None = None,
    conv: str | None = None,
    progress: bool = False,
    _queries: tuple | None = None,
) -> torch.Tensor | None:
    """The model's output, computed tile by tile on folded weights; exact up to rounding.

    Arguments:
      model: a :class:`loftup.LoftUp` (eval mode is assumed: BatchNorm uses running stats).
      lr_feats: (B, C, h, w) raw backbone features.
      image: (B, 3, H, W) ImageNet-normalised guidance image (on the model's device).
      tile_size: tile side in pixels (None: the model's ``tile_size``, and where that is None
        too :func:`default_tile_size`).
      chunk_size: pixels decoded at once (None: the model's ``chunk_size``, else
        :func:`default_chunk_size`).
      out: optional (B, C, H, W) tensor to write into (any device, layout or dtype).
      callback: optional ``fn(tile, feats)`` called with each finished tile's features
        (b, C, th, tw); with a callback and no ``out`` nothing is kept and None is returned.
      conv: stem convolutions: "auto", "winograd" (NNPACK, CPU), "direct" or "direct_nchw"
        (see :func:`loftup.fused.choose_conv`); None: the model's ``conv``.
      progress: show a tqdm bar over the tiles (on stderr, into a log too:
        :mod:`loftup.bars`).
      _queries: (lo, hi, query map) of a one-tile output, computed by :func:`start_upsample`.

    Returns ``out`` (a new (B, C, H, W) channels-last tensor when none is given), or None.
    """
    dev = image.device
    b, _, height, width = image.shape
    # the model's settings where none are passed, as its forward uses them: upsample_to_npy
    # and upsample_frames took the device's tiles and Winograd whatever the model said
    # (other tiles, so other memory, and other numbers than model(lr_feats, image))
    tile_size = tile_size if tile_size is not None else getattr(model, "tile_size", None)
    chunk_size = chunk_size if chunk_size is not None else getattr(model, "chunk_size", None)
    conv = conv if conv is not None else getattr(model, "conv", "auto")
    align = getattr(model, "align", None)
    check_settings(tile_size=tile_size, chunk_size=chunk_size, align=align)
    fw = model.fused(compute_dtype(model, dev), conv, align)
    step = chunk_size or default_chunk_size(dev)
    c = fw.head[0].shape[0]
    if out is not None and tuple(out.shape) != (b, c, height, width):
        # a taller or wider one was filled in part without a word, the rest left as it was
        raise UsageError(
            f"out must have the output's shape (B, C, H, W) = {(b, c, height, width)}, got "
            f"{tuple(out.shape)}; pass a tensor of that shape, or leave out= out"
        )
    own = out is None and callback is None
    if own:
        out = torch.empty(b, height, width, c, device=dev, dtype=fw.dtype).permute(0, 3, 1, 2)
    window = fw.window  # the folded weights carry the model's window
    grid = lr_feats.shape[-2:]
    tiles = plan_output(image, tile_size, fw.conv)
    neighbours = None
    if window is not None:
        neighbours = _Neighbours(grid, height, width, window, dev, keep=_place_repeats(tiles))
    if not tiles:  # an empty batch: nothing to compute (an empty output, or no tiles)
        return out
    q_map = None
    with torch.autocast(dev.type, enabled=False):
        kvs = encode_kv(fw, lr_feats)
        if _queries is None:
            lo, hi = image_minmax(image.float())
        elif len(tiles) == 1:  # as when start_upsample planned it
            lo, hi, q_map = _queries
        else:  # internal: only start_upsample passes _queries, for one tile (a bug otherwise)
            raise ValueError("_queries holds the query map of a one-tile output")
        for tile in _progress(tiles, progress):
            check_stop()  # one a finaliser swallowed (a bar's, a generator's): loftup.stops
            if own:  # decode straight into the output
                dest = out.permute(0, 2, 3, 1)[tile.batch, tile.rows, tile.cols]
            else:
                nb, th, tw = _extent(tile)
                dest = torch.empty(nb, th, tw, c, device=dev, dtype=fw.dtype)
            feats = _run_tile(fw, image, lo, hi, kvs, tile, step, neighbours, dest, q_map)
            if out is not None and not own:
                out[tile.batch, :, tile.rows, tile.cols] = feats.to(out.device, out.dtype)
            if callback is not None:
                callback(tile, feats)
    return out


def plan_output(image: torch.Tensor, tile_size: int | None, conv: str) -> list[Tile]:
    """The tiles of an output the size of ``image`` (B, 3, H, W), each ``tile_size`` pixels a
    side at most (None: the device's default), on Winograd's blocks for its convolutions
    (``conv``: the folded weights'): what :func:`upsample` computes, and what
    :func:`loftup.early_start.start_upsample` asks about before it (one tile or several)."""
    b, _, height, width = image.shape
    tile_size = tile_size or default_tile_size(image.device)
    return plan_tiles(b, height, width, tile_size, WINOGRAD_BLOCK if conv == "winograd" else 1)


def axis_windows(r0: int, r1: int, n: int, align: int) -> tuple:
    """Along one axis of length n, for output rows [r0, r1) of a tile: the encoded rows,
    the first convolution's padding, its rows to keep (relative) and the second's padding.

    The first convolution is computed over [s0, s1), whole ``align``-sized blocks around the
    tile (Winograd's output blocks; 1 for direct convolution), so that every kept value is
    computed by exactly the same arithmetic as in an untiled run.
    """
    s0, s1 = max(0, r0 - align), min(n, r1 + align)
    e0, e1 = max(0, s0 - 1), min(n, s1 + 1)
    t0, t1 = max(0, r0 - 1), min(n, r1 + 1)
    pads1 = (int(s0 == 0), int(s1 == n))
    pads2 = (int(r0 == 0), int(r1 == n))
    return (e0, e1), pads1, (t0 - s0, t1 - s0), pads2


def _place_repeats(tiles: list[Tile]) -> bool:
    """Whether a tile lies where the one before it does (a batch of small images too many for
    one tile: :func:`plan_tiles` puts all its tiles at the one place, one after another; where
    there are several places, each batch slice visits them in turn)."""
    return any(a.rows == b.rows and a.cols == b.cols for a, b in zip(tiles, tiles[1:]))


class _Neighbours:
    """The local-attention neighbours (:func:`loftup.layers.neighbour_index`, and their
    :func:`~loftup.layers.neighbour_span`) of each chunk of a tile's rows, for one output's
    ``grid`` (h, w), (height, width), window and device.

    A tile builds each chunk's once for all its groups of images (:func:`_run_tile`). With
    ``keep`` (tiles that follow one another at one place: :func:`_place_repeats`) every
    chunk's of the place is held for the next tile there: the place's pixels x k*k int64 at
    most, one image's share of a tile; they are dropped when the tile lies elsewhere or is
    cut in other chunks (a last batch slice of fewer images). Without, nothing is held: the
    chunk being decoded is the only one alive (chunk pixels x k*k), as ``chunk_size`` says."""

    def __init__(self, grid, height: int, width: int, window: int, device, keep: bool) -> None:
        self._args = (*grid, height, width, window, device)
        self._keep = keep
        self._cut: tuple | None = None  # the place and rows per chunk of the held ones
        self._chunks: dict[range, tuple[torch.Tensor, tuple[int, int]]] = {}

    def __call__(
        self, tile: Tile, rows: range, rows_per: int
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """(P, k*k) indices of output ``rows`` x ``tile``'s columns, and their span; ``rows``
        is one of the tile's chunks of ``rows_per`` rows."""
        cut = (tile.rows.start, tile.rows.stop, tile.cols.start, tile.cols.stop, rows_per)
        if cut != self._cut:
            self._cut, self._chunks = cut, {}
        got = self._chunks.get(rows)
        if got is None:
            h, w, height, width, k, device = self._args
            cols = range(tile.cols.start, tile.cols.stop)
            nbrs = neighbour_index(h, w, height, width, k, device, rows, cols)
            got = (nbrs, neighbour_span(h, w, height, k, rows))
            if self._keep:
                self._chunks[rows] = got
        return got


def _run_tile(
    fw, image, lo, hi, kvs, tile: Tile, step: int, neighbours, dest, q_map=None
) -> torch.Tensor:
    """One tile -> (b, C, th, tw) features, written into ``dest`` (a (b, th, tw, C) view);
    ``neighbours``: local attention's (None: global attention); ``q_map``: the tile's stem
    output, when already computed."""
    r0, r1, c0, c1 = tile.rows.start, tile.rows.stop, tile.cols.start, tile.cols.stop
    bs = tile.batch
    if q_map is None:
        q_map = query_map(fw, image[bs], lo[bs], hi[bs], (r0, r1), (c0, c1))  # (b, D, th, tw)
    kv = [(k[bs], v[bs]) for k, v in kvs]
    nb, d, th, tw = q_map.shape
    # a chunk holds its rows of every image of the tile (a batch of small images shares one):
    # at most ``step`` pixels, so a row of each where those are more (one image's row at least)
    rows_per = max(1, step // (nb * tw))
    per = nb if nb * tw <= step else max(1, step // tw)
    groups = [slice(i, min(nb, i + per)) for i in range(0, nb, per)]
    kv_groups = [kv if per == nb else [(k[g], v[g]) for k, v in kv] for g in groups]
    for s in range(0, th, rows_per):  # chunks outside: each chunk's neighbours serve all groups
        e = min(th, s + rows_per)
        nbrs = span = None  # the last chunk's let go before this one's are built
        if neighbours is not None:  # local attention
            nbrs, span = neighbours(tile, range(r0 + s, r0 + e), rows_per)
        for imgs, kv_imgs in zip(groups, kv_groups):
            tokens = q_map[imgs, :, s:e].permute(0, 2, 3, 1).flatten(1, 2)
            tokens = tokens.to(fw.dtype, memory_format=torch.contiguous_format)  # decode writes
            decode(fw, tokens, kv_imgs, nbrs, out=dest[imgs, s:e], span=span)
    return dest.permute(0, 3, 1, 2)


def query_map(fw, image, lo, hi, rows, cols) -> torch.Tensor:
    """The stem's output for output rows [r0, r1) x columns [c0, c1) of the whole image:
    :func:`loftup.fast_stem.stem` for direct convolutions, Winograd's aligned windows otherwise."""
    if fw.conv == "winograd":
        return _winograd_stem(fw, image, lo, hi, rows, cols)
    return stem(fw, image, lo, hi, rows, cols)


def _winograd_stem(fw, image, lo, hi, rows, cols) -> torch.Tensor:
    """:func:`loftup.fast_stem.stem` for Winograd convolutions (NCHW float32, whole output
    blocks: see :func:`axis_windows`)."""
    height, width = image.shape[-2:]
    (y0, y1), py1, (ky0, ky1), py2 = axis_windows(*rows, height, WINOGRAD_BLOCK)
    (x0, x1), px1, (kx0, kx1), px2 = axis_windows(*cols, width, WINOGRAD_BLOCK)
    enc = encode_region(fw, image[:, :, y0:y1, x0:x1], lo, hi, (y0, x0), (height, width))
    x = conv3x3_relu(fw, enc.permute(0, 3, 1, 2), 1, (*py1, *px1))
    del enc
    return conv3x3_relu(fw, x[:, :, ky0:ky1, kx0:kx1], 2, (*py2, *px2))


def _extent(tile: Tile) -> tuple[int, int, int]:
    return (
        tile.batch.stop - tile.batch.start,
        tile.rows.stop - tile.rows.start,
        tile.cols.stop - tile.cols.start,
    )


def _progress(tiles, enabled: bool):
    if not enabled or len(tiles) == 1:
        return tiles
    from tqdm.auto import tqdm

    from .bars import bar_settings

    # into a log too, as the bars around it (upsample's over the images, bench's): a streamed
    # 4096 x 4096 output takes 20 minutes on a CPU, and its log said nothing of them
    return tqdm(tiles, desc="tiles", unit="tile", leave=False, **bar_settings())


def __getattr__(name: str):
    """``start_upsample`` and ``PendingUpsample``, importable from here as before the split
    (looked up on use: :mod:`loftup.early_start` imports this module)."""
    if name in ("start_upsample", "PendingUpsample"):
        from . import early_start

        return getattr(early_start, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
