"""A released name's cached file is the released architecture, or refused: its weights' shapes
say the architecture a file is read as, so a file with a whole block missing, or of another FFN
width, built a smaller (or other) model that loaded under the released name without a word."""

from __future__ import annotations

import pytest
import torch

from hub_builders import make_hf_cache
from loftup import CheckpointError, load_upsampler
from reference_files import REFERENCE_STATE


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
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    state = torch.load(REFERENCE_STATE, map_location="cpu", weights_only=True)
    torch.save(edit(state), tmp_path / "edited.bin")
    snap = make_hf_cache(
        tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": tmp_path / "edited.bin"}
    )
    file = snap / "pytorch_model.bin"
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    msg = str(e.value)
    assert msg.startswith(f"{file} holds a 384-d upsampler of {odd}, ")
    assert "parameters where loftup_dinov2s has 4,303,894: it is damaged or edited" in msg
    assert msg.endswith(f"delete {file} and run `loftup download loftup_dinov2s` to fetch it again")
    assert load_upsampler(tmp_path / "edited.bin").dim == 384  # a file of one's own: as it is
