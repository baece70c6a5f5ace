"""The row kernels behind :mod:`loftup.kernels` (imported only where Triton is installed):
LayerNorm over rows, and a convolution's bias and ReLU in place. The encoding kernel is in
:mod:`._triton_encode` and how all of them are launched in :mod:`._triton_launch`; this module
is the one :mod:`loftup.kernels` loads, so it names those too (``encode``, ``FIXED``).
"""

from __future__ import annotations

import triton
import triton.language as tl

from . import _triton_launch as launching
from ._triton_encode import encode
from ._triton_launch import FIXED

__all__ = ["FIXED", "bias_relu_", "encode", "layer_norm"]


# X is written in place with PAD, but idempotently (its padding set to its mean); restored anyway.
# ``width`` and ``real`` are compile-time constants here and in _bias_relu_kernel: Triton then
# knows that every row of 408 (= 8 x 51) half-precision channels starts on a 16-byte boundary
# and moves 8 channels per load and store. As run-time integers they are specialised only when
# divisible by 16, and 408 is not: the kernels compiled to one 2-byte access per channel
# (tests/test_kernels.py checks the PTX).
@launching.autotune(
    launching.configs("BLOCK_M", (2, 4, 8, 16), (4, 8)),
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
    launching.launch(
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


# In place: the autotuner must restore X before timing each candidate (it runs the kernel
# many times on the real arguments), or the first call returns ReLU(x + k * bias).
@launching.autotune(
    launching.configs("BLOCK_M", (8, 16, 32), (4, 8)), key=["width"], restore_value=["X"]
)
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
    launching.launch(
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
