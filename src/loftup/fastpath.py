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

from .fused import FusedWeights


def axis_features(coords: torch.Tensor, freqs: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """(L,) coordinates, (n,) frequencies, (2, n) phases -> (L, 2n): sines then cosines."""
    arg = coords[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg + phases[0]), torch.cos(arg + phases[1])], dim=1)


def encode_kv(fw: FusedWeights, lr_feats: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(B, C, h, w) raw features -> per block keys and values, each (B, heads, h*w, hd_pad)."""
    b, c, h, w = lr_feats.shape
    x = F.layer_norm(lr_feats.to(fw.dtype).permute(0, 2, 3, 1), (c,), *fw.channel_norm)
    dev = lr_feats.device
    n = fw.grid_freqs.numel()
    grid = torch.stack(
        torch.meshgrid(
            torch.linspace(-1.0, 1.0, h, device=dev),
            torch.linspace(-1.0, 1.0, w, device=dev),
            indexing="ij",
        ),
        dim=-1,
    )  # (h, w, 2)
    arg = grid[:, :, None, :] * fw.grid_freqs.view(n, 1)  # (h, w, n, 2)
    pos = torch.cat(
        [torch.sin(arg + fw.grid_phases[0]), torch.cos(arg + fw.grid_phases[1])], dim=2
    ).reshape(h, w, 4 * n)
    tokens = torch.cat([x, pos.to(fw.dtype).expand(b, h, w, 4 * n)], dim=-1).reshape(b, h * w, -1)
    kvs = []
    for blk in fw.blocks:
        kv = F.linear(F.layer_norm(tokens, tokens.shape[-1:], *blk.norm_kv), blk.wkv, blk.bkv)
        kv = kv.view(b, h * w, 2, fw.heads, fw.head_dim).permute(2, 0, 3, 1, 4).contiguous()
        kvs.append((kv[0], kv[1]))
    return kvs


@torch.compiler.disable  # keep eager rounding: a fused multiply-add moves e^10-scale phases
def encode_region(
    fw: FusedWeights,
    image: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    origin: tuple[int, int],
    size: tuple[int, int],
) -> torch.Tensor:
    """Normalised image encoding of a region: (B, 3, rh, rw) -> (B, rh, rw, E), computed in
    float32, returned in the dtype of the first convolution (float32 for Winograd).

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
    colour = (image.float() - lo) / (hi - lo).clamp_min(1e-4) - 0.5
    colour = colour.permute(0, 2, 3, 1)  # (B, rh, rw, 3)
    e = 2 * n * j + 3
    enc = torch.empty(b, rh, rw, fw.enc_padded, device=dev, dtype=torch.float32)
    off = 0
    if fw.coords:
        (y0, x0), (height, width) = origin, size
        ys = torch.linspace(-1.0, 1.0, height, device=dev)[y0 : y0 + rh]
        xs = torch.linspace(-1.0, 1.0, width, device=dev)[x0 : x0 + rw]
        enc[..., : 2 * n] = axis_features(ys, freqs, phases[:, :, 0])[None, :, None, :]
        enc[..., 2 * n : 4 * n] = axis_features(xs, freqs, phases[:, :, 1])[None, None, :, :]
        off = 4 * n
    arg = colour[..., None, :] * freqs.view(n, 1)  # (B, rh, rw, n, 3)
    c0 = j - 3
    torch.sin(arg + phases[0, :, c0:], out=enc[..., off : off + 3 * n].unflatten(-1, (n, 3)))
    off += 3 * n
    torch.cos(arg + phases[1, :, c0:], out=enc[..., off : off + 3 * n].unflatten(-1, (n, 3)))
    enc[..., e - 3 : e] = colour
    mean_pad(enc, e)
    enc = F.layer_norm(enc, enc.shape[-1:], *fw.stem_norm)
    return enc if fw.conv == "winograd" else enc.to(fw.dtype)


#: Zero padding of a 3x3 convolution's input: (top, bottom, left, right).
Pads = tuple[int, int, int, int]


def conv3x3_relu(fw: FusedWeights, x: torch.Tensor, which: int, pads: Pads) -> torch.Tensor:
    """ReLU(conv ``which`` (1 or 2) of (B, I, h, w) ``x`` zero-padded by ``pads``) -> (B, O, ...).

    Winograd (NNPACK, float32) returns NCHW, direct convolutions channels-last (or NCHW for
    "direct_nchw") in fw.dtype.
    """
    w, b = fw.conv1 if which == 1 else fw.conv2
    winograd = fw.conv == "winograd"
    nchw = fw.conv != "direct"
    x = x.float() if winograd else x.to(fw.dtype)
    if pads == (1, 1, 1, 1):
        padding = [1, 1]
    else:
        x, padding = _pad(x, pads, nchw), [0, 0]
    if not winograd:
        fmt = torch.contiguous_format if nchw else torch.channels_last
        return F.conv2d(x.contiguous(memory_format=fmt), w, b, padding=padding).relu_()
    return _winograd(x.contiguous(), w, b, padding).relu_()


@torch.compiler.disable  # a library call the compiler cannot trace
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
) -> torch.Tensor:
    """(B, n, D) query tokens -> (B, n, C) output features; ``x`` may be overwritten.

    ``neighbours`` (n, K): the key/value tokens each pixel attends to (local attention).
    """
    b, n, d = x.shape
    x = x.contiguous().view(b * n, d)
    mean_pad(x, fw.real_width)
    heads, hd = fw.heads, fw.head_dim
    for blk, (k, v) in zip(fw.blocks, kvs):
        q = linear(F.layer_norm(x, (d,), eps=blk.eps_q), blk.wq, blk.bq)
        q = q.view(b, n, heads, hd).transpose(1, 2)  # (B, heads, n, hd)
        if neighbours is not None:
            a = _local_attention(q, k, v, neighbours)
        elif q.device.type == "cpu" and q.dtype != torch.float32:
            a = (q @ k.transpose(-1, -2)).softmax(-1) @ v  # 2x the CPU's fused kernel in bf16
        else:
            a = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        x = add_linear(x, a.transpose(1, 2).reshape(b * n, heads * hd), blk.wo)
        h = linear(F.layer_norm(x, (d,), eps=blk.eps_ffn), blk.w1, blk.b1, gelu=True)
        x = add_linear(x, h.view(b * n, -1), blk.w2)
    y = linear(F.layer_norm(x, (d,), eps=fw.eps_final), *fw.head)
    return F.layer_norm(y, y.shape[-1:], *fw.head_norm).view(b, n, -1)


def mean_pad(x: torch.Tensor, real: int) -> None:
    """Set the channels of ``x`` (..., width) after the first ``real`` to the mean of those,
    in place (see "mean padding" in :mod:`loftup.fused`)."""
    if x.shape[-1] > real:
        x[..., real:] = x[..., :real].mean(-1, keepdim=True)


def add_linear(x: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x + a @ w.T`` for (N, D) ``x``, in place; on the CPU in float32 one oneDNN call with
    the addition fused (about 20% faster than MKL's in-place ``addmm_`` here)."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and _onednn_ok():
        return torch.ops.mkldnn._linear_pointwise.binary(a, x, w, None, "add")
    return x.addmm_(a, w.t())


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """``F.linear`` (then exact GELU); on the CPU one oneDNN call with the bias (and GELU)
    fused, which saves a pass over the output (not under ``torch.compile``, which fuses
    these itself)."""
    cpu_ok = x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
    if cpu_ok and _onednn_ok():
        return torch.ops.mkldnn._linear_pointwise(
            x, w, b, "gelu" if gelu else "none", [], "none" if gelu else ""
        )
    y = F.linear(x, w, b)
    return F.gelu(y) if gelu else y


def _onednn_ok() -> bool:
    """oneDNN's fused linear kernels: present, working, and not under ``torch.compile``."""
    return not torch.compiler.is_compiling() and _onednn_works()


@functools.cache
def _onednn_works() -> bool:
    try:
        x, w = torch.ones(2, 3), torch.ones(4, 3)
        y = torch.ops.mkldnn._linear_pointwise(x, w, torch.zeros(4), "none", [], "")
        z = torch.ops.mkldnn._linear_pointwise.binary(x, y, w, None, "add")
        return bool(torch.equal(z, torch.full((2, 4), 6.0)))
    except (AttributeError, RuntimeError):
        return False


def _local_attention(q, k, v, neighbours) -> torch.Tensor:
    """Each query (B, heads, n, hd) against its own keys/values ``neighbours`` (n, K)."""
    kg, vg = k[:, :, neighbours], v[:, :, neighbours]  # (B, heads, n, K, hd)
    logits = q.unsqueeze(-2) @ kg.transpose(-1, -2)  # scale is folded into q
    return (logits.softmax(-1) @ vg).squeeze(-2)
