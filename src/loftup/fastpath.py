"""The fast forward's three steps on folded weights (:mod:`loftup.fused`); pure functions.

Layout: everything per pixel is channels-last, ``(B, H, W, D)``, so that the stem's output is
already the token sequence and no permute copies are made. The image encoding is computed in
float32 (Fourier arguments up to e^10 need it) and normalised before the cast to the compute
dtype; the coordinate channels are computed once per row and once per column.

Shapes: ``lr_feats`` (B, C, h, w); image regions (B, 3, rh, rw); tokens (B, n, Dp), where Dp
is the token width D mean-padded to the alignment (:mod:`loftup.fused`; Dp = D on the CPU).

Beside the steps: the per-shape memo and the functions the compiler leaves eager in
:mod:`loftup.memo`, oneDNN's fused linear kernels in :mod:`loftup.cpu`, local attention in
:mod:`loftup.local_attention`. Their public names are importable from here too, as they always
were; a module constant is read where it lives now, so patch it there (``LOCAL_ATTENTION_BYTES``
in :mod:`loftup.local_attention`, not here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import kernels
from .cpu import add_linear, cpu_emulates, linear, warn_if_emulated  # noqa: F401  (as before)
from .fused import FusedWeights
from .local_attention import (  # noqa: F401  (importable from here, as before the split)
    DENSE_LOCAL_RATIO,
    LOCAL_ATTENTION_BYTES,
    local_attention,
)
from .memo import _eager_under_compile, compile_ready, memo  # noqa: F401  (as before)


def axis_features(coords: torch.Tensor, freqs: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """(L,) coordinates, (n,) frequencies, (2, n) phases -> (L, 2n): sines then cosines."""
    arg = coords[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg + phases[0]), torch.cos(arg + phases[1])], dim=1)


def grid_encoding(fw: FusedWeights, h: int, w: int, device) -> torch.Tensor:
    """Fourier encoding of the (h, w) low-resolution grid: (h, w, 4 n) in fw.dtype."""
    n = fw.grid_freqs.numel()
    grid = torch.stack(
        torch.meshgrid(
            torch.linspace(-1.0, 1.0, h, device=device),
            torch.linspace(-1.0, 1.0, w, device=device),
            indexing="ij",
        ),
        dim=-1,
    )  # (h, w, 2)
    arg = grid[:, :, None, :] * fw.grid_freqs.view(n, 1)  # (h, w, n, 2)
    pos = torch.cat(
        [torch.sin(arg + fw.grid_phases[0]), torch.cos(arg + fw.grid_phases[1])], dim=2
    ).reshape(h, w, 4 * n)
    return pos.to(fw.dtype)


def encode_kv(fw: FusedWeights, lr_feats: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(B, C, h, w) raw features -> per block keys and values, each (B, heads, h*w, hd_pad)."""
    b, c, h, w = lr_feats.shape
    x = F.layer_norm(lr_feats.to(fw.dtype).permute(0, 2, 3, 1), (c,), *fw.channel_norm)
    dev = lr_feats.device
    pos = memo(fw, ("grid", h, w, dev), lambda: grid_encoding(fw, h, w, dev))
    tokens = torch.cat([x, pos.expand(b, *pos.shape)], dim=-1).reshape(b, h * w, -1)
    if fw.kv is not None:  # one normalisation and one product for every block
        return _keys_values(fw, tokens, fw.blocks[0].eps_kv, *fw.kv)
    return [
        kv for blk in fw.blocks for kv in _keys_values(fw, tokens, blk.eps_kv, blk.wkv, blk.bkv)
    ]


def _keys_values(fw, tokens, eps, weight, bias) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(B, n, D) tokens -> the (keys, values) of each block whose projections ``weight`` stacks,
    each (B, heads, n, hd_pad)."""
    b, n, _ = tokens.shape
    t = F.layer_norm(tokens, tokens.shape[-1:], eps=eps)
    kv = F.linear(t, weight, bias).view(b, n, -1, 2, fw.heads, fw.head_dim)
    kv = kv.permute(2, 3, 0, 4, 1, 5).contiguous()
    return [(k, v) for k, v in kv]


@_eager_under_compile  # keep eager rounding: a fused multiply-add moves e^10-scale phases
def encode_region(
    fw: FusedWeights,
    image: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    origin: tuple[int, int],
    size: tuple[int, int],
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalised image encoding of a region: (B, 3, rh, rw) -> (B, rh, rw, E), computed in
    float32, returned in the dtype of the first convolution (float32 for Winograd), or written
    into ``out`` (a (B, rh, rw, E) window of a larger buffer, say) and returned.

    Arguments:
      image: the region's pixels (ImageNet-normalised).
      lo, hi: (B, 3, 1, 1) colour min and max of the whole images (not of the region).
      origin: (y0, x0) of the region in the whole image.
      size: (H, W) of the whole image (the coordinate grid spans it).
    """
    b, _, rh, rw = image.shape
    dev = image.device
    freqs, phases = fw.image_freqs, fw.image_phases
    n, j = phases.shape[1], phases.shape[2]
    out_dtype = torch.float32 if fw.conv == "winograd" else fw.dtype
    rows = cols = None
    if fw.coords:
        rows, cols = memo(
            fw,
            ("axes", origin, size, (rh, rw), dev),
            lambda: _coordinate_features(fw, origin, size, (rh, rw), dev),
        )
    if kernels.active(image, fw.dtype):
        return kernels.encode_pixels(
            image, lo, hi, rows, cols, freqs, phases[:, :, j - 3 :], fw.stem_norm,
            fw.enc_padded, out_dtype, out,
        )  # fmt: skip
    colour = (image.float() - lo) / (hi - lo).clamp_min(1e-4) - 0.5
    colour = colour.permute(0, 2, 3, 1)  # (B, rh, rw, 3)
    e = 2 * n * j + 3
    enc = torch.empty(b, rh, rw, fw.enc_padded, device=dev, dtype=torch.float32)
    off = 0
    if fw.coords:
        enc[..., : 2 * n] = rows[None, :, None, :]
        enc[..., 2 * n : 4 * n] = cols[None, None, :, :]
        off = 4 * n
    arg = colour[..., None, :] * freqs.view(n, 1)  # (B, rh, rw, n, 3)
    c0 = j - 3
    torch.sin(arg + phases[0, :, c0:], out=enc[..., off : off + 3 * n].unflatten(-1, (n, 3)))
    off += 3 * n
    torch.cos(arg + phases[1, :, c0:], out=enc[..., off : off + 3 * n].unflatten(-1, (n, 3)))
    enc[..., e - 3 : e] = colour
    mean_pad(enc, e)
    enc = F.layer_norm(enc, enc.shape[-1:], *fw.stem_norm)
    return enc.to(out_dtype) if out is None else out.copy_(enc)


def _coordinate_features(fw, origin, size, region, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(rh, 2n) and (rw, 2n) float32 Fourier features of a region's rows and columns (their
    coordinates on the whole image's [-1, 1] grid)."""
    (y0, x0), (height, width), (rh, rw) = origin, size, region
    ys = torch.linspace(-1.0, 1.0, height, device=device)[y0 : y0 + rh]
    xs = torch.linspace(-1.0, 1.0, width, device=device)[x0 : x0 + rw]
    freqs, phases = fw.image_freqs, fw.image_phases
    return axis_features(ys, freqs, phases[:, :, 0]), axis_features(xs, freqs, phases[:, :, 1])


#: Zero padding of a 3x3 convolution's input: (top, bottom, left, right).
Pads = tuple[int, int, int, int]


def conv3x3_relu(
    fw: FusedWeights,
    x: torch.Tensor,
    which: int,
    pads: Pads,
    keep: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """ReLU(conv ``which`` (1 or 2) of (B, I, h, w) ``x`` zero-padded by ``pads``) -> (B, O, ...).

    Winograd (NNPACK, float32) returns NCHW, direct convolutions channels-last (or NCHW for
    "direct_nchw") in fw.dtype. ``keep``: (y0, y1, x0, x1): output pixels outside rows
    [y0, y1) x columns [x0, x1) are set to 0 (in the bias + ReLU pass where the kernels run).
    """
    w, b = fw.conv1 if which == 1 else fw.conv2
    winograd = fw.conv == "winograd"
    nchw = fw.conv != "direct"
    x = x.float() if winograd else x.to(fw.dtype)
    if pads in ((1, 1, 1, 1), (0, 0, 0, 0)):
        padding = [pads[0]] * 2
    else:
        x, padding = _pad(x, pads, nchw), [0, 0]
    if winograd:
        y = _winograd(x.contiguous(), w, b, padding).relu_()
    else:
        fmt = torch.contiguous_format if nchw else torch.channels_last
        x = x.contiguous(memory_format=fmt)
        if not nchw and kernels.active(x, fw.dtype):
            y = F.conv2d(x, w, None, padding=padding)
            if y.is_contiguous(memory_format=torch.channels_last):
                return kernels.bias_relu_(y, b, keep)  # one pass instead of two to six
            y = y.add_(b.view(-1, 1, 1)).relu_()
        else:
            y = F.conv2d(x, w, b, padding=padding).relu_()
    if keep is not None:
        y0, y1, x0, x1 = keep
        if y0 > 0:
            y[:, :, :y0] = 0
        if y1 < y.shape[2]:
            y[:, :, y1:] = 0
        if x0 > 0:
            y[:, :, :, :x0] = 0
        if x1 < y.shape[3]:
            y[:, :, :, x1:] = 0
    return y


def stem(
    fw: FusedWeights,
    image: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> torch.Tensor:
    """Query map of output rows [r0, r1) x columns [c0, c1) of the whole (B, 3, H, W) image
    with direct convolutions: (B, Dp, th, tw), channels-last, in fw.dtype.

    No padded copies: the encoding is written into a buffer two pixels larger on every side
    (zeros outside the image: the first convolution's zero padding), both convolutions run
    unpadded, and the first one's results outside the image are zeroed in place (the second's
    zero padding). Every tile of a size has the same shapes.
    """
    b, _, height, width = image.shape
    (r0, r1), (c0, c1) = rows, cols
    ey0, ey1, ex0, ex1 = max(0, r0 - 2), min(height, r1 + 2), max(0, c0 - 2), min(width, c1 + 2)
    shape = (b, r1 - r0 + 4, c1 - c0 + 4, fw.enc_padded)
    inside = (ey0, ey1, ex0, ex1) == (r0 - 2, r1 + 2, c0 - 2, c1 + 2)
    buf = (torch.empty if inside else torch.zeros)(shape, device=image.device, dtype=fw.dtype)
    window = buf[:, ey0 - r0 + 2 : ey1 - r0 + 2, ex0 - c0 + 2 : ex1 - c0 + 2]
    encode_region(fw, image[:, :, ey0:ey1, ex0:ex1], lo, hi, (ey0, ex0), (height, width), window)
    th, tw = r1 - r0 + 2, c1 - c0 + 2  # conv1's output: rows r0 - 1 .. r1, columns likewise
    keep = (int(r0 == 0), th - int(r1 == height), int(c0 == 0), tw - int(c1 == width))
    x = conv3x3_relu(fw, buf.permute(0, 3, 1, 2), 1, (0, 0, 0, 0), keep)
    return conv3x3_relu(fw, x, 2, (0, 0, 0, 0))


@_eager_under_compile  # a library call the compiler cannot trace
def _winograd(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, padding) -> torch.Tensor:
    """NNPACK's Winograd convolution, one image at a time (its batched mode is slower)."""
    out = [torch._nnpack_spatial_convolution(x[i : i + 1], w, b, padding) for i in range(len(x))]
    return out[0] if len(out) == 1 else torch.cat(out)


def _pad(x: torch.Tensor, pads: Pads, nchw: bool) -> torch.Tensor:
    """Zero-pad (B, C, h, w) in one pass, into NCHW (``nchw``) or channels-last memory."""
    t, bt, lf, rt = pads
    b, c, h, w = x.shape
    fmt = torch.contiguous_format if nchw else torch.channels_last
    out = x.new_zeros(b, c, h + t + bt, w + lf + rt).contiguous(memory_format=fmt)
    out[:, :, t : t + h, lf : lf + w] = x
    return out


def decode(
    fw: FusedWeights,
    x: torch.Tensor,
    kvs: list[tuple[torch.Tensor, torch.Tensor]],
    neighbours: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    span: tuple[int, int] | None = None,
) -> torch.Tensor:
    """(B, n, D) query tokens -> (B, n, C) output features; ``x`` may be overwritten.

    ``neighbours`` (n, K): the key/value tokens each pixel attends to (local attention), all
    in the range ``span`` of them when given (see :func:`local_attention`).
    ``out``: optional (b, h, w, C) destination with b h w = B n and contiguous channels (a
    tile of the output); the features are written there (by the last LayerNorm where the
    kernels of :mod:`loftup.kernels` run) and ``out`` is returned.
    """
    b, n, d = x.shape
    x = x.contiguous().view(b * n, d)
    fast = kernels.active(x, x.dtype)
    if fast:  # the first LayerNorm writes the mean padding
        pending = kernels.layer_norm_rows(x, fw.blocks[0].eps_q, real=fw.real_width)
    else:
        mean_pad(x, fw.real_width)
    heads, hd = fw.heads, fw.head_dim

    def norm(x, eps):
        return kernels.layer_norm_rows(x, eps) if fast else F.layer_norm(x, (d,), eps=eps)

    for i, (blk, (k, v)) in enumerate(zip(fw.blocks, kvs)):
        xn = pending if fast and i == 0 else norm(x, blk.eps_q)
        q = linear(xn, blk.wq, blk.bq)
        q = q.view(b, n, heads, hd).transpose(1, 2)  # (B, heads, n, hd)
        if neighbours is not None:
            a = local_attention(q, k, v, neighbours, span=span)
        elif q.device.type == "cpu" and q.dtype != torch.float32:
            a = _products_attention(q, k, v)  # 2x the CPU's fused kernel in bf16
        else:
            a = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        x = add_linear(x, a.transpose(1, 2).reshape(b * n, heads * hd), blk.wo)
        h = linear(norm(x, blk.eps_ffn), blk.w1, blk.b1, gelu=True)
        x = add_linear(x, h.view(b * n, -1), blk.w2)
    y = linear(norm(x, fw.eps_final), *fw.head)
    if fast:
        y = kernels.layer_norm_rows(y, fw.head_norm[2], *fw.head_norm[:2], out=out)
        return y if out is not None else y.view(b, n, -1)
    y = F.layer_norm(y, y.shape[-1:], *fw.head_norm)
    return y.view(b, n, -1) if out is None else out.copy_(y.view(out.shape))


#: Bytes of the logits that :func:`_products_attention` holds at once (64 MB: a chunk of 8192
#: pixels against a 16 x 16 grid, the released models' 224 px, takes 16 MB in one piece).
PRODUCTS_ATTENTION_BYTES = 1 << 26


def _products_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T) v`` (the scale folded into ``q``) by matrix products, for (B, heads,
    n, hd) queries against (B, heads, M, hd) keys and values, in pieces of queries whose logits
    (and their softmax) take :data:`PRODUCTS_ATTENTION_BYTES` at most: whole, they grew with
    the grid (8192 pixels against the 64 x 64 grid of an 896 px backbone input took 0.5 GB in
    bf16; against a photo's own size, gigabytes), where the fused kernel holds none."""
    b, heads, n, _ = q.shape
    step = max(1, PRODUCTS_ATTENTION_BYTES // (b * heads * k.shape[-2] * q.element_size()))
    if n <= step:
        return (q @ k.transpose(-1, -2)).softmax(-1) @ v
    out = q.new_empty(b, heads, n, v.shape[-1])
    for s in range(0, n, step):
        out[:, :, s : s + step] = (q[:, :, s : s + step] @ k.transpose(-1, -2)).softmax(-1) @ v
    return out


def mean_pad(x: torch.Tensor, real: int) -> None:
    """Set the channels of ``x`` (..., width) after the first ``real`` to the mean of those,
    in place (see "mean padding" in :mod:`loftup.fused`)."""
    if x.shape[-1] > real:
        x[..., real:] = x[..., :real].mean(-1, keepdim=True)
