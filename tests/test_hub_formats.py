"""The layouts an upsampler's weights come in (the paper's training checkpoint, the hub's, safetensors,
save_pretrained's), their conversion, and the dtype and device they load to."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from hub_helpers import _offline_cache, _own_upsampler
from loftup import CheckpointError, LoftUp, load_upsampler
from loftup.hub import native_to_reference, training_to_reference
from reference_files import REFERENCE_STATE


def _case(reference_cases, name="square"):
    return reference_cases[f"{name}.lr_feats"], reference_cases[f"{name}.image"]


def _max_diff(model, reference_cases, name="square"):
    lr, image = _case(reference_cases, name)
    with torch.no_grad():
        return (model(lr, image) - reference_cases[f"{name}.output"]).abs().max().item()


def test_training_checkpoint_layout(tmp_path, reference_state, reference_cases):
    state = {k: v for k, v in reference_state.items() if k.startswith("upsampler.")}
    state["model.1.norm.weight"] = reference_state["channelnorm.norm.weight"]
    state["model.1.norm.bias"] = reference_state["channelnorm.norm.bias"]
    state["downsampler.attention_net.weight"] = torch.randn(1, 384)  # training-only
    state["model.0.backbone.weight"] = torch.randn(3)
    ckpt = {"state_dict": state, "epoch": 3, "optimizer_states": [{"lr": 1e-4}]}
    torch.save(ckpt, tmp_path / "last.ckpt")
    model = load_upsampler(tmp_path / "last.ckpt")
    assert _max_diff(model, reference_cases) <= 1e-4


def test_training_conversion_is_a_named_pure_function(reference_state):
    train = {
        "upsampler.x": torch.ones(1),
        "model.1.norm.weight": torch.ones(2),
        "other": torch.ones(3),
    }
    assert set(training_to_reference(train)) == {"upsampler.x", "channelnorm.norm.weight"}
    with pytest.raises(CheckpointError, match="model.1.norm"):
        training_to_reference({"upsampler.x": torch.ones(1)})
    # the channel norm under both names: a diverged run's NaN in both is one weight (it was
    # "there twice with other values", NaN equal to nothing), other values are refused
    nan = torch.tensor([1.0, float("nan")])
    both = {"upsampler.x": torch.ones(1), "model.1.norm.weight": nan}
    same = training_to_reference({**both, "channelnorm.norm.weight": nan.clone()})
    assert same["channelnorm.norm.weight"][1].isnan()
    with pytest.raises(CheckpointError, match="there twice"):
        training_to_reference({**both, "channelnorm.norm.weight": torch.tensor([2.0, 0.0])})


def test_safetensors_file(tmp_path, reference_state, reference_cases):
    save_file(reference_state, tmp_path / "w.safetensors")
    assert _max_diff(load_upsampler(tmp_path / "w.safetensors"), reference_cases) <= 1e-4


def test_save_pretrained_round_trip_is_bit_identical(tmp_path, reference_cases):
    torch.manual_seed(1)
    model = LoftUp(dim=384).eval()
    model.save_pretrained(tmp_path / "m", backbone="dinov2_vits14")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    again = load_upsampler(tmp_path / "m")
    assert again.backbone == "dinov2_vits14"
    lr, image = _case(reference_cases, "nonsquare")
    with torch.no_grad():
        assert torch.equal(model(lr, image), again(lr, image))


def test_save_pretrained_keeps_non_default_architecture(tmp_path):
    model = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=8, coords=False, attention_window=3).eval()
    model.save_pretrained(tmp_path)
    again = load_upsampler(tmp_path)
    assert again.config == model.config


def test_dtype_and_device_arguments(reference_cases):
    model = load_upsampler(REFERENCE_STATE, device="cpu", dtype=torch.bfloat16)
    assert model.stem.conv1.weight.dtype == torch.bfloat16
    lr, image = _case(reference_cases)
    with torch.no_grad():
        out = model(lr, image)  # float32 inputs are taken as they are
    assert out.dtype == torch.bfloat16 and out.shape == reference_cases["square.output"].shape
    # accurate to bf16 rounding: BatchNorm statistics and Fourier frequencies/phases stay in
    # float32 (in bf16 they gave a mean deviation of 0.2 and a max of 1.5 here)
    assert model.stem.bn1.running_var.dtype == model.image_encoder.freqs.dtype == torch.float32
    dev = (out.float() - reference_cases["square.output"]).abs()
    assert dev.mean().item() <= 0.01 and dev.max().item() <= 0.1


def test_dtype_by_name_as_load_pipeline_takes_it():
    from loftup.errors import UsageError

    model = load_upsampler(REFERENCE_STATE, dtype="bf16")
    assert model.stem.conv1.weight.dtype == torch.bfloat16
    with pytest.raises(UsageError, match="unknown precision 'int8'; choose one of float32"):
        load_upsampler(REFERENCE_STATE, dtype="int8")


def test_export_to_reference_layout_loads_back(tmp_path, reference_cases):
    torch.manual_seed(2)
    model = LoftUp().eval()
    torch.save(native_to_reference(model.state_dict()), tmp_path / "pytorch_model.bin")
    again = load_upsampler(tmp_path)  # a folder holding a hub-layout pytorch_model.bin
    lr, image = _case(reference_cases)
    with torch.no_grad():
        assert torch.equal(model(lr, image), again(lr, image))


def test_a_state_without_batchnorm_counters_loads(tmp_path, reference_state):
    """BatchNorm's num_batches_tracked is never read at inference: a state dict without it (a
    converter that keeps float tensors only) loads, with every weight the same."""
    from safetensors.torch import save_file

    stripped = {k: v for k, v in reference_state.items() if "num_batches_tracked" not in k}
    assert len(stripped) == len(reference_state) - 2
    save_file(stripped, tmp_path / "w.safetensors")
    got = load_upsampler(tmp_path / "w.safetensors").state_dict()
    want = load_upsampler(REFERENCE_STATE).state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], v) for k, v in want.items() if "num_batches_tracked" not in k)


def test_bare_weights_are_read_with_4_heads_unless_told_and_a_record_decides(tmp_path, monkeypatch):
    """The weights' shapes do not say the heads: a 2-head upsampler's state dict without a
    record (the hub layout, a plain .pt) loaded as a 4-head one, another function, with no way
    to say otherwise. ``num_heads=`` says it; where a record exists (save_pretrained, a
    released name) it decides and a contradicting ``num_heads`` is refused by name."""
    from loftup.errors import UsageError

    model, folder, (lr, image) = _own_upsampler(tmp_path)
    torch.save(native_to_reference(model.state_dict()), tmp_path / "pytorch_model.bin")
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with torch.no_grad():
        want = model(lr, image)
        for bare in (tmp_path / "pytorch_model.bin", tmp_path / "plain.pt"):
            assumed = load_upsampler(bare)  # the paper's 4: documented, and not this model
            assert assumed.config.num_heads == 4
            assert not torch.allclose(assumed(lr, image), want)
            told = load_upsampler(bare, num_heads=2)
            assert told.config == model.config and torch.equal(told(lr, image), want)
        # heads that do not divide the token width (32 + 4 x 5): the ones that do
        with pytest.raises(UsageError, match=r"num_heads=3 does not divide .* one of 1, 2, 4, 13"):
            load_upsampler(tmp_path / "plain.pt", num_heads=3)
        with pytest.raises(UsageError, match="num_heads must be an integer >= 1, got 0"):
            load_upsampler(tmp_path / "nothere.pt", num_heads=0)  # before any file is read
        # a record decides: the same number is fine, another is refused
        assert torch.equal(load_upsampler(folder, num_heads=2)(lr, image), want)
    with pytest.raises(UsageError) as e:
        load_upsampler(folder / "model.safetensors", num_heads=4)
    assert str(e.value) == (
        f"num_heads=4 contradicts {folder / 'model.safetensors'}, which has num_heads=2 in its "
        "record (its weights were trained with them): leave num_heads out"
    )
    _offline_cache(monkeypatch, tmp_path / "hub")  # nothing cached: said before it is looked for
    with pytest.raises(UsageError) as e:
        load_upsampler("loftup_dinov2s", num_heads=2)
    assert str(e.value).startswith(
        "num_heads=2 contradicts loftup_dinov2s, which has the paper's 4 heads"
    )
