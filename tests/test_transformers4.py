"""What transformers 4 (pyproject allows 4.56 on, and torch 2.4 and 2.5 need it) reports
otherwise than transformers 5, checked here with whichever is installed: a weight of another
shape is listed by name alone, and a weight stored as integers fails to copy instead of being
cast. (The whole suite runs with transformers 4.57 in tests/test_min_versions.py.)"""

from __future__ import annotations

import json

import pytest
import torch

from loftup.errors import CheckpointError
from loftup.featurizers import get_featurizer
from loftup.featurizers.hf_files import check_stored_floats, mismatch_shapes


@pytest.fixture
def tiny(tmp_path):
    """The tiny DINOv2 backbone's model and its save_pretrained folder."""
    model = get_featurizer("dinov2_tiny").model
    model.save_pretrained(tmp_path / "dino")
    return model, tmp_path / "dino"


def test_a_mismatch_listed_by_name_alone_is_said_with_both_shapes(tiny):
    """transformers 4's mismatched_keys hold names only: the message said 'e is ('n',) in the
    file, ('c',) by the config' (the name's first letters); the shapes are now read from the
    file's header and the model built from the config."""
    model, folder = tiny
    config = json.loads((folder / "config.json").read_text())
    config["mlp_ratio"] = config.get("mlp_ratio", 4) * 2
    wider = type(model)(type(model.config).from_dict(config))
    key = "encoder.layer.0.mlp.fc1.bias"
    stored, wanted = model.state_dict()[key].shape, wider.state_dict()[key].shape
    assert stored != wanted
    assert mismatch_shapes(key, folder, wider) == (key, tuple(stored), tuple(wanted))
    # transformers 5's (name, stored, wanted) is taken as it is
    assert mismatch_shapes((key, stored, wanted), folder, wider) == (key, (*stored,), (*wanted,))


def test_integer_weights_are_named_against_a_model_on_the_meta_device(tiny):
    """Where transformers 4 fails to copy an integer weight into a float parameter, the file is
    named from a skeleton on the meta device (no memory, no weights); float weights pass."""
    from safetensors.torch import load_file, save_file

    model, folder = tiny
    with torch.device("meta"):
        skeleton = type(model)(model.config)
    check_stored_floats(folder, skeleton, "dinov2_tiny")  # as saved: nothing to say
    state = load_file(folder / "model.safetensors")
    save_file({k: v.to(torch.int8) for k, v in state.items()}, folder / "model.safetensors")
    with pytest.raises(CheckpointError) as e:
        check_stored_floats(folder, skeleton, "dinov2_tiny")
    assert str(e.value).startswith(f"{folder / 'model.safetensors'} stores ")
    assert "as I8, not as floating-point numbers" in str(e.value)


def _as_transformers_4(monkeypatch, model, report):
    """The backbone's class loads as transformers 4 does, around the real from_pretrained:
    ``report(model, info)`` changes what it gives back, or raises what 4 raises."""
    load = type(model).from_pretrained  # bound to the class: called as cls.from_pretrained(...)

    def from_pretrained(*args, **kwargs):
        loaded, info = load(*args, **kwargs)
        report(loaded, info)
        return loaded, info

    monkeypatch.setattr(type(model), "from_pretrained", from_pretrained)


def test_the_loader_says_both_shapes_where_transformers_4_lists_names_alone(tiny, monkeypatch):
    """The loader, not only its helper: with transformers 4's names-only mismatched_keys, the
    message gives the weight's two shapes (it said "e is ('n',)")."""
    model, folder = tiny

    def names_alone(loaded, info):
        info["mismatched_keys"] = [m if isinstance(m, str) else m[0] for m in info["mismatched_keys"]]  # fmt: skip

    _as_transformers_4(monkeypatch, model, names_alone)
    config = json.loads((folder / "config.json").read_text())
    config["mlp_ratio"] = config.get("mlp_ratio", 4) * 2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=folder)
    wide = model.state_dict()["encoder.layer.0.mlp.fc1.bias"].shape[0]
    assert "does not describe its weights: encoder.layer.0.mlp.fc1.bias is " in str(e.value)
    assert f"({wide},) in the file, ({2 * wide},) by the config" in str(e.value)


def test_the_loader_names_integer_weights_where_transformers_4_fails_to_copy_them(
    tiny, monkeypatch
):
    """The loader, not only its helper: where transformers 4 fails to copy integer weights
    (its RuntimeError), the file is named, not "does not fit ... Error(s) in loading"."""
    from safetensors.torch import load_file, save_file

    model, folder = tiny

    def fails_to_copy(loaded, info):
        raise RuntimeError("Error(s) in loading state_dict for Dinov2Model:\n\tcopying a param")

    _as_transformers_4(monkeypatch, model, fails_to_copy)
    state = load_file(folder / "model.safetensors")
    save_file({k: v.to(torch.int8) for k, v in state.items()}, folder / "model.safetensors")
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=folder)
    assert str(e.value).startswith(f"{folder / 'model.safetensors'} stores ")
