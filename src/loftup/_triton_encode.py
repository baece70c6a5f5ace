"""The image encoding of a region in one Triton kernel (:func:`loftup.kernels.encode_pixels`):
colour scaling, Fourier features, the per-row/per-column coordinate features, mean padding
and the stem's LayerNorm, written once in the compute dtype. Imported only where Triton is
installed.

``div_rn`` and libdevice's ``sin``/``cos`` are the IEEE division and the accurate
(range-reduced) sine and cosine that PyTorch's CUDA kernels use; every multiply and add is
rounded separately (:data:`._triton_launch.NO_FMA`): the Fourier arguments reach about 1e4
radians, where a fused multiply-add or a fast sine would move the features.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.extra import libdevice

from . import _triton_launch as launching


@launching.autotune(launching.configs("BLOCK_P", (8, 16), (4, 8)), key=["EP", "N3", "COORDS"])
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
    launching.launch(
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
        LIBDEVICE=not launching.INTERPRETED,
    )
