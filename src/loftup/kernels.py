"""Triton kernels for the memory-bound steps of the GPU forward (same function, fewer passes).

On a GPU the fast path's matrix products and convolutions run near the card's rate; what is
left is memory traffic. Three kernels remove most of it:

- :func:`layer_norm_rows`: LayerNorm over the rows of a (N, W) matrix, several rows per
  program (PyTorch's kernel gives each 408-wide row a whole thread block and reaches about a
  third of the memory bandwidth), optionally with the affine part, optionally writing the
  row's mean into its padding channels first (the "mean padding" of :mod:`loftup.fused`, which
  otherwise costs a reduction and a write of its own), and optionally writing into a tile of a
  larger output (the last LayerNorm writes the output directly).
- :func:`bias_relu_`: a convolution's bias and ReLU in one pass over its output.
- :func:`encode_pixels`: the whole image encoding of a region in one pass: colour scaling,
  Fourier features, the per-row/per-column coordinate features, mean padding and the stem's
  LayerNorm, written once in the compute dtype (the PyTorch version makes about ten passes over
  a float32 tensor of 208 channels per pixel).

They compute in float32 with the same operations in the same order as the PyTorch path
(separate multiply and add, IEEE division and libdevice's sine and cosine: the Fourier
arguments reach about 1e4 radians, where a fused multiply-add or a fast sine would move the
features), so their float32 results agree with PyTorch's to rounding (5e-7 in tests); the
forward uses them in half precision, where memory traffic is what they save. They run on CUDA
tensors, or on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``, set before
Triton is first imported; the tests do this where no GPU is). Without Triton, with
``LOFTUP_TRITON=0`` in the environment, inside ``torch.compile`` (which fuses these steps
itself), or where they fail their self-test (:func:`working`), the PyTorch path runs.
"""

from __future__ import annotations

import functools
import os
import warnings
from contextlib import contextmanager

import torch

from .escaping import printable

#: "on": the kernels are used where they apply; "cpu": also on CPU tensors under the
#: interpreter (for tests: slow, and never the default).
_switch = {"on": os.environ.get("LOFTUP_TRITON", "1") != "0", "cpu": False}


@functools.cache
def _triton():
    """The kernels module, or None where Triton cannot be imported."""
    try:
        from . import _triton_kernels
    except Exception:  # noqa: BLE001 - no Triton, or one that does not load: PyTorch path
        return None
    return _triton_kernels


def interpreted() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    """Whether Triton is importable here."""
    return _triton() is not None


def active(t: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the fast path uses the kernels for tensor ``t`` and compute dtype ``dtype``:
    switched on, Triton present and passing its self-test on ``t``'s device in ``dtype``
    (:func:`working`), half precision (float32 is bound by arithmetic, not memory, and keeps
    PyTorch's kernels and their rounding), ``t`` on a GPU (on the CPU only where a test asks
    for the interpreter), and not inside ``torch.compile``."""
    if not _switch["on"] or dtype == torch.float32 or torch.compiler.is_compiling():
        return False
    if not (t.is_cuda or (t.device.type == "cpu" and _switch["cpu"] and interpreted())):
        return False
    ok = _checked.get((t.device, dtype))  # the common case without a call
    return ok if ok is not None else (available() and working(t.device, dtype))


#: (device, dtype) -> whether the kernels passed their self-test there in that precision
_checked: dict[tuple[torch.device, torch.dtype], bool] = {}


def status(device) -> dict | str:
    """What the kernels did on ``device`` so far, for a benchmark's report: ``{"float16": True,
    "bfloat16": False}`` for each half precision self-tested there (passed: used; failed:
    PyTorch's kernels ran), ``{}`` where none was (the CPU, float32 only), or "switched off"
    (``LOFTUP_TRITON=0`` or :func:`enabled`)."""
    if not _switch["on"]:
        return "switched off"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    return {
        str(dtype).removeprefix("torch."): ok for (d, dtype), ok in _checked.items() if d == dev
    }


def working(device: torch.device | str, dtype: torch.dtype = torch.float16) -> bool:
    """Whether the kernels compile and compute the fast path's numbers on ``device`` in
    ``dtype`` (float16 or bfloat16).

    Checked once per device and precision (a few seconds: a tiny LoftUp in that precision, with
    the kernels and without, one compilation per kernel): the precisions are checked apart
    because they compile apart, and one can fail where the other works (bfloat16 before
    Ampere with Triton 3.0 to 3.2, whose PTX for it needs sm_80). A Triton that does not fit
    this torch, driver, GPU or precision is reported once, as a warning naming the problem, and
    PyTorch's kernels are used from then on; the forward never fails because of them. Not
    checked while a CUDA graph is being captured (the PyTorch path is used for that call).
    """
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    key = (dev, dtype)
    if key in _checked:
        return _checked[key]
    if dev.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return False
    _checked[key] = True  # the test itself runs the kernels
    try:
        problem = _selftest(dev, dtype)
    except Exception as e:  # noqa: BLE001 - any failure means: do not use them
        problem = f"{type(e).__name__}: {e}"
    if problem:
        warnings.warn(
            printable(
                f"loftup: the Triton kernels failed their self-test on {dev} in "
                f"{str(dtype).removeprefix('torch.')} ({problem[:400]}); "
                "using PyTorch's kernels instead (LOFTUP_TRITON=0 skips them and this test)"
            ),
            RuntimeWarning,
            stacklevel=2,
        )
    _checked[key] = not problem
    return _checked[key]


def _selftest(device: torch.device, dtype: torch.dtype) -> str | None:
    """A tiny LoftUp's output in ``dtype`` with the kernels against without: None if they
    agree."""
    from .model import LoftUp
    from .tiling import upsample

    # every random number here is the CPU's: its generator alone is seeded, and restored after
    # (torch.manual_seed would also reseed every GPU's, which fork_rng(devices=[]) leaves
    # changed: a process's CUDA random numbers would restart at its first half forward)
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.default_generator.manual_seed(0)
        model = LoftUp(dim=8, num_heads=2, n_freqs=4).eval().to(device, dtype)
        model.align = 8
        lr = torch.randn(2, 8, 3, 3).to(device, dtype)
        image = torch.randn(2, 3, 13, 11).to(device)  # float32, as guidance images are
        _triton().FIXED["on"] = True
        try:
            got = upsample(model, lr, image, tile_size=7)
        finally:
            _triton().FIXED["on"] = False
        with enabled(False):
            ref = upsample(model, lr, image, tile_size=7)
    # outputs of magnitude up to about 2.5 agree to a few units in the last place: up to 0.006
    # in float16 and 0.043 in bfloat16 (8 times coarser) under Triton's interpreter; a broken
    # kernel moves them by whole units
    bound = 0.05 if dtype == torch.float16 else 0.25
    dev = (got.float() - ref.float()).abs().max().item()
    if not dev <= bound:  # also catches NaN
        return f"outputs differ by {dev:.3g} (bound {bound})"
    return None


@contextmanager
def enabled(on: bool):
    """Switch the kernels on or off inside the block (to measure what they buy)."""
    old = _switch["on"]
    _switch["on"] = on
    try:
        yield
    finally:
        _switch["on"] = old


def layer_norm_rows(
    x: torch.Tensor,
    eps: float,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    real: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """LayerNorm over the last axis of a contiguous (N, W) ``x`` -> new (N, W) tensor, or
    written into ``out`` and returned: a (b, h, w, W) tensor with contiguous channels and
    b * h * w = N (a tile of a larger output, say), row r going to pixel (r // (h w),
    r // w % h, r % w).

    ``real``: first write, in place, the mean of the first ``real`` channels of each row into
    its channels ``real:`` (rounded to ``x``'s dtype, as :func:`loftup.fast_stem.mean_pad`
    does), then normalise the whole row.
    """
    # plain ValueErrors, as torch's functions raise them: the fast path builds these tensors
    if x.dim() != 2 or not x.is_contiguous():
        raise ValueError(f"layer_norm_rows needs a contiguous (N, W) tensor, got {tuple(x.shape)}")
    n, w = x.shape
    if out is None:
        out = torch.empty(n, w, device=x.device, dtype=x.dtype)
    elif out.dim() != 4 or out.numel() != n * w or out.shape[-1] != w or out.stride(-1) != 1:
        raise ValueError(f"out must be (b, h, w, {w}) with b h w = {n} and contiguous channels")
    if n:
        _triton().layer_norm(x, out, eps, weight, bias, w if real is None else real)
    return out


def bias_relu_(
    x: torch.Tensor, bias: torch.Tensor, keep: tuple[int, int, int, int] | None = None
) -> torch.Tensor:
    """``x = ReLU(x + bias)`` in place for (B, C, H, W) channels-last ``x`` (a convolution's
    output): one pass instead of PyTorch's bias addition and ReLU; returns ``x``.

    ``keep``: (y0, y1, x0, x1): pixels outside rows [y0, y1) x columns [x0, x1) are set to 0
    in the same pass (a tile's values outside the image, the next convolution's zero padding).
    """
    b, c, h, w = x.shape
    if not x.is_contiguous(memory_format=torch.channels_last):
        raise ValueError("bias_relu_ needs a channels-last tensor")
    if x.numel():
        _triton().bias_relu_(x.permute(0, 2, 3, 1), bias, keep or (0, h, 0, w))
    return x


def encode_pixels(
    image: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    row_feats: torch.Tensor | None,
    col_feats: torch.Tensor | None,
    freqs: torch.Tensor,
    phases: torch.Tensor,
    norm: tuple[torch.Tensor, torch.Tensor, float],
    width: int,
    out_dtype: torch.dtype,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The normalised image encoding of a region, (B, 3, rh, rw) -> (B, rh, rw, ``width``).

    Arguments:
      image: the region's pixels (any strides, any float dtype).
      lo, hi: (B, 3, 1, 1) float32 colour min and max of the whole images.
      row_feats, col_feats: (rh, 2n) and (rw, 2n) float32 coordinate features of the region's
        rows and columns (sines then cosines), or None for a model without coordinates.
      freqs: (n,) float32 frequencies; phases: (2, n, 3) float32 colour phases (sin, cos),
        read in place (a slice of the model's (2, n, 5) phases is fine).
      norm: the stem LayerNorm's (weight, bias, eps) over ``width`` channels, float32.
      width: channels written: the real ones, then their mean (padding).
      out: optional (B, rh, rw, width) destination with contiguous channels (a window of a
        larger buffer, say); returned.
    """
    b, _, rh, rw = image.shape
    if out is None:
        out = torch.empty(b, rh, rw, width, device=image.device, dtype=out_dtype)
    elif out.shape != (b, rh, rw, width) or out.stride(-1) != 1:
        raise ValueError(f"out must be ({b}, {rh}, {rw}, {width}) with contiguous channels")
    if out.numel():
        lo, hi = (t.float().reshape(b, 3).contiguous() for t in (lo, hi))
        if phases.stride(-1) != 1:
            phases = phases.contiguous()
        _triton().encode(
            image, lo, hi, row_feats, col_feats, freqs.contiguous(), phases, norm, out
        )  # fmt: skip
    return out
