"""A call whose result the pickle throws away still runs: a file of protocol 4 whose data.pkl
calls builtins.print and then drops it (POP, POP_MARK, kept in the memo alone, a dict's key
given again, an INST's argument), or a file of the old format whose fifth pickle (its storages'
keys, unpickled by torch.load too) calls it, was said as its protocol alone, with a line that
saves it again by torch.load(weights_only=False): the call ran. Every global the pickles name
or call is weighed now, kept or not: such a file is said to hold objects."""

from __future__ import annotations

import io
import pickle
import pickletools
import zipfile

import pytest
import torch

from loftup import CheckpointError
from loftup.hub.file_pickle import FilePickle
from loftup.hub.files import read_weights
from loftup.hub.pickle_walk import Walk
from loftup.hub.way_out import pickle_protocol

#: builtins.print("ran") called, its result left on the stack
_CALL = b"cbuiltins\nprint\n(Vran\ntR"

_HIDDEN = {
    "pop": _CALL + b"0",
    "pop-mark": b"(" + _CALL + b"1",
    "memo-alone": _CALL + b"\x94" + b"0",
    "inst-argument": b"(" + _CALL + b"icollections\nOrderedDict\n0",
}


def _framed(pkl: bytes, body: bytes, at: int = 11) -> bytes:
    """The pickle ``pkl`` (protocol 4, one FRAME first) with ``body`` put at ``at`` in its
    frame, the frame's length made right (torch's loader stops at FRAME: its payload unseen)."""
    assert pkl[:3] == b"\x80\x04\x95"
    n = int.from_bytes(pkl[3:11], "little") + len(body)
    return pkl[:3] + n.to_bytes(8, "little") + pkl[11:at] + body + pkl[at:]


def _saved(tmp_path, change) -> tuple:
    """A protocol-4 torch.save file of {"w": ones(3)} whose data.pkl is ``change(data.pkl)``."""
    saved = io.BytesIO()
    torch.save({"w": torch.ones(3)}, saved, pickle_protocol=4)
    path = tmp_path / "w.pt"
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, change(data) if info.filename.endswith("data.pkl") else data)
    return path


def _dup_key(pkl: bytes) -> bytes:
    """``pkl`` with {"w": print("ran")} set first, then "w" set again (the tensor)."""
    after_dict = pkl.index(b"}") + 1  # (EMPTY_DICT, the state dict)
    return _framed(pkl, b"\x8c\x01w" + _CALL + b"s", at=after_dict)


def _objects_said(path) -> str:
    with pytest.raises(CheckpointError) as e:
        read_weights(path)
    said = str(e.value)
    assert said.startswith(f"refusing to load {path}: it holds pickled objects that are not"), said
    assert "protocol 4" not in said and "weights_only=False), '" not in said  # (no resave line)
    with open(path, "rb") as f:
        assert pickle_protocol(FilePickle(f)) == (4, False)
    return said


@pytest.mark.parametrize("how", [*_HIDDEN, "dup-key"])
def test_a_call_thrown_away_is_objects_not_a_protocol(tmp_path, how):
    change = _dup_key if how == "dup-key" else (lambda pkl: _framed(pkl, _HIDDEN[how]))
    path = _saved(tmp_path, change)
    with zipfile.ZipFile(path) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert _calls(pkl) == [("ran",)]  # (what an unpickler does: print called)
    _objects_said(path)


def _calls(pkl: bytes) -> list[tuple]:
    """The calls of builtins.print an unpickling of ``pkl`` makes (each given to a stand-in
    that records it: nothing printed; the rest of the load as it goes)."""
    calls = []

    class Logged(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("builtins", "print"):
                return lambda *args: calls.append(args)
            return super().find_class(module, name)

        def persistent_load(self, pid):
            return None

    try:
        Logged(io.BytesIO(pkl)).load()
    except Exception:  # noqa: BLE001 - a tensor of no storage, an OrderedDict of None: after
        pass
    return calls


def test_the_fifth_pickle_of_the_old_format_is_walked(tmp_path):
    """torch.load unpickles the old format's fifth pickle (its storages' keys) too."""
    saved = io.BytesIO()
    torch.save({"w": torch.ones(3)}, saved, _use_new_zipfile_serialization=False, pickle_protocol=4)
    data, ends = saved.getvalue(), []
    stream = io.BytesIO(data)
    for _ in range(5):
        for _ in pickletools.genops(stream):
            pass
        ends.append(stream.tell())
    keys = pickle.loads(data[ends[3] : ends[4]])
    fifth = b"\x80\x04" + _CALL + b"0" + pickle.dumps(keys, protocol=4)[2:]
    path = tmp_path / "w.pt"
    path.write_bytes(data[: ends[3]] + fifth + data[ends[4] :])
    assert _calls(fifth) == [("ran",)]
    _objects_said(path)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
def test_what_a_state_dict_names_is_allowed_and_a_call_dropped_is_not():
    """The walk's record, on a state dict torch.save wrote (every kind of tensor, _metadata,
    a Size, a dtype, a device), and on the same with a call thrown away."""
    state = torch.nn.Linear(2, 2).state_dict()
    state |= {"p": torch.nn.Parameter(torch.ones(2)), "s": torch.Size([1]), "d": torch.float16}
    state |= {"on": torch.device("cpu"), "b": torch.zeros(2, dtype=torch.bool)}
    state["q"] = torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)
    saved = io.BytesIO()
    torch.save(state, saved, pickle_protocol=4)
    with zipfile.ZipFile(saved) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    walk = Walk(io.BytesIO(pkl))
    walk.next()
    assert walk.only_allowed() and ("collections", "OrderedDict") in walk.called
    walk = Walk(io.BytesIO(_framed(pkl, _HIDDEN["pop"])))
    walk.next()
    assert ("builtins", "print") in walk.called and not walk.only_allowed()
