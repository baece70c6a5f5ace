"""Tensors of a dtype with no storage class of its own (float8, uint16, complex32: torch.save
pickles them by ``torch._utils._rebuild_tensor_v3`` and ``torch.storage.UntypedStorage``, its
size in bytes) had no member-size check (a mapped load read past a short member), and a file
of them at protocol 4 was said to hold objects, with no line. They load as torch.load's weights
only load reads them, are checked as other tensors are, and are said as their protocol."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch

from loftup import CheckpointError
from loftup.hub.files import read_weights, torch_load
from test_hub_mapped_load import _resize_member

pytestmark = pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")


def _state() -> dict:
    """One tensor of each kind, those the torch here saves (torch.save of uint16 came with
    torch 2.5: 2.4's is a KeyError of its dtype)."""
    state = {
        "f8": torch.arange(8, dtype=torch.uint8).view(torch.float8_e4m3fn),
        "u16": torch.arange(4, dtype=torch.int16).view(torch.uint16),
        "c32": torch.arange(6, dtype=torch.float16).view(torch.complex32),
        "f32": torch.full((4,), 7.0),
    }
    return {k: v for k, v in state.items() if _saves(v)}


def _saves(tensor: torch.Tensor) -> bool:
    try:
        torch.save(tensor, io.BytesIO())
    except KeyError:  # (an older torch's serialization does not know its dtype)
        return False
    return True


def _same(loaded: dict, expected: dict) -> None:
    assert loaded.keys() == expected.keys()
    for k, v in expected.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape
        assert torch.equal(loaded[k].view(torch.uint8), v.view(torch.uint8)), k


def test_they_load_as_torch_loads_them(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(_state(), path)
    expected = torch.load(path, weights_only=True)
    _same(read_weights(path), expected)
    _same(torch_load(path, fix="x", mmap=True), expected)


@pytest.mark.parametrize("size", [0, 2])
def test_a_short_member_is_refused_mapped_or_whole(tmp_path, size):
    """The float8 tensor's member (8 bytes) said 0 or 2 bytes long: the mapped load took 8
    bytes at its offset, its neighbour's among them."""
    path = tmp_path / "w.pt"
    torch.save(_state(), path)
    with zipfile.ZipFile(path) as z:
        assert len(z.read(next(n for n in z.namelist() if n.endswith("/data/0")))) == 8  # f8's
    _resize_member(path, "/data/0", size)
    for load in (read_weights, lambda p: torch_load(p, fix="x", mmap=True)):
        with pytest.raises(CheckpointError) as e:
            load(path)
        assert f"/data/0' holds {size} bytes, where its tensor needs 8" in str(e.value)


def test_a_file_of_them_at_protocol_4_is_said_as_its_protocol_and_its_line_loads(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(_state(), path, pickle_protocol=4)
    with pytest.raises(CheckpointError) as e:
        read_weights(path)
    said = str(e.value)
    assert said.startswith(f"refusing to load {path}: it was pickled with protocol 4, which")
    line, out = said.split("in Python: ")[1].rsplit(", then load ", 1)
    exec(line, {"torch": torch})
    _same(read_weights(out), _state())
