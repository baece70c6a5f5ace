"""The image's half of the fast forward on folded weights (:mod:`loftup.fused`): the image
encoding and the stem's two 3x3 convolutions, pixels -> query map; pure functions. It needs no
backbone features, which is what lets the stem run before the backbone's features exist
(:mod:`loftup.early_start`, and a CUDA graph's first half: :func:`loftup.graph_upsampler`).

Layout: channels-last, ``(B, H, W, E)``, so that the stem's output is already the token
sequence. The image encoding is computed in float32 (Fourier arguments up to e^10 need it) and
normalised before the cast to the compute dtype; the coordinate channels are computed once per
row and once per column.

Shapes: image regions (B, 3, rh, rw); the query map (B, Dp, th, tw), where Dp is the token
width D mean-padded to the alignment (:mod:`loftup.fused`; Dp = D on the CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import kernels
from .fused import FusedWeights
from .memo import _eager_under_compile, memo


def axis_features(coords: torch.Tensor, freqs: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """(L,) coordinates, (n,) frequencies, (2, n) phases -> (L, 2n): sines then cosines."""
    arg = coords[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg + phases[0]), torch.cos(arg + phases[1])], dim=1)


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


def mean_pad(x: torch.Tensor, real: int) -> None:
    """Set the channels of ``x`` (..., width) after the first ``real`` to the mean of those,
    in place (see "mean padding" in :mod:`loftup.fused`)."""
    if x.shape[-1] > real:
        x[..., real:] = x[..., :real].mean(-1, keepdim=True)
