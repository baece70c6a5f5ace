"""Whether a tensor holds only finite values: the one check of NaN and Inf inputs, shared by the
backbones' (:func:`loftup.featurizers.sizes.check_finite_images`) and the upsampler's
(:func:`loftup.input_checks.check_inputs`)."""

from __future__ import annotations

import torch


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value of ``t`` is finite, from its min and max (NaN spreads to both, an
    infinity is one of them): one pass and no copy. ``isfinite(t).all()`` made temporaries of
    1.7 times a float32 image's size (1.3 GB for an 8000 x 8000 guidance image, the peak of a
    streamed output) and took 50 times as long. On a GPU the answer is read back, which waits
    for all the work queued before it: callers on a hot path check CPU tensors only."""
    if not t.numel():
        return True
    if t.element_size() == 1:  # the float8 types, which aminmax (and isfinite) lack on the CPU
        t = t.float()
    lo, hi = torch.aminmax(t)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))
