"""A torch file pickled with a protocol torch's weights-only loader does not read (0, 1, 4, 5:
``torch.save(..., pickle_protocol=4)``, ``pickle.dump``) was blamed as "instructions beyond
plain tensors ... re-download it", "text (an error reply?)" or "neither a zip archive nor a
pickle": it is said as its protocol, with the way out that saves it again, which loads."""

from __future__ import annotations

import io
import pickle

import pytest
import torch

from loftup import CheckpointError, LoftUp, load_upsampler
from loftup.hub.files import torch_load
from loftup.hub.pickle_walk import Walk
from loftup.model_config import LoftUpConfig
from test_hub_way_out import same_upsampler


def _refusal(load, path) -> str:
    with pytest.raises(CheckpointError) as e:
        load(path)
    return str(e.value)


def _saver(protocol: int, zipped: bool = True):
    def save(obj, path):
        torch.save(obj, path, pickle_protocol=protocol, _use_new_zipfile_serialization=zipped)

    return save


_SAVES = {  # id: (protocol, save)
    "zip-p4": (4, _saver(4)),
    "zip-p5": (5, _saver(5)),
    "zip-p1": (1, _saver(1)),
    "old-p4": (4, _saver(4, zipped=False)),
    "old-p1": (1, _saver(1, zipped=False)),
}


def _dumped(obj, path):
    path.write_bytes(pickle.dumps(obj))


@pytest.mark.parametrize(
    "whole, protocol, save",
    [(w, *s) for w in (False, True) for s in _SAVES.values()] + [(True, None, _dumped)],
    ids=[f"{k}-{w}" for w in ("state-dict", "module") for k in _SAVES] + ["pickle-dump-module"],
)
def test_a_file_of_another_protocol_is_said_so_and_its_line_loads(tmp_path, protocol, save, whole):
    """Its protocol is said (a module's objects, which could run code, before it), and the line
    told (torch.load, or pickle.load for pickle.dump's file, which torch.load cannot read)
    writes a file that loads: the module's a LoftUp's with its config (at protocol 1 pickled
    by copyreg._reconstructor, walked as a LoftUp). (pickle.dump's file of tensors holds
    objects: test_hub_pickle_plain.)"""
    upsampler = LoftUp(dim=8, n_freqs=2, num_heads=2).eval()
    path = tmp_path / "w.pth"
    save(upsampler if whole else upsampler.state_dict(), path)
    msg = _refusal(load_upsampler, path)
    said = msg.removeprefix(f"refusing to load {path}: ")
    if whole:  # its objects said first, whatever the protocol: they could run code
        assert said.startswith("it holds pickled objects that are not plain tensors")
    else:
        assert said.startswith(f"it was pickled with protocol {protocol}, which torch's weights")
    assert "\n" not in msg
    line, out = msg.split("in Python: ")[1].rsplit(", then load ", 1)
    assert ('"model_config": m.config.to_dict()' in line) is whole
    exec(line, {"torch": torch})
    loaded = load_upsampler(out)
    assert torch.equal(loaded.stem.conv1.weight, upsampler.stem.conv1.weight)
    if whole:
        same_upsampler(loaded, upsampler)


@pytest.mark.parametrize("whole", [False, True], ids=["state-dict", "module"])
@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "old"])
def test_protocol_0_is_said_as_such_without_a_line_that_fails(tmp_path, zipped, whole):
    """The old format at protocol 0 was "text (an error reply?)"; no torch.load reads protocol
    0 (its tensors' ids are text): said so, with no line that would fail (a module's objects
    said first)."""
    path = tmp_path / "w.pth"
    upsampler = LoftUp(dim=8, n_freqs=2)
    _saver(0, zipped)(upsampler if whole else upsampler.state_dict(), path)
    msg = _refusal(load_upsampler, path)
    said = "it holds pickled objects" if whole else "it was pickled with protocol 0, "
    assert msg.startswith(f"refusing to load {path}: {said}")
    assert "torch.load reads no file of protocol 0 either" in msg and "in Python" not in msg


def test_a_file_not_ones_own_is_told_to_be_saved_again(tmp_path):
    """A file whose fix is another's (a training checkpoint) is told to save it again."""
    path = tmp_path / "w.pth"
    _saver(4)({"w": torch.zeros(2)}, path)
    msg = _refusal(lambda p: torch_load(p, fix="get it again"), path)
    assert msg == (
        f"refusing to load {path}: it was pickled with protocol 4, which torch's weights-only "
        "loader does not read (torch.save writes protocol 2 unless given pickle_protocol=); it "
        "was not loaded; save it again with torch.save's default protocol"
    )


def test_an_object_made_by_copyregs_reconstructor_is_walked_as_its_class():
    """Protocols 0 and 1 make an object by copyreg._reconstructor(cls, ...): it was walked as an
    object of copyreg's, and a LoftUp saved so was told the general words."""
    for protocol in (0, 1):
        top = Walk(io.BytesIO(pickle.dumps(LoftUpConfig(), protocol=protocol))).next()
        assert (top.kind, top.value) == ("made", ("loftup.model_config", "LoftUpConfig"))


@pytest.mark.parametrize(
    "tensor",
    [torch.eye(3).to_sparse(), torch.empty(3, 2, device="meta")],
    ids=["sparse", "meta"],
)
def test_sparse_and_meta_tensors_at_protocol_4_are_said_as_their_protocol(tmp_path, tensor):
    """torch's weights-only loader reads a sparse or meta tensor (its own rebuilds, a layout by
    name) at protocol 2: at 4 it was said to hold objects that "could run code", with no line
    that saves it again; said as its protocol now, and the line told loads."""
    from loftup.hub.files import read_weights

    path = tmp_path / "w.pt"
    torch.save({"t": tensor}, path, pickle_protocol=4)
    msg = _refusal(read_weights, path)
    assert msg.startswith(f"refusing to load {path}: it was pickled with protocol 4, which")
    line, out = msg.split("in Python: ")[1].rsplit(", then load ", 1)
    exec(line, {"torch": torch})
    loaded = read_weights(out)["t"]
    assert (loaded.layout, loaded.device, loaded.shape) == (
        tensor.layout,
        tensor.device,
        tensor.shape,
    )
    if tensor.is_sparse:
        assert torch.equal(loaded.to_dense(), tensor.to_dense())
