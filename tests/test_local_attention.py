"""Local attention's two forms (masked dense, gathered) give the same outputs and gradients."""

import math
import weakref

import pytest
import torch

from loftup.layers import neighbour_index
from loftup.model import LoftUp, _local_attend


@pytest.mark.parametrize("window", [3, 5])
def test_masked_and_gathered_local_attention_agree(window):
    torch.manual_seed(0)
    blk = LoftUp(dim=16, num_heads=2, attention_window=window).blocks[0]
    h, w, height, width = 6, 7, 23, 26
    q = torch.randn(2, height * width, blk.norm_q.normalized_shape[0], requires_grad=True)
    kv = torch.randn(2, h * w, q.shape[-1], requires_grad=True)
    nbrs = neighbour_index(h, w, height, width, window)
    outs, grads = [], []
    for ratio in (0.0, math.inf):  # 0: always gather; inf: always the masked dense form
        out = _local_attend(blk, q, *blk.prepare_kv(kv), nbrs, dense_ratio=ratio)
        gq, gkv = torch.autograd.grad(out.square().sum(), (q, kv))
        outs.append(out.detach())
        grads.append((gq, gkv))
    assert (outs[0] - outs[1]).abs().max().item() < 1e-5
    for a, b in zip(*grads):
        assert (a - b).abs().max().item() < 1e-4 * max(1.0, a.abs().max().item())
    # and the window matters: every pixel's output ignores the tokens outside its window
    far = kv.detach().clone()
    outside = torch.ones(h * w, dtype=torch.bool)
    outside[nbrs[0]] = False
    far[:, outside] = torch.randn_like(far[:, outside])
    moved = _local_attend(blk, q.detach(), *blk.prepare_kv(far), nbrs)
    assert (moved[:, 0] - outs[1][:, 0]).abs().max().item() < 1e-5
    assert (moved[:, -1] - outs[1][:, -1]).abs().max().item() > 1e-3


def test_fast_path_forms_agree_with_the_scale_folded_into_the_queries():
    """The inference path's call (scale 1: folded into q) takes the same two forms."""
    from loftup.local_attention import local_attention

    torch.manual_seed(0)
    h, w, height, width = 6, 7, 23, 26
    q, k, v = (torch.randn(2, 3, n, 8) for n in (height * width, h * w, h * w))
    nbrs = neighbour_index(h, w, height, width, 3)
    gathered = local_attention(q, k, v, nbrs, dense_ratio=0.0)
    dense = local_attention(q, k, v, nbrs, dense_ratio=math.inf)
    assert (gathered - dense).abs().max().item() < 1e-5
    scaled = local_attention(q, k, v, nbrs, 0.5, dense_ratio=0.0)
    assert (scaled - local_attention(0.5 * q, k, v, nbrs, dense_ratio=math.inf)).abs().max() < 1e-5
    assert (scaled - gathered).abs().max().item() > 1e-2  # the scale is applied


def test_neighbour_span_holds_every_index_of_its_rows():
    """The range computed without reading the index tensor (no GPU wait) holds all of it,
    including the sizes where a pixel centre falls on a cell edge, and is narrow for tall
    outputs (what makes the masked form cheap)."""
    from loftup.layers import neighbour_span

    for h in (1, 2, 3, 5, 7, 16):
        for height in sorted({h, 2 * h, 3 * h + 1, 7 * h, 14 * h, 14 * h + 5}):
            for k in (1, 3, 4, 5):
                for rows in (range(0, 1), range(0, height), range(height // 3, height // 2 + 1)):
                    if not len(rows):
                        continue
                    idx = neighbour_index(h, 3, height, 11, k, rows=rows)
                    lo, hi = neighbour_span(h, 3, height, k, rows)
                    assert lo <= idx.min().item() and idx.max().item() < hi, (h, height, k, rows)
    lo, hi = neighbour_span(32, 32, 448, 5, range(100, 118))  # 18 rows of a 448 output
    assert (hi - lo) // 32 <= 9  # of the grid's 32 rows


@pytest.mark.parametrize("form", [0.0, math.inf], ids=["gathered", "masked"])
def test_pieces_and_spans_give_the_same_attention_and_gradients(monkeypatch, form):
    """Queries in pieces of bounded memory, over only the span's keys, give what all at once
    over every key gives, gradients included."""
    import loftup.local_attention as la
    from loftup.layers import neighbour_span

    torch.manual_seed(0)
    h, w, height, width = 9, 4, 61, 13
    q = torch.randn(2, 3, height * width, 8, requires_grad=True)
    k, v = (torch.randn(2, 3, h * w, 8, requires_grad=True) for _ in range(2))
    rows = range(20, 45)
    nbrs = neighbour_index(h, w, height, width, 3, rows=rows)
    qs = q[:, :, 20 * width : 45 * width]
    span = neighbour_span(h, w, height, 3, rows)
    assert span[1] - span[0] < h * w  # the span leaves keys out
    whole = la.local_attention(qs, k, v, nbrs, 0.5, dense_ratio=form)
    grads = torch.autograd.grad(whole.square().sum(), (q, k, v))
    monkeypatch.setattr(la, "LOCAL_ATTENTION_BYTES", 4000)  # pieces of a few queries
    pieces = la.local_attention(qs, k, v, nbrs, 0.5, dense_ratio=form, span=span)
    assert (pieces - whole).abs().max().item() < 1e-5
    for a, b in zip(torch.autograd.grad(pieces.square().sum(), (q, k, v)), grads):
        assert (a - b).abs().max().item() < 1e-4 * max(1.0, b.abs().max().item())


def test_the_tiles_at_one_place_build_its_neighbours_once(monkeypatch):
    """A batch of small images too many for one tile takes several tiles of one place, and a
    tile's images too many for one chunk are decoded in groups: each tile and group built the
    local-attention index of every chunk of rows again (64 images of 96 x 96 with chunks of
    2048 pixels: 293 builds a forward, 37 now). Once a place and chunk; the same outputs."""
    import loftup.tiling as tiling

    torch.manual_seed(0)
    model = LoftUp(dim=16, num_heads=2, attention_window=3).eval()
    lr, image = torch.randn(4, 16, 5, 7), torch.randn(4, 3, 20, 30)
    whole = tiling.upsample(model, lr, image, conv="direct")  # one tile, one chunk
    built = []
    real = tiling.neighbour_index
    monkeypatch.setattr(tiling, "neighbour_index", lambda *a: built.append(a[-2]) or real(*a))
    # two tiles of two images at one place, each decoded an image and a row at a time
    tiled = tiling.upsample(model, lr, image, tile_size=40, chunk_size=32, conv="direct")
    assert built == [range(r, r + 1) for r in range(20)]
    assert (tiled - whole).abs().max().item() <= 1e-5
    # tiles at four places, each image's in turn: each place's own rows and columns
    built.clear()
    tiled = tiling.upsample(model, lr, image, tile_size=16, chunk_size=32, conv="direct")
    assert len(built) == 16 * 5  # 4 images x 4 places, 5 chunks of 2 rows each
    assert (tiled - whole).abs().max().item() <= 1e-5


def _held_index_entries(monkeypatch, tiling):
    """Entries (pixels x k*k) of the local-attention indices alive at each decode of a tiled
    run: a list filled as the run goes."""
    alive, held = [], []
    real_index, real_decode = tiling.neighbour_index, tiling.decode

    def index(*args):
        idx = real_index(*args)
        alive.append(weakref.ref(idx))
        return idx

    def decode(*args, **kwargs):
        held.append(sum(r().numel() for r in alive if r() is not None))
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(tiling, "neighbour_index", index)
    monkeypatch.setattr(tiling, "decode", decode)
    return held


@pytest.mark.parametrize(
    "batch, height, width, tile, chunk",
    [
        (1, 40, 30, 16, 32),  # one image's tiles at six places
        (4, 20, 30, 16, 32),  # each image's four places in turn
        (4, 30, 10, 20, 16),  # two images a tile, two places in turn: a row of one at a time
    ],
)
def test_the_neighbours_held_are_one_chunks_where_no_tile_follows_at_its_place(
    monkeypatch, batch, height, width, tile, chunk
):
    """The index of every chunk of a tile's rows was kept until the next tile at another place
    (the tile's pixels x k*k int64: 15 x 15 windows, a 1024-pixel tile and chunks of 8192
    took 2.3 GB where 0.56 had done): a chunk_size chosen to bound the memory bounded nothing.
    Where no tile follows another at its place, only the chunk being decoded has one."""
    import loftup.tiling as tiling

    torch.manual_seed(0)
    model = LoftUp(dim=16, num_heads=2, attention_window=3).eval()
    lr, image = torch.randn(batch, 16, 5, 7), torch.randn(batch, 3, height, width)
    whole = tiling.upsample(model, lr, image, conv="direct")  # one tile, one chunk
    held = _held_index_entries(monkeypatch, tiling)
    tiled = tiling.upsample(model, lr, image, tile_size=tile, chunk_size=chunk, conv="direct")
    assert max(held) <= chunk * 9
    assert (tiled - whole).abs().max().item() <= 1e-5


def test_a_place_holds_one_cut_of_its_neighbours(monkeypatch):
    """Tiles of one place share its index, but a last batch slice of fewer images cuts the
    rows in other chunks: both cuts were held, twice the place's pixels x k*k."""
    import loftup.tiling as tiling

    torch.manual_seed(0)
    model = LoftUp(dim=16, num_heads=2, attention_window=3).eval()
    lr, image = torch.randn(3, 16, 5, 7), torch.randn(3, 3, 20, 30)
    whole = tiling.upsample(model, lr, image, conv="direct")
    held = _held_index_entries(monkeypatch, tiling)
    # two images, then one, at one place: chunks of 2 rows, then of 4
    tiled = tiling.upsample(model, lr, image, tile_size=40, chunk_size=120, conv="direct")
    assert len(held) == 10 + 5  # decodes: a chunk of both images, then of one
    assert max(held) <= 20 * 30 * 9
    assert (tiled - whole).abs().max().item() <= 1e-5
