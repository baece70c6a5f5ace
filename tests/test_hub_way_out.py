"""An upsampler's file of one's own refused for its pickled objects is told, for one who trusts
it, the line of Python that keeps its weights alone: chosen from its pickle's opcodes (nothing
unpickled), loading on the CPU, writing beside it under a name that is no file's; a pickle it
cannot read surely (crafted, too large, of another compression) is told in general words."""

from __future__ import annotations

import argparse
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from loftup import CheckpointError, LoftUp, load_upsampler
from loftup.hub import native_to_reference

GENERAL = "load it in Python with torch.load("


def _lightning(upsampler: LoftUp) -> dict:
    """``upsampler``'s weights as a Lightning checkpoint of the paper's code holds them."""
    state = native_to_reference(upsampler.state_dict())
    state = {k.replace("channelnorm.norm.", "model.1.norm."): v for k, v in state.items()}
    return {"state_dict": state, "hyper_parameters": {"cfg": argparse.Namespace(lr=1e-4)}}


def same_upsampler(loaded: LoftUp, saved: LoftUp) -> None:
    """``loaded`` is ``saved``: its config (its heads) and its outputs."""
    assert loaded.config == saved.config
    lr, image = torch.randn(1, saved.config.dim, 4, 4), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(lr, image), saved(lr, image))


def told(path) -> tuple[str, str, str]:
    """The refusal of ``path``, the line of Python it tells (the general words where it tells
    none, beginning :data:`GENERAL`), and the file that line writes."""
    with pytest.raises(CheckpointError) as e:
        load_upsampler(path)
    msg = str(e.value)
    assert msg.startswith(f"refusing to load {path}: it holds pickled objects")
    said = msg.split("if you trust the file (unpickling it runs its code), ")[1]
    line, out = said.removeprefix("in Python: ").rsplit(", then load ", 1)
    return msg, line, out


@pytest.mark.parametrize(
    "saved, kept",
    [
        (lambda m: m, '.state_dict(), "model_config": m.config.to_dict(), '),  # torch.save(model)
        (lambda m: {"model": m, "epoch": 3}, '["model"]).state_dict(), "model_config": m.config'),
        (_lightning, '{"state_dict": torch.load('),
        (lambda m: {"model": m.state_dict(), "args": argparse.Namespace(a=1)}, '{"model": '),
        (
            lambda m: {
                "model": m.state_dict(),
                "model_config": m.config.to_dict(),
                "args": argparse.Namespace(a=1),
            },
            '"model_config": c["model_config"]',
        ),
    ],
    ids=["module", "dict-of-module", "lightning", "train-layout", "train-layout-record"],
)
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_the_line_told_keeps_the_weights_and_writes_a_new_file(
    tmp_path, monkeypatch, saved, kept, legacy
):
    """The line was chosen by b"state_dict" among the pickle's bytes, which every module's
    pickle holds (_state_dict_hooks): torch.save(model) was told ...["state_dict"] (TypeError),
    {"model": m} too (KeyError); it loaded without map_location (a GPU's checkpoint failed on a
    CPU) and wrote ./x.pt, over any file there. Each line now runs and its file loads."""
    upsampler = LoftUp(dim=8, n_freqs=2, num_heads=2).eval()
    path = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:  # its tensors recorded on a GPU, as a GPU's run saves them
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(saved(upsampler), path, _use_new_zipfile_serialization=not legacy)
    (tmp_path / "run.weights.pt").write_bytes(b"another file")
    msg, line, out = told(path)
    assert kept in line and 'map_location="cpu", weights_only=False' in line
    assert out == str(tmp_path / "run.weights-2.pt")  # beside it, another name: not overwritten
    exec(line, {"torch": torch})  # as its user would type it
    loaded = load_upsampler(out)
    assert torch.equal(loaded.stem.conv1.weight, upsampler.stem.conv1.weight)
    assert (tmp_path / "run.weights.pt").read_bytes() == b"another file"
    if "model_config" in kept:  # its record kept: the heads no shape says, the same outputs
        same_upsampler(loaded, upsampler)


def test_a_file_of_a_long_name_is_told_a_copy_whose_name_fits(tmp_path):
    """A file named with 250 bytes (and its suffix): the name of its copy, <stem>.weights.pt,
    was too long for the file system, and the look for a file of that name raised
    ENAMETOOLONG: the refusal was that OSError's traceback. Its stem is cut to fit now."""
    upsampler = LoftUp(dim=8, n_freqs=2, num_heads=2).eval()
    path = tmp_path / f"{'é' * 125}.ckpt"  # (250 bytes of UTF-8, 255 with its suffix)
    torch.save({"model": upsampler, "epoch": 3}, path)
    _, line, out = told(path)
    name = Path(out).name
    assert Path(out).parent == tmp_path and len(os.fsencode(name)) <= 255, name
    assert name.startswith("é" * 100) and name.endswith(".weights.pt"), name
    exec(line, {"torch": torch})
    same_upsampler(load_upsampler(out), upsampler)


@pytest.mark.parametrize(
    "obj",
    [
        {"weights": {"w": torch.zeros(2)}, "note": argparse.Namespace(msg="see state_dict")},
        {"state_dict": argparse.Namespace(a=1)},
        {"model": {"w": torch.zeros(2)}, "model_config": {"a": argparse.Namespace(a=1)}},
        {"model": {"w": torch.zeros(2)}, "model_config": {"a": [argparse.Namespace(a=1)]}},
        {"model": {"w": torch.zeros(2)}, "model_config": {"a": (1, {"b": (np.int64(3),)})}},
        torch.nn.Sequential(torch.nn.Linear(2, 2)),
    ],
    ids=[
        "mentions-state-dict",
        "state-dict-not-a-dict",
        "record-of-objects",
        "record-list-of-objects",
        "record-tuple-of-numpy",
        "module-not-loftup",
    ],
)
def test_a_pickle_whose_weights_are_not_surely_found_is_told_in_general_words(tmp_path, obj):
    """A string mentioning state_dict was told ...["state_dict"] (KeyError); where the top
    object's keys do not say where the weights are, the general words are told: a record
    holding objects in a list or tuple (it was looked into one level deep: its line's file was
    refused again), a module that holds no LoftUp (its .state_dict() fits no LoftUp layout)."""
    torch.save(obj, tmp_path / "o.pt")
    _, line, _ = told(tmp_path / "o.pt")
    assert line.startswith(GENERAL)


def _with_decoy(obj: dict, decoy: bytes, method: int = zipfile.ZIP_STORED) -> bytes:
    """torch.save's archive of ``obj`` with a member ``<folder>/x/data.pkl`` holding ``decoy``
    listed first (torch reads ``<folder>/data.pkl``), compressed by ``method`` (a number
    zipfile knows not: written stored, then the method patched in)."""
    saved = io.BytesIO()
    torch.save(obj, saved)
    src = zipfile.ZipFile(saved)
    folder = src.namelist()[0].split("/")[0]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(f"{folder}/x/data.pkl", decoy)
        for info in src.infolist():
            z.writestr(info, src.read(info.filename))
    data = bytearray(out.getvalue())
    if method != zipfile.ZIP_STORED:  # the first member's local and central headers, CRC 0
        data[8:10], data[14:18] = struct.pack("<H", method), bytes(4)
        cd = data.find(b"PK\x01\x02")
        data[cd + 10 : cd + 12], data[cd + 16 : cd + 20] = struct.pack("<H", method), bytes(4)
    return bytes(data)


def test_the_pickle_read_is_the_one_torch_reads(tmp_path):
    """The first member named */data.pkl was read, whole, not the one torch reads: a decoy
    holding b"state_dict" told a line that fails. The real pickle decides now."""
    obj = {"weights": {"w": torch.zeros(2)}, "hp": argparse.Namespace(a=1)}
    decoy = pickle.dumps({"state_dict": {}}, protocol=2)
    (tmp_path / "c.pt").write_bytes(_with_decoy(obj, decoy))
    _, line, _ = told(tmp_path / "c.pt")
    assert line.startswith(GENERAL)


def test_a_member_of_a_compression_zipfile_cannot_read_is_refused_as_the_archives(tmp_path):
    """A member of a compression zipfile cannot read (method 99) was a NotImplementedError
    traceback: no member of torch.save's is compressed, the archive is refused as none of its."""
    obj = {"weights": {"w": torch.zeros(2)}, "hp": argparse.Namespace(a=1)}
    (tmp_path / "c.pt").write_bytes(_with_decoy(obj, b"x", 99))
    with pytest.raises(CheckpointError, match=r"was not written by torch.save: .* \(method 99\)"):
        load_upsampler(tmp_path / "c.pt")


def test_a_pickle_over_the_cap_is_not_read(tmp_path, monkeypatch):
    """The pickle was read whole, however large (a deflate bomb: gigabytes in memory); one over
    the cap (per its header) is not read: the general words are told."""
    from loftup.hub import file_pickle

    torch.save(_lightning(LoftUp(dim=8, n_freqs=2)), tmp_path / "l.ckpt")
    monkeypatch.setattr(file_pickle, "PICKLE_CAP", 200)  # its pickle: some kilobytes
    _, line, _ = told(tmp_path / "l.ckpt")
    assert line.startswith(GENERAL)
