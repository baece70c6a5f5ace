"""Each tensor's member checked against the size its pickle gives it, on a real large
checkpoint too: the check was skipped without a word past a data.pkl of 4 MB or 200,000
opcodes (a state dict of some 7,000 tensors), and a mapped load then read a short member's
neighbours as its tensor. Checked now up to a pickle of 64 MB or 4 million opcodes; past them
a warning names the file whose members were not checked."""

from __future__ import annotations

import pickletools
import warnings
import zipfile

import pytest
import torch

from loftup import CheckpointError
from loftup.hub.files import torch_load
from loftup.hub.pickle_walk import PICKLE_CAP
from test_hub_mapped_load import _resize_member


def _first_member(path) -> str:
    with zipfile.ZipFile(path) as z:
        return next(n for n in z.namelist() if n.endswith("/data/0"))


def test_a_short_member_of_a_state_dict_of_7000_tensors_is_refused_mapped(tmp_path):
    path = tmp_path / "big.pt"
    torch.save({f"blocks.{i}.weight": torch.full((16,), float(i)) for i in range(7000)}, path)
    _resize_member(path, _first_member(path), 8)  # (its tensor needs 64 bytes)
    with pytest.raises(CheckpointError) as e:
        torch_load(path, fix="get it again", mmap=True)
    assert "/data/0' holds 8 bytes, where its tensor needs 64" in str(e.value)


def test_a_pickle_past_the_bound_is_warned_of_by_name(tmp_path, monkeypatch):
    """A data.pkl over 64 MB (a note of that size beside the tensor): its members unchecked,
    said, not silently mapped, at the caller's line (it was loftup's files.py), saying what
    is done (it said "load it only if you trust it is whole" as it loaded it), by rank 0 of a
    torchrun job alone (every rank said it); a file within the bound warns of nothing."""
    path = tmp_path / "noted.pt"
    torch.save({"w": torch.full((16,), 7.0), "note": "x" * PICKLE_CAP}, path)
    with zipfile.ZipFile(path) as z:
        size = z.getinfo(_first_member(path).replace("/data/0", "/data.pkl")).file_size
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = torch_load(path, fix="get it again", mmap=True)
    assert torch.equal(loaded["w"], torch.full((16,), 7.0))
    said = [str(w.message) for w in caught if "member sizes" in str(w.message)]
    assert said == [
        f"{path}: its tensors' member sizes were not checked against its pickle, which is past "
        f"the check's bound ({size} bytes, over {PICKLE_CAP}); it is loaded without that "
        "check (a damaged member of another size is loaded as it is where its tensors are "
        "mapped)"
    ]
    assert {w.filename for w in caught if "member sizes" in str(w.message)} == {__file__}
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch_load(path, fix="get it again", mmap=True)
    small = tmp_path / "small.pt"
    torch.save({"w": torch.ones(2)}, small)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch_load(small, fix="get it again", mmap=True)


def test_a_negative_storage_size_is_said_as_one(tmp_path):
    """A storage whose persistent id gives it -4 elements was said to need 0 bytes."""
    path = tmp_path / "neg.pt"
    torch.save({"w": torch.full((4,), 7.0), "x": torch.full((8,), 9.0)}, path)
    with zipfile.ZipFile(path) as z:
        name = _first_member(path).replace("/data/0", "/data.pkl")
        pkl = z.read(name)
        rest = {i.filename: z.read(i) for i in z.infolist() if i.filename != name}
    at = next(p for op, a, p in pickletools.genops(pkl) if op.name == "BININT1" and a == 4)
    pkl = pkl[:at] + b"J" + (-4).to_bytes(4, "little", signed=True) + pkl[at + 2 :]  # w's size
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(name, pkl)
        for n, data in rest.items():
            z.writestr(n, data)
    with pytest.raises(CheckpointError) as e:
        torch_load(path, fix="get it again", mmap=True)
    assert str(e.value) == (
        f"{path} is corrupt: its pickle gives the storage of its member 'neg/data/0' a "
        "negative size (-16 bytes), which torch.save never writes (damaged or rewritten); get "
        "it again"
    )


def _rewritten(path, rename: dict[str, str], cut: dict[str, int] | None = None) -> None:
    """``path``'s archive written again, stored, each member whose name ends with a key of
    ``rename`` ending with its value instead, and each ending with a key of ``cut`` (after
    renaming) that many bytes long, dropped where it is 0."""
    cut = cut or {}
    with zipfile.ZipFile(path) as z:
        members = [(i.filename, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            for old, new in rename.items():
                name = name[: -len(old)] + new if name.endswith(old) else name
            size = next((n for end, n in cut.items() if name.endswith(end)), None)
            if size != 0:
                z.writestr(name, data if size is None else data[:size])


@pytest.mark.parametrize("mapped", [False, True], ids=["whole", "mapped"])
def test_members_are_found_regardless_of_case_as_torch_finds_them(tmp_path, mapped):
    """torch's zip reader finds ``archive/DATA.PKL`` as its data.pkl: the check looked for the
    exact name, found none and passed the file unchecked (torch 2.4 loaded 900 of a tensor's
    1000 values as garbage from a member cut to 400 bytes); a whole ``DATA/0``, which torch
    loads, was refused as "holding no such member". Each is found as torch finds it now."""
    path = tmp_path / "cut.pt"
    torch.save({"w": torch.arange(1000.0)}, path)
    _rewritten(path, {"/data.pkl": "/DATA.PKL"}, {"/data/0": 400})
    with pytest.raises(CheckpointError) as e:
        torch_load(path, fix="get it again", mmap=mapped)
    assert str(e.value) == (
        f"{path} is corrupt: its member 'cut/data/0' holds 400 bytes, where its tensor needs "
        "4000 (damaged or rewritten); get it again"
    )
    path = tmp_path / "whole.pt"
    torch.save({"w": torch.arange(10.0)}, path)
    _rewritten(path, {"/data/0": "/DATA/0", "/data.pkl": "/Data.pkl"})
    assert torch.equal(torch_load(path, fix="x", mmap=mapped)["w"], torch.arange(10.0))


def test_a_missing_member_is_said_as_missing(tmp_path):
    """Said "its member ... holds no such member" before."""
    path = tmp_path / "gone.pt"
    torch.save({"w": torch.ones(4), "x": torch.ones(2)}, path)
    _rewritten(path, {}, {"/data/1": 0})
    with pytest.raises(CheckpointError) as e:
        torch_load(path, fix="get it again")
    assert str(e.value) == (
        f"{path} is corrupt: it has no member 'gone/data/1', where its pickle puts a tensor of "
        "8 bytes (damaged or rewritten); get it again"
    )


def test_a_walk_stopped_at_its_cap_keeps_none_of_its_objects(tmp_path, monkeypatch):
    """The error of a walk stopped at its cap, kept while torch.load ran, kept the partial
    walk's objects alive through its traceback's frames (a checkpoint of 34,000 tensors and
    their AdamW state: 881 MB at its peak against 609 MB); none is kept now, the error's lines
    are (where the walk stopped)."""
    import gc

    from loftup.hub import pickle_walk
    from loftup.hub.file_pickle import FilePickle
    from loftup.hub.pickle_walk import Thing, WalkCapped

    path = tmp_path / "many.pt"
    torch.save({f"w{i}": torch.ones(1) for i in range(2000)}, path)
    monkeypatch.setattr(pickle_walk, "OPS_CAP", 20_000)  # (the file: some 60,000 opcodes)

    def things() -> int:
        gc.collect()
        return sum(type(o) is Thing for o in gc.get_objects())

    before = things()
    with open(path, "rb") as f:
        walked = FilePickle(f).walked()
    assert isinstance(walked.error, WalkCapped)
    assert things() - before < 10
    assert walked.error.__traceback__ is not None


def test_a_failed_walk_in_the_callers_except_block_leaves_the_callers_error_whole():
    """A walk that fails clears its own frames' locals (no partial tree kept alive), not those
    of the error its caller is handling when it loads (which the walk's error has for its
    context): a caller's post-mortem (a debugger, a report of locals) saw them wiped."""
    import io

    from loftup.hub.file_pickle import FilePickle

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/version", "3\n")  # (no data.pkl: the walk's KeyError)

    def fails():
        kept = "the caller's"
        raise RuntimeError(kept)

    try:
        fails()
    except RuntimeError as outer:
        walked = FilePickle(archive).walked()
        assert isinstance(walked.error, KeyError) and walked.error.__context__ is outer
        assert outer.__traceback__.tb_next.tb_frame.f_locals == {"kept": "the caller's"}


def _keyed(path, key: bytes, tensor) -> None:
    """torch.save's archive of a tensor of 1000 floats at ``path`` (its folder ``x``), its
    storage's key '0' pickled as the opcodes ``key``, its tensor's member written as the
    (name, bytes) pairs ``tensor`` makes of its bytes."""
    torch.save({"w": torch.arange(1000.0)}, path)
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            if name.endswith("/data.pkl"):
                assert data.count(b"X\x01\x00\x00\x000q") == 1  # (BINUNICODE '0', its key)
                data = data.replace(b"X\x01\x00\x00\x000q", key + b"q")
            for written, held in tensor(data) if name.endswith("/data/0") else [(name, data)]:
                z.writestr(written, held)


@pytest.mark.parametrize("mapped", [False, True], ids=["whole", "mapped"])
def test_a_storage_keyed_by_a_number_is_refused_not_loaded_unchecked(tmp_path, mapped):
    """A storage's key 0 (an int) where torch.save writes '0': torch loads member data/0 for
    it all the same, and the check, which sized storages of text keys alone, passed the file
    unchecked: torch 2.4 loaded a member cut to 400 of its tensor's 4000 bytes as weights."""
    path = tmp_path / "x.pt"
    _keyed(path, b"K\x00", lambda data: [("x/data/0", data[:400])])  # (BININT1 0)
    with pytest.raises(CheckpointError) as e:
        torch_load(path, fix="get it again", mmap=mapped)
    assert str(e.value).startswith(
        f"{path} was not written by torch.save: its pickle gives a storage a persistent id of "
        "another form than torch.save's ('storage', a storage class of torch's, its key as text, "
        "its location, its size as an integer; this one's key 0 is not text), whose member could "
        "not be checked; it was not loaded"
    ), e.value


def test_a_storage_class_not_sized_is_named_in_the_refusal(tmp_path):
    """A persistent id of a storage class the check does not size (torch.FooatStorage): the
    refusal listed every way an id could differ; it names the class now."""
    path = tmp_path / "x.pt"
    torch.save({"w": torch.arange(10.0)}, path)
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data.replace(b"FloatStorage", b"FooatStorage"))
    with pytest.raises(CheckpointError) as e:
        torch_load(path, fix="get it again")
    assert (
        "its size as an integer; this one's storage class torch.FooatStorage is none the check "
        "sizes), whose member could not be checked" in str(e.value)
    ), e.value


@pytest.mark.parametrize("mapped", [False, True], ids=["whole", "mapped"])
def test_a_key_of_bytes_is_read_as_torch_decodes_it(tmp_path, mapped):
    """A storage's key pickled as bytes (SHORT_BINSTRING b'\\xc3\\xa9'), which torch.load
    decodes as UTF-8 ('é') and pickletools gave as Latin-1 ('Ã©'): the check sized member
    data/Ã© (whole) while torch loaded data/é, cut to 400 of its 4000 bytes (torch 2.4 loaded
    its garbage as weights). Sized as torch reads it now."""
    path = tmp_path / "x.pt"
    both = [("x/data/\u00c3\u00a9", None), ("x/data/\u00e9", 400)]
    _keyed(path, b"U\x02\xc3\xa9", lambda data: [(n, data[:cut]) for n, cut in both])
    with pytest.raises(CheckpointError) as e:
        torch_load(path, fix="get it again", mmap=mapped)
    assert str(e.value) == (
        f"{path} is corrupt: its member 'x/data/é' holds 400 bytes, where its tensor needs 4000 "
        "(damaged or rewritten); get it again"
    )
