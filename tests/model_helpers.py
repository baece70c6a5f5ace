"""Upsamplers for tests (one with every weight moved off its initial value: :func:`perturb`),
a backbone's bfloat16 check, and what the torch under test does otherwise than the newest
(its oneDNN's rounding, whether transformers reads a backbone's pickle on it). Imported after
conftest has chosen Triton's CPU interpreter (it does so before importing loftup)."""

from __future__ import annotations

import pytest
import torch

from loftup.hub.files import SAFE_PICKLE_TORCH, torch_release

#: For a test that has transformers read a backbone's pytorch_model.bin: it reads one only with
#: torch 2.6 or newer (CVE-2025-32434), and below it loftup refuses the file, naming it, by
#: design (tests/test_featurizer_damaged.py checks that refusal on the torch under test too).
READS_BACKBONE_PICKLES = pytest.mark.skipif(
    torch_release() < SAFE_PICKLE_TORCH,
    reason="transformers reads a backbone's pytorch_model.bin only with torch 2.6 or newer",
)

#: torch 2.4's oneDNN (seen with 2.4.1) rounds each row of a matrix product by how many rows it
#: is given: an image alone and in a batch, or a tile and the whole image, agree there to a few
#: float32 ulps (about 1e-6), not bit for bit as with newer releases (2.5.1 included: the tests
#: of test_api.py, test_bench_*.py and test_upsample_*.py pass bit for bit with it).
ROWS_ROUND_BY_COUNT = torch_release() < (2, 5)


def perturb(model, scale: float = 0.05, seed: int = 1):
    """``model`` (a LoftUp) in eval mode with every weight and buffer moved off its initial
    value by ``scale`` x N(0, 1) (BatchNorm variances kept positive): no parameter is left at a
    value that hides a mistake."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point() and t.dim() > 0:
                t.add_(scale * torch.randn(t.shape, generator=g))
        for bn in (model.stem.bn1, model.stem.bn2):
            bn.running_var.abs_().add_(0.5)
    return model.eval()


def perturbed_loftup(dim: int = 384):
    """A perturbed (:func:`perturb`) LoftUp for C = ``dim``, the same one on every call."""
    from loftup import LoftUp

    torch.manual_seed(0)
    return perturb(LoftUp(dim=dim))


def also_in_bfloat16(feat, images, got):
    """The featurizer in bfloat16 (``load_pipeline(..., dtype="bfloat16")``) takes the same
    float32 input and gives bfloat16 features close to its float32 ones."""
    import copy

    half = copy.deepcopy(feat).to(torch.bfloat16)
    with torch.no_grad():
        out = half(images)
    assert out.dtype == torch.bfloat16 and out.shape == got.shape
    err = (out.float() - got).abs().max().item()
    assert 0 < err < 0.1 * got.abs().max().item(), err


def counted_compiles(monkeypatch) -> list:
    """The graphs ``torch.compile`` makes from here on, each run as traced (no inductor): how
    often the compiler is asked, and what its graphs compute, without minutes of compiling."""
    real, graphs = torch.compile, []

    def count(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend=count, dynamic=False))
    torch._dynamo.reset()  # nothing compiled earlier in the process counts
    return graphs
