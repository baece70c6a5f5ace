""":func:`loftup.extract.upsample_folder` given modules from Python: a LoftUp passed in keeps its
precision and place (the CLI's defaults, float32 and the auto device, converted it in place),
and a pipeline refused is told the arguments that compute its own features."""

from __future__ import annotations

import json
import re

import pytest
import torch
from PIL import Image

import loftup
from loftup.errors import LoftUpError, UsageError
from loftup.extract import OPTIONS_NAME, upsample_folder
from loftup.io import load_image_tensor


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "in").mkdir()
    torch.manual_seed(0)
    pixels = (torch.rand(20, 24, 3) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(tmp_path / "in" / "x.png")
    return tmp_path


def test_a_loftup_passed_in_keeps_its_precision_and_is_recorded_in_it(folder):
    torch.manual_seed(0)
    m = loftup.LoftUp(dim=32).to(torch.bfloat16).train()
    before = [p.dtype for p in m.parameters()]
    upsample_folder(folder / "in", folder / "out", model=m, backbone="dinov2_tiny",
                    backbone_size=28, progress=False)  # fmt: skip
    assert [p.dtype for p in m.parameters()] == before  # all float32 after the call
    assert not m.training  # eval mode, as the docstring says (as load_pipeline's)
    record = json.loads((folder / "out" / OPTIONS_NAME).read_text())
    assert record["dtype"] == "bfloat16" and record["save_dtype"] == "bfloat16"
    assert torch.load(folder / "out" / "x.pt", weights_only=True).dtype == torch.bfloat16


def test_a_pipeline_is_told_the_arguments_that_give_its_own_features(folder):
    torch.manual_seed(0)
    pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28,
                                dtype="bfloat16", device="cpu")  # fmt: skip
    image = load_image_tensor(folder / "in" / "x.png")[None]
    expected = pipe(image)[1][0]
    with pytest.raises(UsageError) as caught:
        upsample_folder(folder / "in", folder / "out", model=pipe, progress=False)
    told = str(caught.value)
    assert ("model=pipeline.upsampler, backbone=pipeline.featurizer, backbone_size=28" in told
            and "no device or dtype" in told), told  # fmt: skip
    upsample_folder(folder / "in", folder / "out", model=pipe.upsampler,
                    backbone=pipe.featurizer, backbone_size=28, progress=False)  # fmt: skip
    assert torch.equal(torch.load(folder / "out" / "x.pt", weights_only=True), expected)
    assert torch.equal(pipe(image)[1][0], expected)  # the pipeline itself unchanged
    assert {p.dtype for p in pipe.featurizer.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("model", [None, torch.nn.Linear(2, 2)])
def test_a_model_that_is_none_is_told_a_loftup_is_taken_too(folder, model):
    """upsample_folder(model=None / a module) was told the names and paths it takes, not that
    a LoftUp is taken too."""
    with pytest.raises(UsageError, match=r"^model is a released .* or a LoftUp, got "):
        upsample_folder(folder / "in", folder / "out", model=model, progress=False)
    assert not (folder / "out").exists()


def test_a_resume_with_another_backbone_passed_in_is_refused_naming_it(folder):
    """A Featurizer passed in had neither its weights nor its precision recorded: a resume
    with another one wrote its features beside the first one's under one record."""
    torch.manual_seed(0)
    pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28)
    kw = dict(model=pipe.upsampler, backbone_size=28, progress=False)
    upsample_folder(folder / "in", folder / "out", backbone=pipe.featurizer, **kw)
    other = pipe.featurizer.to(torch.bfloat16)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)
    with pytest.raises(LoftUpError) as caught:
        upsample_folder(folder / "in", folder / "out", backbone=other, resume=True, **kw)
    told = str(caught.value)
    assert "backbone_sha256 " in told and "backbone_dtype 'float32' there, 'bfloat16' now" in told


@pytest.mark.parametrize("device", [None, "cpu"])
def test_a_loftup_on_meta_is_told_its_weights_are_on_meta(folder, device):
    """With no device it was told "device meta is not supported ... use auto, cpu, cuda", a
    device it never passed; with one, NotImplementedError "Cannot copy out of meta tensor"
    from deep inside, as its weights' digest was taken."""
    with torch.device("meta"):
        up = loftup.LoftUp(dim=32)
    with pytest.raises(UsageError, match="^the model has weights on the meta device"):
        upsample_folder(folder / "in", folder / "out", model=up, backbone="dinov2_tiny",
                        backbone_size=28, device=device, progress=False)  # fmt: skip
    assert not (folder / "out").exists()


def test_a_refused_run_leaves_the_modules_passed_in_as_they_were(folder):
    """A run refused by the folder's record (another dtype) had already converted the LoftUp
    and the Featurizer passed in, in place and lossily; the original call, as the refusal
    advises, was then refused too (other weights). The record is settled first now: each
    module's precision, device, mode and weights are as given, and the original call goes on."""
    torch.manual_seed(0)
    up, bb = loftup.LoftUp(dim=32), loftup.get_featurizer("dinov2_tiny")
    kw = dict(model=up, backbone=bb, backbone_size=28, progress=False)
    (folder / "in" / "y.png").write_bytes((folder / "in" / "x.png").read_bytes())
    upsample_folder(folder / "in", folder / "out", **kw)
    (folder / "out" / "x.pt").unlink()  # as if interrupted (y.pt kept)
    up.train()
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (up, bb)]
    with pytest.raises(LoftUpError, match="dtype 'float32' there, 'bfloat16' now"):
        upsample_folder(folder / "in", folder / "out", dtype="bfloat16", resume=True, **kw)
    assert up.training  # not even put in eval mode
    for m, state in zip((up, bb), before):
        now = m.state_dict()
        for k, v in state.items():
            assert (now[k].dtype, now[k].device) == (v.dtype, v.device), k
            assert torch.equal(now[k], v), k
    assert upsample_folder(folder / "in", folder / "out", resume=True, **kw).done == 1


def test_the_record_says_the_precision_a_backbone_by_name_ran_in(folder):
    """A bfloat16 LoftUp with a backbone by name and no dtype: the backbone, loaded as
    load_pipeline loads it, runs in float32, and the record said dtype bfloat16 alone; a resume
    with dtype='bfloat16', which runs the backbone in bfloat16 (other features), was taken for
    the same options. Now backbone_dtype records it and tells them apart; a record before it
    (backbone_dtype None: the run's dtype) still goes on."""
    torch.manual_seed(0)
    (folder / "in" / "y.png").write_bytes((folder / "in" / "x.png").read_bytes())
    kw = dict(backbone="dinov2_tiny", backbone_size=28, progress=False)
    up = loftup.LoftUp(dim=32).to(torch.bfloat16)
    upsample_folder(folder / "in", folder / "out", model=up, **kw)
    record = json.loads((folder / "out" / OPTIONS_NAME).read_text())
    assert (record["dtype"], record["backbone_dtype"]) == ("bfloat16", "float32")
    (folder / "out" / "x.pt").unlink()
    told = "(backbone_dtype 'float32' there, 'bfloat16' now)"
    with pytest.raises(LoftUpError, match=f"options {re.escape(told)}"):
        upsample_folder(
            folder / "in", folder / "out", model=up, dtype="bfloat16", resume=True, **kw
        )
    assert upsample_folder(folder / "in", folder / "out", model=up, resume=True, **kw).done == 1
    # such a record before backbone_dtype was recorded for every run does not say which: as
    # before, either goes on
    record = json.loads((folder / "out" / OPTIONS_NAME).read_text())
    (folder / "out" / OPTIONS_NAME).write_text(json.dumps({**record, "backbone_dtype": None}))
    (folder / "out" / "x.pt").unlink()
    again = upsample_folder(folder / "in", folder / "out", model=up, resume=True, **kw)
    assert again.done == 1
    # a float32 run's record as written before backbone_dtype was recorded for every run
    upsample_folder(folder / "in", folder / "f32", model=up.float(), **kw)
    record = json.loads((folder / "f32" / OPTIONS_NAME).read_text())
    assert record["backbone_dtype"] == "float32"
    (folder / "f32" / OPTIONS_NAME).write_text(json.dumps({**record, "backbone_dtype": None}))
    (folder / "f32" / "x.pt").unlink()
    assert upsample_folder(folder / "in", folder / "f32", model=up, resume=True, **kw).done == 1
