"""The fast forward's steps on folded weights (:mod:`loftup.fused`) that read the backbone's
features: their keys and values, and the decoder that attends to them; pure functions.

Layout: everything per pixel is channels-last, ``(B, H, W, D)``, so that the stem's output is
already the token sequence and no permute copies are made.

Shapes: ``lr_feats`` (B, C, h, w); tokens (B, n, Dp), where Dp is the token width D
mean-padded to the alignment (:mod:`loftup.fused`; Dp = D on the CPU).

The image's half (its encoding and the stem's convolutions, which need no features) is
:mod:`loftup.fast_stem`'s. Beside the steps: the per-shape memo and the functions the compiler
leaves eager in :mod:`loftup.memo`, oneDNN's fused linear kernels in :mod:`loftup.cpu`, local
attention in :mod:`loftup.local_attention`. Their public names are importable from here too, as
they always were; a module constant is read where it lives now, so patch it there
(``LOCAL_ATTENTION_BYTES`` in :mod:`loftup.local_attention`, not here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import kernels
from .cpu import add_linear, cpu_emulates, linear, warn_if_emulated  # noqa: F401  (as before)
from .fast_stem import (  # noqa: F401  (importable from here, as before the split)
    Pads,
    axis_features,
    conv3x3_relu,
    encode_region,
    mean_pad,
    stem,
)
from .fused import FusedWeights
from .local_attention import (  # noqa: F401  (importable from here, as before the split)
    DENSE_LOCAL_RATIO,
    LOCAL_ATTENTION_BYTES,
    local_attention,
)
from .memo import _eager_under_compile, compile_ready, memo  # noqa: F401  (as before)


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
