"""A released name's cached file is the released architecture, or refused: its weights' shapes
say the architecture a file is read as, so a file with a whole block missing, or of another FFN
width, built a smaller (or other) model that loaded under the released name without a word."""

from __future__ import annotations

import pytest
import torch

from hub_builders import make_hf_cache
from loftup import CheckpointError, load_upsampler
from reference_files import REFERENCE_STATE


def _cached_as_released(tmp_path, monkeypatch, state: dict, blobs: bool = False):
    """``state`` saved as loftup_dinov2s's file in an offline Hugging Face cache (and as
    ``edited.bin`` beside it); the cached file's path (``blobs``: a link to a blob named by
    its sha256, as huggingface_hub writes it)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    torch.save(state, tmp_path / "edited.bin")
    files = {"pytorch_model.bin": tmp_path / "edited.bin"}
    cached = make_hf_cache(tmp_path / "hub", "haiwen/loftup-dinov2s", files, blobs=blobs)
    return cached / "pytorch_model.bin"


def _without_second_block(state: dict) -> dict:
    return {k: v for k, v in state.items() if ".ca_transformer.layers.1." not in k}


def _wider_ffn(state: dict) -> dict:
    wider = dict(state)
    for i in (0, 1):
        layer = f"upsampler.ca_transformer.layers.{i}.1.net"
        wider[f"{layer}.1.weight"] = torch.zeros(500, 404)
        wider[f"{layer}.1.bias"] = torch.zeros(500)
        wider[f"{layer}.4.weight"] = torch.zeros(404, 500)
    return wider


@pytest.mark.parametrize(
    "edit, odd",
    [(_without_second_block, "depth 1 (released: 2)"), (_wider_ffn, "mlp_dim 500 (released: 384)")],
    ids=["depth", "mlp_dim"],
)
def test_a_released_names_cached_file_of_another_architecture_is_refused(
    tmp_path, monkeypatch, edit, odd
):
    state = torch.load(REFERENCE_STATE, map_location="cpu", weights_only=True)
    file = _cached_as_released(tmp_path, monkeypatch, edit(state))
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    msg = str(e.value)
    assert msg.startswith(f"{file} holds a 384-d upsampler of {odd}, ")
    assert "parameters where loftup_dinov2s has 4,303,894: it is damaged or edited" in msg
    assert msg.endswith(f"delete {file} and run `loftup download loftup_dinov2s` to fetch it again")
    assert load_upsampler(tmp_path / "edited.bin").dim == 384  # a file of one's own: as it is


@pytest.mark.parametrize(
    "edit, said",
    [
        (
            lambda s: s.pop("upsampler.ca_transformer.layers.1.1.net.4.bias"),
            "missing weight 'blocks.1.ffn.fc2.bias' of shape (404,)",
        ),
        (
            lambda s: s.update({"upsampler.extra.weight": torch.zeros(3)}),
            "key 'upsampler.extra.weight' fits no known LoftUp reference layout",
        ),
        (lambda s: s.pop("channelnorm.norm.weight"), "missing weight 'channel_norm.weight' ("),
    ],
    ids=["missing", "unknown-key", "no-channel-norm"],
)
def test_a_released_names_cached_file_that_does_not_fit_names_the_file_to_fetch_again(
    tmp_path, monkeypatch, edit, said
):
    """A weight missing from (or one too many in) a released name's cached file was told
    under the name ("loftup_dinov2s: missing weight ...") with another file's fix: "save it
    again, or pass a released name", which was what had been passed. Now the cached file is
    named, with the blob to delete and the download that fetches it again."""
    state = torch.load(REFERENCE_STATE, map_location="cpu", weights_only=True)
    edit(state)
    file = _cached_as_released(tmp_path, monkeypatch, state)
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    msg = str(e.value)
    assert msg.startswith(f"{file}: {said}") and "save it again" not in msg
    assert msg.endswith(f"delete {file} and run `loftup download loftup_dinov2s` to fetch it again")


@pytest.mark.parametrize(
    "window, said", [(None, None), (3, "attention_window 3 (released: None)")], ids=["as", "window"]
)
def test_a_released_names_cached_file_of_loftup_train_layout_is_read_with_its_record(
    tmp_path, monkeypatch, window, said
):
    """A released name's cached file written as ``loftup train`` writes ({"model": ...,
    "model_config": {...}}) was an AttributeError ('dict' object has no attribute
    'check_heads'): its record, read for a file given as a path, was passed on as a dict.
    Now it is read; one that records another attention window is not the released file."""
    from loftup.convert import reference_to_native
    from loftup.model import LoftUpConfig

    state = torch.load(REFERENCE_STATE, map_location="cpu", weights_only=True)
    record = {**LoftUpConfig(dim=384).to_dict(), "attention_window": window}
    ckpt = {"model": reference_to_native(state), "model_config": record}
    file = _cached_as_released(tmp_path, monkeypatch, ckpt)
    if said is None:
        model = load_upsampler("loftup_dinov2s")
        assert model.config == LoftUpConfig(dim=384) and model.backbone == "dinov2_vits14"
        return
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    msg = str(e.value)
    assert msg.startswith(f"{file} holds a 384-d upsampler of {said}, ")
    assert msg.endswith(f"delete {file} and run `loftup download loftup_dinov2s` to fetch it again")


def test_a_released_names_cached_file_of_pickled_objects_is_told_to_fetch_it_again(
    tmp_path, monkeypatch
):
    """A released name's cached file refused for its pickled objects was told only "use
    weights saved as a plain state dict or as safetensors": not how, where its name was all
    that was given. Now it is told the blob to delete and the download, and no line of Python
    that keeps its weights: the released file is to be fetched, not kept."""
    import argparse

    state = torch.load(REFERENCE_STATE, map_location="cpu", weights_only=True)
    file = _cached_as_released(
        tmp_path, monkeypatch, {"state_dict": state, "hp": argparse.Namespace()}
    )
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    msg = str(e.value)
    assert (
        msg.startswith(f"refusing to load {file}: it holds pickled objects") and "trust" not in msg
    )
    assert msg.endswith(f"delete {file} and run `loftup download loftup_dinov2s` to fetch it again")


def test_a_released_names_blob_of_pickled_objects_as_fetched_is_the_hub_repos_own(
    tmp_path, monkeypatch
):
    """Its blob holding the bytes it is named by (as the hub served them) was told "a damaged
    download ... delete the blob and run loftup download", which fetches the same bytes (a
    loop): the hub repo is said to hold it so, with no download."""
    import argparse

    state = torch.load(REFERENCE_STATE, map_location="cpu", weights_only=True)
    obj = {"state_dict": state, "hp": argparse.Namespace()}
    file = _cached_as_released(tmp_path, monkeypatch, obj, blobs=True)
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    msg = str(e.value)
    assert msg.startswith(f"refusing to load {file}: it holds pickled objects")
    assert "hub repo haiwen/loftup-dinov2s holds pytorch_model.bin as it is here" in msg
    assert "loftup download" not in msg and "damaged" not in msg and "trust" not in msg
