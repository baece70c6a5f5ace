"""loftup.upsample and load_pipeline: what they check, once, and which weights they run (the
images and sizes a pipeline takes: test_api_images.py; the backbone given against the one the
upsampler was trained on: test_api_backbones.py)."""

from __future__ import annotations

import os

import pytest
import torch

import loftup
import loftup.api
import loftup.pipeline

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models on shared cores


def _save(folder, seed: int) -> None:
    """A random upsampler for the tiny backbone in ``folder``, its files and the folder all
    stamped with one time: as two writes within a coarse file system clock's tick."""
    torch.manual_seed(seed)
    loftup.LoftUp(dim=32).save_pretrained(folder, backbone="dinov2_tiny")
    for path in (folder, *folder.iterdir()):
        os.utime(path, ns=(10**18, 10**18))


@pytest.fixture
def image():
    return torch.rand(3, 30, 40, generator=torch.Generator().manual_seed(0))


def test_a_folder_written_again_is_run_with_its_new_weights(tmp_path, image):
    """upsample keeps the last pipeline for the next call: a folder that save_pretrained (or a
    training run) wrote again since, under the same path, gave the old weights' features."""
    folder = tmp_path / "up"
    _save(folder, 0)
    first = loftup.upsample(image, model=folder, backbone_size=28)
    _save(folder, 1)
    second = loftup.upsample(image, model=folder, backbone_size=28)
    fresh = loftup.upsample(image, model=loftup.load_pipeline(folder, backbone_size=28))
    assert not torch.equal(first, second)
    assert torch.equal(second, fresh)


def test_a_relative_path_is_the_folder_it_names_from_where_it_is_used(tmp_path, image, monkeypatch):
    """``upsample(img, "up")`` in two folders names two upsamplers, not the cached first one."""
    for name, seed in (("a", 0), ("b", 1)):
        _save(tmp_path / name / "up", seed)
    monkeypatch.chdir(tmp_path / "a")
    in_a = loftup.upsample(image, model="up", backbone_size=28)
    monkeypatch.chdir(tmp_path / "b")
    in_b = loftup.upsample(image, model="up", backbone_size=28)
    assert not torch.equal(in_a, in_b)
    expected = loftup.upsample(image, model=loftup.load_pipeline("up", backbone_size=28))
    assert torch.equal(in_b, expected)


def test_the_device_is_resolved_once_per_call(tmp_path, image, monkeypatch):
    """upsample and load_pipeline check the device once at their boundary; the loaders under
    them (the upsampler's, the backbone's) are given it resolved (it was asked up to 4 times)."""
    folder = tmp_path / "up"
    _save(folder, 0)
    calls = []
    real = loftup.api.resolve_device

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    from loftup.hub import loading

    # every name the callers look it up by (checked_options': pipeline_checks; the
    # featurizers' loader: loftup.checks, at the call)
    for module in (loftup.api, loftup.pipeline_checks, loftup.checks, loading):
        monkeypatch.setattr(module, "resolve_device", counted)
    loftup.load_pipeline(folder, backbone_size=28, device="cpu")
    assert calls == [("cpu",)]
    calls.clear()
    loftup.upsample(image, model=folder, backbone_size=28, device="cpu")
    assert calls == [("cpu",)]


def test_a_model_of_the_wrong_kind_is_one_line_saying_where_it_goes(tmp_path, image):
    """A backbone, a pipeline, a tensor passed as ``model``: the error printed the object's
    repr, 30 to 60 lines of modules, and no word of where the thing passed belongs."""
    from loftup.errors import UsageError

    pipeline = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny")
    cases = [
        (lambda: loftup.load_pipeline(pipeline.featurizer), "backbone=", "Dinov2Featurizer"),
        (lambda: loftup.upsample(image, model=pipeline.featurizer), "backbone=", "dinov2_tiny"),
        (lambda: loftup.load_pipeline(pipeline), "upsample(image, model=pipeline)", "pipeline"),
        (lambda: loftup.upsample(image, model=torch.zeros(8, 8)), "a LoftUp", "Tensor"),
        (lambda: loftup.load_pipeline(torch.nn.Linear(2, 2)), "a LoftUp", "Linear"),
    ]
    for call, fix, named in cases:
        with pytest.raises(UsageError) as told:
            call()
        message = str(told.value)
        assert "\n" not in message and len(message) < 300, message
        assert fix in message and named in message, message
    # a module or a tensor: what model may be, in the same words as load_upsampler's source
    kinds = (
        "a released upsampler's name (e.g. loftup_dinov2s), a weights file or folder, a hub id "
        "ORG/NAME"
    )
    with pytest.raises(UsageError, match=r"^model is .*, got a Tensor of shape \(8, 8\)$") as told:
        loftup.upsample(image, model=torch.zeros(8, 8))
    assert str(told.value).startswith(f"model is {kinds}, a LoftUp or a FeaturePipeline, got")
    with pytest.raises(UsageError) as told:
        loftup.load_pipeline(torch.nn.Linear(2, 2))
    assert str(told.value) == f"model is {kinds} or a LoftUp, got Linear(...)"


@pytest.mark.slow  # a 224 x 224 x 384 output on one thread: about 16 s here
def test_readme_first_example_runs_offline_from_the_cache(tmp_path, monkeypatch, reference_dir):
    """The block a newcomer copies first (README, *Use*), verbatim: ``loftup_dinov2s`` found
    in the Hugging Face cache with HF_HUB_OFFLINE=1 (random weights in the released layout,
    the reference fixture's), then a forward of the shapes the block states."""
    from huggingface_hub import constants

    from hub_builders import make_hf_cache
    from processes import REPO
    from reference_files import REFERENCE_STATE

    text = (REPO / "README.md").read_text()
    code = text.split("\n## Use\n")[1].split("```python\n")[1].split("```")[0]
    make_hf_cache(tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": REFERENCE_STATE})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    scope = {}
    exec(compile(code, "README.md (Use)", "exec"), scope)
    assert scope["model"].backbone == "dinov2_vits14" and not scope["model"].training
    assert scope["hr_feats"].shape == (1, 384, 224, 224)
    assert torch.isfinite(scope["hr_feats"]).all()
