"""The fast forward's three steps on folded weights (:mod:`loftup.fused`); pure functions.

Layout: everything per pixel is channels-last, ``(B, H, W, D)``, so that the stem's output is
already the token sequence and no permute copies are made. The image encoding is computed in
float32 (Fourier arguments up to e^10 need it) and normalised before the cast to the compute
dtype; the coordinate channels are computed once per row and once per column.

Shapes: ``lr_feats`` (B, C, h, w); image regions (B, 3, rh, rw); tokens (B, n, Dp), where Dp
is the token width D mean-padded to the alignment (:mod:`loftup.fused`; Dp = D on the CPU).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from . import kernels
from .fused import FusedWeights

#: The functions the compiler must leave as they are, by name: each is called through this
#: table, which :func:`compile_ready` fills with their ``torch.compiler.disable`` versions before
#: anything is compiled (importing the compiler costs about 2 s, which every command would pay
#: if they were decorated at import).
_EAGER: dict = {}


def _eager_under_compile(fn):
    """``fn``, left eager by ``torch.compile`` once :func:`compile_ready` has run."""
    _EAGER[fn.__name__] = fn

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return _EAGER[fn.__name__](*args, **kwargs)

    return call


def compile_ready() -> None:
    """Mark the functions that must run eagerly for ``torch.compile`` (idempotent); called by
    :func:`loftup.compiled.compile_upsampler` before it compiles."""
    for name, fn in list(_EAGER.items()):
        if not getattr(fn, "_loftup_eager", False):
            fn = torch.compiler.disable(fn)
            fn._loftup_eager = True
            _EAGER[name] = fn


def axis_features(coords: torch.Tensor, freqs: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """(L,) coordinates, (n,) frequencies, (2, n) phases -> (L, 2n): sines then cosines."""
    arg = coords[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg + phases[0]), torch.cos(arg + phases[1])], dim=1)


def memo(fw: FusedWeights, key: tuple, make):
    """``make()``, computed once per folded weights and ``key`` (a shape, a device): the
    positional and coordinate encodings, a dozen small kernels each that a small output or a
    CUDA graph would otherwise repeat on every call. Recomputed under ``torch.compile``, which
    traces them, and during a CUDA graph's capture (a tensor made then holds nothing until the
    graph runs; the graph computes it on each replay). The memo is emptied when it holds 512
    entries; a graph keeps the entries it reads (:func:`loftup.compiled.graph_upsampler`).

    On a GPU an entry is made by kernels queued on the stream current then (the image's half
    may be queued on a second one, :func:`loftup.tiling.start_upsample`): until they have run,
    a reader on another stream waits for them (an event recorded after them), rather than
    reading memory they have not written yet."""
    if torch.compiler.is_compiling():
        return make()
    hit = fw.memo.get(key)
    if hit is None:
        if _capturing():
            return make()
        if len(fw.memo) >= 512:
            _empty(fw.memo)
        hit = fw.memo[key] = make()
        dev = key[-1]
        if isinstance(dev, torch.device) and dev.type == "cuda":
            made = torch.cuda.Event()
            made.record(torch.cuda.current_stream(dev))
            fw.memo[("made", key)] = made
    else:
        made = fw.memo.get(("made", key))
        if made is not None and not _capturing():  # a capture begins synchronised: all done
            if made.query():  # done: no stream need wait for it again
                del fw.memo[("made", key)]
            else:
                torch.cuda.current_stream(key[-1]).wait_event(made)
    return hit


def _capturing() -> bool:
    """Whether this thread's current CUDA stream is capturing a graph (never on the CPU)."""
    return torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing()


def _empty(cache: dict) -> None:
    """Drop every entry, once the GPU work queued so far is done: an entry may still be read
    by a kernel queued on another stream (the image's half on a second one), and its memory
    would otherwise go back to the allocator under it."""
    devices = {
        t.device
        for v in cache.values()
        for t in (v if isinstance(v, (tuple, list)) else (v,))
        if isinstance(t, torch.Tensor) and t.is_cuda
    }
    for d in devices:
        torch.cuda.synchronize(d)
    cache.clear()


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
            a = (q @ k.transpose(-1, -2)).softmax(-1) @ v  # 2x the CPU's fused kernel in bf16
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


def mean_pad(x: torch.Tensor, real: int) -> None:
    """Set the channels of ``x`` (..., width) after the first ``real`` to the mean of those,
    in place (see "mean padding" in :mod:`loftup.fused`)."""
    if x.shape[-1] > real:
        x[..., real:] = x[..., :real].mean(-1, keepdim=True)


def add_linear(x: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x + a @ w.T`` for (N, D) ``x``, in place; on the CPU in float32 one oneDNN call with
    the addition fused (about 20% faster than MKL's in-place ``addmm_`` here)."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and _onednn_ok(x.dtype):
        return torch.ops.mkldnn._linear_pointwise.binary(a, x, w, None, "add")
    return x.addmm_(a, w.t())


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """``F.linear`` (then exact GELU); on the CPU one oneDNN call with the bias (and GELU)
    fused, which saves a pass over the output (not under ``torch.compile``, which fuses
    these itself)."""
    cpu_ok = x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
    if cpu_ok and _onednn_ok(x.dtype):
        return torch.ops.mkldnn._linear_pointwise(
            x, w, b, "gelu" if gelu else "none", [], "none" if gelu else ""
        )
    y = F.linear(x, w, b)
    return F.gelu(y) if gelu else y


def _onednn_ok(dtype: torch.dtype) -> bool:
    """oneDNN's fused linear kernels: present, working in ``dtype``, and not under
    ``torch.compile``."""
    return not torch.compiler.is_compiling() and _onednn_works(dtype)


@functools.cache
def _onednn_works(dtype: torch.dtype) -> bool:
    """Whether both fused kernels run and give the right numbers in ``dtype``: bfloat16 needs
    a CPU with bf16 instructions (AVX-512 BF16 or AMX); on others (AVX2 only) oneDNN cannot
    build the kernel and the plain ``F.linear`` runs instead."""
    try:
        x, w = torch.ones(2, 3, dtype=dtype), torch.ones(4, 3, dtype=dtype)
        y = torch.ops.mkldnn._linear_pointwise(x, w, torch.zeros(4, dtype=dtype), "none", [], "")
        z = torch.ops.mkldnn._linear_pointwise.binary(x, y, w, None, "add")
        return bool(torch.equal(z, torch.full((2, 4), 6.0, dtype=dtype)))
    except (AttributeError, RuntimeError):
        return False


#: Local attention runs as dense attention with a mask while the keys it considers (the
#: chunk's span of grid rows, see :func:`loftup.layers.neighbour_span`) number at most this many
#: per window token (M <= ratio * k * k); beyond, each pixel's keys are gathered. Both give the
#: same numbers. On a CPU (2 threads, 4 heads of 104) the masked form is 4-13x faster for 8x8
#: to 16x16 grids (28 or fewer tokens per window token) in float32 and 3-6x in bf16, and the
#: gathered one wins in bf16 from about 40 tokens per window token on (in float32 from about
#: 120: 3.2 s against 11.6 s at 41, 14.7 s against 12.3 s at 164, 5x5 windows over a 448 x 448
#: output); the gathered form also copies every pixel's K keys and values, the masked one
#: writes only an (n, M) mask.
DENSE_LOCAL_RATIO = 32


def local_attention(
    q, k, v, neighbours, scale: float = 1.0, dense_ratio=None, span=None
) -> torch.Tensor:
    """Each query (B, heads, n, hd) against its own keys/values ``neighbours`` (n, K) among the
    M tokens of ``k``, ``v`` (B, heads, M, hd), logits times ``scale`` (1: folded into ``q``).

    ``span``: optional [lo, hi) range of the tokens holding every index in ``neighbours``
    (:func:`loftup.layers.neighbour_span`); only those tokens are considered. Masked dense
    attention while they number at most ``dense_ratio`` * K (default
    :data:`DENSE_LOCAL_RATIO`), else each query's keys and values gathered; either way in
    pieces of queries whose working memory is about :data:`LOCAL_ATTENTION_BYTES` at most.
    """
    ratio = DENSE_LOCAL_RATIO if dense_ratio is None else dense_ratio
    if span is not None and span[1] - span[0] < k.shape[-2]:
        k, v = k[:, :, span[0] : span[1]], v[:, :, span[0] : span[1]]
        neighbours = neighbours - span[0]
    (n, nk), m = neighbours.shape, k.shape[-2]
    dense = m <= ratio * nk
    rows = k.shape[0] * k.shape[1] * k.element_size()  # bytes of one (B, heads) element
    if dense:  # the mask, its additive float copy; the CPU's math kernel writes the logits
        per_query = m * (1 + k.element_size() + (2 * rows if q.device.type == "cpu" else 0))
    else:  # the gathered keys and values, the logits and their softmax
        per_query = nk * rows * (2 * k.shape[-1] + 2)
    step = max(1, LOCAL_ATTENTION_BYTES // per_query)
    if n <= step:
        return _local_piece(q, k, v, neighbours, scale, dense)
    out = q.new_empty(*q.shape[:-1], v.shape[-1])
    for s in range(0, n, step):
        piece = (q[:, :, s : s + step], k, v, neighbours[s : s + step], scale, dense)
        out[:, :, s : s + step] = _local_piece(*piece)
    return out


#: Working memory of one piece of :func:`local_attention`, in bytes (its pieces of queries
#: are sized to it; at the GPU's default chunk of 2^18 pixels, gathering every pixel's 25 keys
#: and values of 416 channels at once would take 11 GB in half precision).
LOCAL_ATTENTION_BYTES = 1 << 28


def _local_piece(q, k, v, neighbours, scale: float, dense: bool) -> torch.Tensor:
    """:func:`local_attention` of all of ``q`` at once, in the form ``dense`` says."""
    if dense:
        allowed = torch.zeros(neighbours.shape[0], k.shape[-2], dtype=torch.bool, device=q.device)
        allowed.scatter_(1, neighbours, True)  # the window's tokens are distinct
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
    kg, vg = k[:, :, neighbours], v[:, :, neighbours]  # (B, heads, n, K, hd)
    logits = q.unsqueeze(-2) @ kg.transpose(-1, -2)
    if scale != 1.0:
        logits = logits * scale
    return (logits.softmax(-1) @ vg).squeeze(-2)


#: Precisions whose emulation has been warned about in this process (once each).
_WARNED_EMULATED: set[torch.dtype] = set()


@functools.cache
def cpu_emulates(dtype: torch.dtype) -> bool:
    """Whether this CPU has no instructions for ``dtype``, so that PyTorch emulates it, several
    times slower than float32: bfloat16 needs AVX-512 BF16 or AMX, float16 AVX-512 FP16 or
    AMX-FP16 (an AVX2-only CPU, such as AMD's Zen 2 and 3, has neither). False where unsure."""
    probe = {
        torch.bfloat16: "_is_mkldnn_bf16_supported",
        torch.float16: "_is_mkldnn_fp16_supported",
    }
    if dtype not in probe:
        return False
    try:
        return not bool(getattr(torch.ops.mkldnn, probe[dtype])())
    except (AttributeError, RuntimeError):
        return False


def warn_if_emulated(dtype: torch.dtype) -> None:
    """Warn, once per precision and process, when the CPU computes in an emulated ``dtype``."""
    if dtype in _WARNED_EMULATED or not cpu_emulates(dtype):
        return
    import warnings

    _WARNED_EMULATED.add(dtype)
    name = str(dtype).removeprefix("torch.")
    need = "AVX-512 BF16 or AMX" if dtype == torch.bfloat16 else "AVX-512 FP16 or AMX-FP16"
    warnings.warn(
        f"this CPU has no {name} instructions ({need}), so PyTorch emulates {name}: several "
        f"times slower than float32 here; compute in float32 on this machine",
        stacklevel=2,
    )
