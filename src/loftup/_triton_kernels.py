"""The Triton kernels behind :mod:`loftup.kernels` (imported only where Triton is installed).

Launch option ``enable_fp_fusion=False`` keeps every multiply and add separately rounded, as in
PyTorch's eager kernels; ``div_rn`` and libdevice's ``sin``/``cos`` are the IEEE division and
the accurate (range-reduced) sine and cosine that PyTorch's CUDA kernels use.
"""

from __future__ import annotations

import inspect
import os

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

_NO_FMA = {"enable_fp_fusion": False}
_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


def _autotune(configs, key, restore_value=None):
    """``triton.autotune``, keeping its choices in Triton's on-disk cache where that option
    exists (the first call in a process otherwise spends seconds compiling and timing)."""
    extra = {}
    if "cache_results" in inspect.signature(triton.autotune).parameters:
        extra["cache_results"] = True
    return triton.autotune(configs, key=key, restore_value=restore_value, **extra)


def _configs(name: str, values, warps):
    """Autotuning candidates (one under the interpreter, where timing means nothing).

    The candidates below compile for sm_70 to sm_120 with at most two words of register spills
    (ptxas's counts for Triton 3.0 to 3.9, ``tests/triton_aot.py``; since the row widths are
    compile-time constants and rows move in 16-byte accesses, 16 LayerNorm rows or 32 bias+ReLU
    rows take at most 166 registers a thread, 226 for bfloat16 before Ampere, which converts
    it in software), and every candidate costs about a second of compiling for each
    shape and precision the first time it is tuned."""
    if _INTERPRETED:
        return [triton.Config({name: values[len(values) // 2]}, num_warps=4)]
    return [triton.Config({name: v}, num_warps=w) for v in values for w in warps]


#: "on": launch autotuned kernels with their middle candidate instead of tuning (the self-test
#: in loftup.kernels: one compilation per kernel, not one per candidate).
FIXED = {"on": False}


def _launch(kernel, grid, *args, **kwargs):
    # Triton launches on the current CUDA device's current stream, whatever device the
    # tensors are on: for tensors on another GPU (a model on cuda:1, the current device 0) the
    # kernel would run on GPU 0, unordered with cuda:1's stream, reading another GPU's memory
    dev = args[0].device
    if dev.type == "cuda" and dev.index != torch.cuda.current_device():
        with torch.cuda.device(dev):
            return _launch(kernel, grid, *args, **kwargs)
    if FIXED["on"] and hasattr(kernel, "configs"):
        config = kernel.configs[len(kernel.configs) // 2]
        kwargs = {**kwargs, **config.kwargs, "num_warps": config.num_warps}
        kernel = kernel.fn
    try:
        return kernel[grid](*args, **kwargs, **_NO_FMA)
    except TypeError:  # a Triton (or its interpreter) without the option: its default
        return kernel[grid](*args, **kwargs)


# X is written in place with PAD, but idempotently (its padding set to its mean); restored anyway.
# ``width`` and ``real`` are compile-time constants here and in _bias_relu_kernel: Triton then
# knows that every row of 408 (= 8 x 51) half-precision channels starts on a 16-byte boundary
# and moves 8 channels per load and store. As run-time integers they are specialised only when
# divisible by 16, and 408 is not: the kernels compiled to one 2-byte access per channel
# (tests/test_kernels.py checks the PTX).
@_autotune(
    _configs("BLOCK_M", (2, 4, 8, 16), (4, 8)),
    key=["width", "AFFINE", "PAD", "Y_FLAT"],
    restore_value=["X"],
)
@triton.jit
def _layer_norm_kernel(
    X,
    Y,
    WT,
    BS,
    n_rows,
    width: tl.constexpr,
    real: tl.constexpr,
    eps,
    y_h,
    y_w,
    ys_b,
    ys_h,
    ys_w,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    AFFINE: tl.constexpr,
    PAD: tl.constexpr,
    Y_FLAT: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    rmask = rows < n_rows
    cmask = cols < width
    mask = rmask[:, None] & cmask[None, :]
    offs = rows[:, None].to(tl.int64) * width + cols[None, :]
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    if PAD:
        is_real = cols < real
        m = tl.sum(tl.where(is_real[None, :], x, 0.0), axis=1) / real
        m = m.to(X.dtype.element_ty).to(tl.float32)  # the value stored, as mean_pad stores it
        is_pad = cmask & (cols >= real)
        x = tl.where(is_pad[None, :], m[:, None], x)
        tl.store(X + offs, x.to(X.dtype.element_ty), mask=rmask[:, None] & is_pad[None, :])
    mean = tl.sum(x, axis=1) / width
    xc = tl.where(cmask[None, :], x - mean[:, None], 0.0)
    var = tl.sum(xc * xc, axis=1) / width
    rstd = 1.0 / tl.sqrt_rn(var + eps)
    y = xc * rstd[:, None]
    if AFFINE:
        w = tl.load(WT + cols, mask=cmask, other=0.0).to(tl.float32)
        b = tl.load(BS + cols, mask=cmask, other=0.0).to(tl.float32)
        y = y * w[None, :] + b[None, :]
    if Y_FLAT:  # y laid out as x
        y_ptrs = Y + offs
    else:
        r = rows.to(tl.int64)  # row r of x is pixel (r // (h w), r // w % h, r % w) of y
        y_offs = (r // (y_h * y_w)) * ys_b + (r // y_w % y_h) * ys_h + (r % y_w) * ys_w
        y_ptrs = Y + y_offs[:, None] + cols[None, :]
    tl.store(y_ptrs, y.to(Y.dtype.element_ty), mask=mask)


def layer_norm(x, y, eps, weight, bias, real) -> None:
    n, w = x.shape
    if y.dim() == 2:
        y = y.view(1, 1, *y.shape)
    _, hh, ww, _ = y.shape
    dense = (hh * ww * w, ww * w, w, 1)  # y laid out as x: store at x's offsets
    flat = all(st == d for size, st, d in zip(y.shape, y.stride(), dense) if size > 1)
    affine = weight is not None
    _launch(
        _layer_norm_kernel,
        lambda meta: (triton.cdiv(n, meta["BLOCK_M"]),),
        x,
        y,
        weight if affine else x,
        bias if affine else x,
        n,
        w,
        real,
        float(eps),
        y.shape[1],
        y.shape[2],
        y.stride(0),
        y.stride(1),
        y.stride(2),
        BLOCK_N=triton.next_power_of_2(w),
        AFFINE=affine,
        PAD=real < w,
        Y_FLAT=flat,
    )


@_autotune(_configs("BLOCK_P", (8, 16), (4, 8)), key=["EP", "N3", "COORDS"])
@triton.jit
def _encode_kernel(
    IMG,
    s_b,
    s_c,
    s_h,
    s_w,
    LO,
    HI,
    ROW,
    COL,
    FS,
    PH,
    ph_f,
    ph_n,
    WT,
    BS,
    OUT,
    so_b,
    so_h,
    so_w,
    n_pix,
    rh,
    rw,
    eps,
    N2: tl.constexpr,  # coordinate features per axis (2n)
    N3: tl.constexpr,  # colour features per function (3n)
    E: tl.constexpr,  # real channels
    EP: tl.constexpr,  # channels written
    COORDS: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BA: tl.constexpr,
    BS3: tl.constexpr,
    BR: tl.constexpr,
    LIBDEVICE: tl.constexpr,
):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pm = p < n_pix
    hw = rh * rw
    bi = p // hw
    rem = p % hw
    yi = rem // rw
    xi = rem % rw
    base = bi.to(tl.int64) * s_b + yi.to(tl.int64) * s_h + xi.to(tl.int64) * s_w
    c0 = _scaled_colour(IMG + base, LO + bi * 3, HI + bi * 3, pm)
    c1 = _scaled_colour(IMG + base + s_c, LO + bi * 3 + 1, HI + bi * 3 + 1, pm)
    c2 = _scaled_colour(IMG + base + 2 * s_c, LO + bi * 3 + 2, HI + bi * 3 + 2, pm)

    # Fourier features of the colours: channel j is function(colour j % 3 * freq j // 3 + phase)
    # with phase[function, j // 3, j % 3] (a (2, n, 3) view with strides ph_f, ph_n, 1)
    js = tl.arange(0, BS3)
    jm = js < N3
    ch = js % 3
    v = tl.where(
        ch[None, :] == 0, c0[:, None], tl.where(ch[None, :] == 1, c1[:, None], c2[:, None])
    )
    arg = v * tl.load(FS + js // 3, mask=jm, other=0.0)[None, :]
    m2 = pm[:, None] & jm[None, :]
    ph = PH + (js // 3) * ph_n + ch
    sarg = arg + tl.load(ph, mask=jm, other=0.0)[None, :]
    carg = arg + tl.load(ph + ph_f, mask=jm, other=0.0)[None, :]
    if LIBDEVICE:  # what PyTorch's CUDA kernels compute
        sv, cv = libdevice.sin(sarg), libdevice.cos(carg)
    else:  # Triton's interpreter (numpy's accurate sine and cosine)
        sv, cv = tl.sin(sarg), tl.cos(carg)
    sv = tl.where(m2, sv, 0.0)
    cv = tl.where(m2, cv, 0.0)
    total = tl.sum(sv, axis=1) + tl.sum(cv, axis=1) + c0 + c1 + c2
    if COORDS:
        ja = tl.arange(0, BA)
        am = pm[:, None] & (ja < N2)[None, :]
        rv = tl.load(ROW + yi[:, None] * N2 + ja[None, :], mask=am, other=0.0)
        cl = tl.load(COL + xi[:, None] * N2 + ja[None, :], mask=am, other=0.0)
        total += tl.sum(rv, axis=1) + tl.sum(cl, axis=1)
    m = total / E  # the padding channels' value
    jr = tl.arange(0, BR)
    rmask = pm[:, None] & (jr < EP - E + 3)[None, :]
    raw = tl.where(
        jr[None, :] == 0,
        c0[:, None],
        tl.where(
            jr[None, :] == 1, c1[:, None], tl.where(jr[None, :] == 2, c2[:, None], m[:, None])
        ),
    )
    raw = tl.where(rmask, raw, 0.0)
    mean = (total + (EP - E) * m) / EP
    sv = tl.where(m2, sv - mean[:, None], 0.0)
    cv = tl.where(m2, cv - mean[:, None], 0.0)
    raw = tl.where(rmask, raw - mean[:, None], 0.0)
    sq = tl.sum(sv * sv, axis=1) + tl.sum(cv * cv, axis=1) + tl.sum(raw * raw, axis=1)
    if COORDS:
        rv = tl.where(am, rv - mean[:, None], 0.0)
        cl = tl.where(am, cl - mean[:, None], 0.0)
        sq += tl.sum(rv * rv, axis=1) + tl.sum(cl * cl, axis=1)
    rstd = 1.0 / tl.sqrt_rn(sq / EP + eps)

    out = OUT + (bi.to(tl.int64) * so_b + yi.to(tl.int64) * so_h + xi.to(tl.int64) * so_w)[:, None]
    off = 0
    if COORDS:
        _store_normalised(out, rv, rstd, WT, BS, 0, ja, ja < N2, am)
        _store_normalised(out, cl, rstd, WT, BS, N2, ja, ja < N2, am)
        off = 2 * N2
    _store_normalised(out, sv, rstd, WT, BS, off, js, jm, m2)
    _store_normalised(out, cv, rstd, WT, BS, off + N3, js, jm, m2)
    _store_normalised(out, raw, rstd, WT, BS, off + 2 * N3, jr, jr < EP - off - 2 * N3, rmask)


@triton.jit
def _scaled_colour(PIX, LO, HI, pm):
    """Colour values scaled to [-0.5, 0.5] as PyTorch computes them:
    ``(x - lo) / (hi - lo).clamp_min(1e-4) - 0.5`` (0 for masked pixels)."""
    x = tl.load(PIX, mask=pm, other=0.0).to(tl.float32)
    lo = tl.load(LO, mask=pm, other=0.0)
    den = tl.maximum(tl.load(HI, mask=pm, other=1.0) - lo, 1e-4)
    return tl.where(pm, tl.math.div_rn(x - lo, den) - 0.5, 0.0)


@triton.jit
def _store_normalised(out, xc, rstd, WT, BS, off, j, jmask, mask):
    """Store centred values ``xc`` (pixels, channels j) normalised by ``rstd`` with the
    LayerNorm's weight and bias at channels ``off + j`` of each pixel's row ``out``."""
    w = tl.load(WT + off + j, mask=jmask, other=0.0)
    b = tl.load(BS + off + j, mask=jmask, other=0.0)
    y = xc * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(out + off + j[None, :], y.to(out.dtype.element_ty), mask=mask)


def encode(image, lo, hi, row_feats, col_feats, freqs, phases, norm, out) -> None:
    """``phases``: (2, n, 3) with a unit last stride (a view of the model's phases is fine);
    ``lo``, ``hi``: (B, 3) contiguous float32; nothing is copied."""
    b, _, rh, rw = image.shape
    width = out.shape[-1]
    n3 = 3 * freqs.numel()
    coords = row_feats is not None
    n2 = row_feats.shape[1] if coords else 0
    e = n3 * 2 + 3 + 2 * n2
    weight, bias, eps = norm
    n_pix = b * rh * rw
    dummy = freqs
    _launch(
        _encode_kernel,
        lambda meta: (triton.cdiv(n_pix, meta["BLOCK_P"]),),
        image,
        image.stride(0),
        image.stride(1),
        image.stride(2),
        image.stride(3),
        lo,
        hi,
        row_feats.contiguous() if coords else dummy,
        col_feats.contiguous() if coords else dummy,
        freqs,
        phases,
        phases.stride(0),
        phases.stride(1),
        weight.contiguous(),
        bias.contiguous(),
        out,
        out.stride(0),
        out.stride(1),
        out.stride(2),
        n_pix,
        rh,
        rw,
        float(eps),
        N2=max(n2, 1),
        N3=n3,
        E=e,
        EP=width,
        COORDS=coords,
        BA=triton.next_power_of_2(max(n2, 1)),
        BS3=triton.next_power_of_2(n3),
        BR=triton.next_power_of_2(width - e + 3),
        LIBDEVICE=not _INTERPRETED,
    )


# In place: the autotuner must restore X before timing each candidate (it runs the kernel
# many times on the real arguments), or the first call returns ReLU(x + k * bias).
@_autotune(_configs("BLOCK_M", (8, 16, 32), (4, 8)), key=["width"], restore_value=["X"])
@triton.jit
def _bias_relu_kernel(
    X,
    B,
    n_rows,
    width: tl.constexpr,
    h,
    w,
    y0,
    y1,
    x0,
    x1,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    cmask = cols < width
    mask = (rows < n_rows)[:, None] & cmask[None, :]
    offs = rows[:, None].to(tl.int64) * width + cols[None, :]
    x = tl.load(X + offs, mask=mask, other=0.0)
    b = tl.load(B + cols, mask=cmask, other=0.0)
    y = tl.maximum(x + b[None, :], 0.0)  # rounded to x's dtype, as PyTorch's addition is
    pix = rows % (h * w)  # row r is pixel (r // (h w), pix // w, pix % w)
    yi, xi = pix // w, pix % w
    keep = (yi >= y0) & (yi < y1) & (xi >= x0) & (xi < x1)
    y = tl.where(keep[:, None], y, 0.0)
    tl.store(X + offs, y.to(X.dtype.element_ty), mask=mask)


def bias_relu_(x, bias, keep) -> None:
    """``x``: (B, h, w, C) contiguous; ``keep``: (y0, y1, x0, x1), the pixels not zeroed."""
    b, h, w, c = x.shape
    n = b * h * w
    _launch(
        _bias_relu_kernel,
        lambda meta: (triton.cdiv(n, meta["BLOCK_M"]),),
        x,
        bias,
        n,
        c,
        h,
        w,
        *keep,
        BLOCK_N=triton.next_power_of_2(c),
    )
