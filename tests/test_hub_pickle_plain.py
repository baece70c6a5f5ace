"""What the walk takes for tensors and plain values: only what torch.save pickles a tensor with
(its rebuild functions, their arguments plain, their storage torch's persistent id), and the
values torch's weights-only loader reads (dtypes, Size, device). A file of protocol 4 whose
"tensor" was torch._tensor._rebuild_from_type_v2(os.system, ...) was said as its protocol alone,
with a line that ran os.system; a pickle.dump of tensors (torch.storage._load_from_bytes, an
unpickling with all code allowed) likewise; a train file holding a dtype was blamed for objects."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import pytest
import torch

from loftup import CheckpointError, LoftUp, load_upsampler
from loftup.hub import pickle_plain
from loftup.hub.pickle_walk import Walk
from test_hub_way_out import GENERAL


def _refusal(path) -> str:
    with pytest.raises(CheckpointError) as e:
        load_upsampler(path)
    return str(e.value)


class _Runs:
    """Pickled as torch._tensor._rebuild_from_type_v2(os.system, torch.Tensor, (command,), {})."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return torch._tensor._rebuild_from_type_v2, (os.system, torch.Tensor, (self.command,), {})


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_crafted_rebuild_is_objects_that_could_run_code(tmp_path, protocol):
    """The crafted value is said to be objects that could run code, whatever the protocol, and
    no line that loads the file is told but under the words of trust, in general words."""
    marker = tmp_path / "ran"
    state = LoftUp(dim=8, n_freqs=2, num_heads=2).state_dict()
    state["stem.conv1.weight"] = _Runs(f"touch {marker}")
    path = tmp_path / "w.pth"
    torch.save(state, path, pickle_protocol=protocol)
    msg = _refusal(path)
    assert msg.startswith(f"refusing to load {path}: it holds pickled objects that are not plain")
    assert f"if you trust the file (unpickling it runs its code), {GENERAL}" in msg
    assert "in Python: " not in msg and not marker.exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_pickle_dump_of_tensors_is_objects_that_could_run_code(tmp_path, protocol):
    """pickle.dump pickles a tensor's storage by torch.storage._load_from_bytes (a torch.load
    of any code): said as objects, whatever the protocol (at 5 it was told a resave line)."""
    path = tmp_path / "w.pth"
    path.write_bytes(pickle.dumps({"w": torch.zeros(2)}, protocol=protocol))
    msg = _refusal(path)
    assert msg.startswith(f"refusing to load {path}: it holds pickled objects that are not plain")
    assert 'load it in Python with __import__("pickle").load(' in msg and "in Python: " not in msg


def _top(obj, protocol: int = 4):
    saved = io.BytesIO()
    torch.save(obj, saved, pickle_protocol=protocol)
    with zipfile.ZipFile(saved) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    return Walk(io.BytesIO(pkl)).next()


def test_what_torch_save_writes_of_tensors_is_plain():
    """Tensors, parameters (of bfloat16 too), quantized tensors and a state dict's _metadata:
    tensors and plain; the same with a storage made other than by torch's persistent id, not."""
    q = torch.quantize_per_tensor(torch.zeros(2), 0.1, 0, torch.quint8)
    bf16 = torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))
    top = _top({"t": torch.zeros(2), "p": bf16, "q": q, "sd": torch.nn.Linear(2, 2).state_dict()})
    assert all(pickle_plain.is_tensor(top.items[k]) for k in "tpq")
    assert pickle_plain.plain(top, tensors=True) and not pickle_plain.plain(top)
    dumped = Walk(io.BytesIO(pickle.dumps(torch.zeros(2), protocol=4))).next()
    assert dumped.value == ("torch._utils", "_rebuild_tensor_v2") and not pickle_plain.is_tensor(
        dumped
    )


def test_values_torchs_loader_reads_are_plain_and_only_the_protocol_is_said(tmp_path):
    """A train file of protocol 4 holding a dtype, a Size and a device (read at protocol 2 by
    torch's weights-only loader) is said as its protocol, and the line told loads; a function
    named beside them is not plain."""
    upsampler = LoftUp(dim=8, n_freqs=2, num_heads=2).eval()
    extra = {"dtype": torch.bfloat16, "shape": torch.Size([1, 8]), "on": torch.device("cpu")}
    path = tmp_path / "w.pt"
    ck = {"model": upsampler.state_dict(), "model_config": upsampler.config.to_dict(), **extra}
    torch.save(ck, path, pickle_protocol=4)
    msg = _refusal(path)
    assert msg.startswith(f"refusing to load {path}: it was pickled with protocol 4, which")
    line, out = msg.split("in Python: ")[1].rsplit(", then load ", 1)
    exec(line, {"torch": torch})
    assert torch.equal(load_upsampler(out).stem.conv1.weight, upsampler.stem.conv1.weight)
    assert not pickle_plain.plain(_top({**extra, "f": os.system}), tensors=True)
