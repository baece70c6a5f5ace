"""The precisions a bench times, the models cast to them, and how far an output is from the
float32 one."""

from __future__ import annotations

import copy

import torch

from ..errors import UsageError
from ..escaping import quoted

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def precision_models(model, dtypes) -> dict:
    """``{name: model}``: the float32 model and a cast copy for each other dtype."""
    out = {}
    for name in dtypes:
        if name not in DTYPES:
            raise UsageError(f"unknown dtype {quoted(name)}; choose from {', '.join(DTYPES)}")
        out[name] = (
            model if DTYPES[name] == torch.float32 else copy.deepcopy(model).to(DTYPES[name])
        )
    return out


def deviation(out: torch.Tensor, ref: torch.Tensor, chunk: int = 1 << 25) -> dict:
    """Largest and mean |out - ref|, computed ``chunk`` elements at a time: at 4096 x 4096 x
    384 whole float32 copies of both and their difference took about 100 GB (more than an
    80 GB card holds); a NaN anywhere is the answer, as it would be in one pass."""
    if out.shape != ref.shape:
        raise ValueError(f"out {tuple(out.shape)} and ref {tuple(ref.shape)} differ in shape")
    # flattened in ``out``'s storage order, both alike (the pairs match element for element):
    # a view, where reshape(-1) of a channels-last output copied it whole (2.5x the memory of
    # a 384 x 512 x 512 pair beyond the inputs; 38 GB more at 4096)
    order = sorted(range(out.dim()), key=lambda d: -out.stride(d))
    a, b = out.permute(order).reshape(-1), ref.permute(order).reshape(-1)
    big = torch.zeros((), device=a.device)
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for i in range(0, a.numel(), chunk):
        d = (a[i : i + chunk].float() - b[i : i + chunk].to(a.device).float()).abs_()
        big = torch.maximum(big, d.max())  # NaN propagates
        total += d.sum(dtype=torch.float64)
    mean = total.item() / a.numel() if a.numel() else float("nan")
    return {"max_abs_dev_vs_float32": big.item(), "mean_abs_dev_vs_float32": mean}
