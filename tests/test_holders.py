"""Which key of a checkpoint holds its LoftUp (loftup.holders): two holders of one LoftUp's
weights load it, and telling them the same costs a load nothing it need not read."""

from __future__ import annotations

import pytest
import torch

from loftup import LoftUp, load_upsampler


def test_one_state_dict_under_two_holders_loads_without_its_values_compared(tmp_path, monkeypatch):
    """A file holding one state dict under "model" and "state_dict" (the same dict, or its
    module's weights saved twice, of the DDP module too, which torch.save stores once) had its
    two copies compared value by value three times a load (a 60 MB file's load took half as
    long again). One dict, or views of one memory, are the same weights without a look."""
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    state = model.state_dict()
    files = {
        "one_dict": {"model": state, "state_dict": state},
        "twice": {"model": model.state_dict(), "state_dict": model.state_dict()},
        "ddp": {"model": state, "state_dict": {"module." + k: v for k, v in state.items()}},
    }
    compared = []
    equal = torch.equal

    def counted(a, b):
        compared.append(a.numel())
        return equal(a, b)

    for name, obj in files.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        monkeypatch.setattr(torch, "equal", counted)
        got = load_upsampler(tmp_path / f"{name}.pt", num_heads=2)
        monkeypatch.setattr(torch, "equal", equal)
        assert compared == [], (name, len(compared))
        assert all(equal(v, state[k]) for k, v in got.state_dict().items()), name


def test_a_diverged_runs_weights_under_two_holders_are_said_to_hold_nan(tmp_path):
    """A state dict holding a NaN (a run that diverged), saved under "model" and, copied, under
    "state_dict", was refused as "2 LoftUps of other weights" (NaN equals nothing), with a
    line to keep one whose file was then refused for its NaN: the load says the NaN, and what
    to do, as it does for the file of one holder."""
    import copy

    from loftup import CheckpointError

    state = LoftUp(dim=8, num_heads=2, n_freqs=2).state_dict()
    state["head.conv.weight"][0, 0] = float("nan")
    torch.save({"model": state, "state_dict": copy.deepcopy(state)}, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError) as e:
        load_upsampler(tmp_path / "nan.pt", num_heads=2)
    assert "hold NaN or infinite values (first: head.conv.weight)" in str(e.value), str(e.value)
    other = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"model": state, "state_dict": other}, tmp_path / "two.pt")  # still two
    with pytest.raises(CheckpointError, match="holds 2 LoftUps of other weights"):
        load_upsampler(tmp_path / "two.pt", num_heads=2)


def test_a_holders_loftup_beside_an_ema_copy_under_a_key_of_its_own_is_the_one_loaded(tmp_path):
    """timm's {"state_dict": A, "state_dict_ema": B}, {"model": A, "model_ema": B} and loftup
    train's stage-2 checkpoint ("model" beside its EMA "teacher") load A, as before holders
    read other keys: only where no holder holds a LoftUp is the one other key read, and two
    there refused. (Reading every key would refuse each as two LoftUps of other weights.)"""
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    state = model.state_dict()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    record = {"model_config": model.config.to_dict(), "backbone": "dinov2_tiny"}
    files = {
        "timm": {"state_dict": state, "state_dict_ema": ema, "epoch": 3},
        "timm_model": {"model": state, "model_ema": ema},
        "stage2": {"model": state, **record, "teacher": ema, "downsampler": {}, "step": 9},
    }
    for name, obj in files.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        got = load_upsampler(tmp_path / f"{name}.pt", num_heads=2)
        assert all(torch.equal(v, state[k]) for k, v in got.state_dict().items()), name


def test_two_holders_of_separate_copies_are_compared_once_a_load(tmp_path, monkeypatch):
    """A file holding a LoftUp under "model" and a copy of its DDP module under "state_dict"
    (separate tensors, the same values), loaded without a record of its heads: its holders
    were looked at twice (to convert it, then to tell its layout for the default heads'
    warning), so each weight was converted and compared twice. Once now."""
    model = LoftUp(dim=8, n_freqs=2).eval()
    state = model.state_dict()
    ddp = {"module." + k: v.clone() for k, v in state.items()}
    torch.save({"model": state, "state_dict": ddp}, tmp_path / "two.pt")
    compared = []
    equal = torch.equal

    def counted(a, b):
        compared.append(a.shape)
        return equal(a, b)

    monkeypatch.setattr(torch, "equal", counted)
    with pytest.warns(UserWarning, match="4"):  # the default heads' warning: its layout told
        got = load_upsampler(tmp_path / "two.pt")
    monkeypatch.setattr(torch, "equal", equal)
    assert len(compared) == len(state), (len(compared), len(state))
    assert all(equal(v, state[k]) for k, v in got.state_dict().items())


def test_a_negative_view_of_the_same_memory_is_other_weights(tmp_path):
    """A file whose "state_dict" holds negative views of the memory of its "model"'s weights
    (torch._neg_view: torch.save keeps the bit, torch.load gives it back), and one with such
    a copy as its "ema": one memory was taken for the same weights without reading them, so
    the first loaded "model" with no word of the other LoftUp and the second said nothing of
    its EMA copy. Their values are read: refused, and said."""
    import warnings

    from loftup import CheckpointError

    state = LoftUp(dim=8, num_heads=2, n_freqs=2).state_dict()
    neg = {k: torch._neg_view(v) if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"model": state, "state_dict": neg}, tmp_path / "two.pt")
    with pytest.raises(CheckpointError, match="holds 2 LoftUps of other weights"):
        load_upsampler(tmp_path / "two.pt", num_heads=2)
    torch.save({"model": state, "ema": neg}, tmp_path / "ema.pt")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        load_upsampler(tmp_path / "ema.pt", num_heads=2)
    assert any("of other weights under its key 'ema'" in str(w.message) for w in said)


def test_weights_on_the_meta_device_are_refused_in_a_line(tmp_path):
    """A state dict of a LoftUp built on the meta device (no values: saved before its weights
    were loaded), alone or under two holders, or beside real weights: each load was a traceback
    ("Tensor.item() cannot be called on meta tensors", or torch.equal's "no fake impl or Meta
    kernel registered"). The load says the weights hold no values, and what to do."""
    from loftup import CheckpointError

    with torch.device("meta"):
        meta = LoftUp(dim=8, num_heads=2, n_freqs=2).state_dict()
    real = LoftUp(dim=8, num_heads=2, n_freqs=2).state_dict()
    strided = {k: v.t().contiguous().t() if v.dim() == 2 else v for k, v in meta.items()}
    files = {
        "alone": meta,
        "two": {"model": meta, "state_dict": strided},
        "beside": {"model": meta, "ema": real},
    }
    for name, obj in files.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        with pytest.raises(CheckpointError, match="is on the meta device, with no values"):
            load_upsampler(tmp_path / f"{name}.pt", num_heads=2)
