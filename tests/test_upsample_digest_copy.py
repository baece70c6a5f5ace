"""The digest an earlier loftup's record is compared with (its weights converted to the
precision it ran in) is taken one tensor at a time on the CPU, not of a copy of the module made
on its own device (a GPU's memory doubled for a moment)."""

from __future__ import annotations

import copy

import pytest
import torch

import loftup
from loftup.extract.run_models import as_compared
from loftup.hub.record import weights_digest


class _NotToCopy(torch.Tensor):
    """A tensor that says so where it is copied whole (``copy.deepcopy``)."""

    def __deepcopy__(self, memo):
        raise AssertionError("the module's tensors were copied")


@pytest.mark.parametrize("ran", ["bfloat16", "float16"])
def test_an_earlier_records_digest_is_taken_without_a_copy_of_the_module(ran):
    """The digest a copy converted as .to(dtype) converts had (a LoftUp's phases and BatchNorm
    stay float32), found equal to the record's, with none of the module's tensors copied."""
    dtype = getattr(torch, ran)
    torch.manual_seed(0)
    model = loftup.LoftUp(dim=32)
    state = copy.deepcopy(model).to("cpu", dtype).state_dict()  # as it was taken
    assert {v.dtype for k, v in state.items() if "phases" in k} == {torch.float32}
    model.register_buffer("probe", torch.Tensor._make_subclass(_NotToCopy, torch.ones(3)))
    recorded = weights_digest({**state, "probe": torch.ones(3, dtype=dtype)})[:16]
    options = {"upsampler_sha256": "float32 digest", "backbone_sha256": None}
    saved = {"dtype": ran, "upsampler_sha256": recorded, "backbone_sha256": None}
    assert as_compared(options, saved, model, None)["upsampler_sha256"] == recorded
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the module as it was
