"""What a zip archive's directory says before any member is read: a TorchScript archive
(torch.jit.save deflates its code) was "not written by torch.save ... repacked, or crafted",
and is told as one, with the line that keeps its weights; members listed twice or overlapping
(one 4 MB member listed 1000 times: 4 GB checked, 65535 times: 40 minutes) are refused before
the check that read each one listed."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile

import pytest
import torch

from loftup import CheckpointError, LoftUp, load_upsampler
from loftup.hub.files import check_torch_file

#: How every refusal of an archive torch.save did not write ends (one way to say it)
NOT_LOADED = (
    "; it was not loaded. Load only the file torch.save wrote, or save its weights again with "
    "torch.save or as safetensors"
)


class _Scriptable(LoftUp):
    """A LoftUp whose forward TorchScript can trace (LoftUp's own it cannot)."""

    def forward(self, x):
        return x * 2


def _refusal(load, path) -> str:
    with pytest.raises(CheckpointError) as e:
        load(path)
    return str(e.value)


@pytest.mark.parametrize("kind", ["trace", "script"])
def test_a_torchscript_archive_is_told_as_one_and_its_line_loads(tmp_path, kind):
    """Said as TorchScript, not as an archive repacked or crafted; the line told writes the
    weights of a traced LoftUp, which load; a scripted module's are said likewise."""
    path = tmp_path / "scripted.pt"
    upsampler = _Scriptable(dim=8, n_freqs=2, num_heads=2).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the tracer's)
        if kind == "trace":
            module = torch.jit.trace(upsampler, torch.zeros(2))
        else:
            module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    torch.jit.save(module, path)
    msg = _refusal(load_upsampler, path)
    assert msg.startswith(f"{path} is a TorchScript archive (written by torch.jit.save), which")
    assert "not written by torch.save" not in msg and "\n" not in msg
    if kind == "script":
        return
    line, out = msg.split("if you trust the file, in Python: ")[1].rsplit(", then load ", 1)
    exec(line, {"torch": torch})
    assert torch.equal(load_upsampler(out).stem.conv1.weight, upsampler.stem.conv1.weight)


def _listed(names: list[str], size: int = 1 << 16) -> bytes:
    """A stored archive of one member, its directory listing it under each of ``names``, all
    at its one header (its CRC right)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("w/data/0", b"\1" * size)
    data = buf.getvalue()
    end = data.rindex(b"PK\x05\x06")
    _, _, _, _, _, size_, offset, _ = struct.unpack("<IHHHHIIH", data[end : end + 22])
    entry = data[offset : offset + size_]
    listed = b"".join(entry.replace(b"w/data/0", n.encode()) for n in names)
    n = len(names)
    tail = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(listed), offset, 0)
    return data[:offset] + listed + tail


@pytest.mark.parametrize(
    "names, said",
    [
        (["w/data/0"] * 1000, "its member 'w/data/0' is listed twice"),
        (["w/data/0", "w/data/1"], "its member 'w/data/0' runs into member 'w/data/1'"),
    ],
    ids=["listed-twice", "overlapping"],
)
def test_members_listed_twice_or_overlapping_are_refused_before_any_is_read(tmp_path, names, said):
    """Refused as an archive torch.save did not write; not passed (listed twice, each read
    and its CRC right), nor blamed for a checksum (the CRC check of an overlapping member,
    its header another's name)."""
    path = tmp_path / "w.pth"
    path.write_bytes(_listed(names))
    msg = _refusal(lambda p: check_torch_file(p, fix="get it again"), path)
    assert msg.startswith(f"{path} was not written by torch.save: {said} (members overlapping)")
    assert "checksum" not in msg and msg.endswith(
        "save its weights again with torch.save or as safetensors"
    )


def _with_member(src, dst, extra: str, data: bytes) -> None:
    """``src``'s archive written to ``dst`` with the member ``extra`` (holding ``data``) after
    the others, each stored as torch.save stores them."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr(extra, data)


@pytest.mark.parametrize("mapped", [False, True], ids=["whole", "mapped"])
def test_members_whose_names_differ_in_case_alone_are_refused(tmp_path, mapped):
    """torch's zip reader finds a member regardless of case: with ``DATA/0`` after ``data/0``
    it loaded ``DATA/0`` (a quarter of the size the pickle says, checked by name as
    ``data/0``: the mapped load read its neighbours' bytes as the tensor). Refused, both
    members and the fix named; a file torch.save wrote, under transformers' name too, loads."""
    from loftup.hub.files import torch_load

    saved = tmp_path / "pytorch_model.bin"  # (transformers' layout: pytorch_model/data/0 ...)
    torch.save({"w": torch.full((16,), 7.0)}, saved)
    assert torch.equal(torch_load(saved, fix="x", mmap=mapped)["w"], torch.full((16,), 7.0))
    path = tmp_path / "w.pt"
    _with_member(saved, path, "pytorch_model/DATA/0", b"\0\0\x80\x3f" * 4)
    msg = _refusal(lambda p: torch_load(p, fix="get it again", mmap=mapped), path)
    assert msg == (
        f"{path} was not written by torch.save: its members 'pytorch_model/data/0' and "
        "'pytorch_model/DATA/0' differ only in case, which torch.save never writes (torch's zip "
        "reader finds a member by its bytes, regardless of case, so it could load another than "
        f"the one checked){NOT_LOADED}"
    )


@pytest.mark.parametrize("mapped", [False, True], ids=["whole", "mapped"])
def test_members_of_the_same_bytes_read_in_two_encodings_are_refused(tmp_path, mapped):
    """A storage keyed 'é' and two members of its name's bytes, the first flagged UTF-8 (bit
    11: 'x/data/é', whole), the second not (zipfile reads it as cp437: 'x/data/├⌐', cut to
    400 of its 4000 bytes): torch finds the second by its bytes, the check found the first,
    and torch 2.4 loaded the cut one's garbage as weights. Refused as one name now."""
    from loftup.hub.files import torch_load

    saved = tmp_path / "saved.pt"
    torch.save({"w": torch.arange(1000.0)}, saved)
    with zipfile.ZipFile(saved) as z:
        members = {i.filename.replace("saved/", "x/"): z.read(i) for i in z.infolist()}
    path = tmp_path / "x.pt"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            if name.endswith("/data.pkl"):  # (the storage's key, '0', as 'é')
                data = data.replace(b"X\x01\x00\x00\x000q", b"X\x02\x00\x00\x00\xc3\xa9q")
            if name.endswith("/data/0"):
                z.writestr("x/data/\u00e9", data)  # (non-ASCII: zipfile sets bit 11)
                name, data = "x/data/ZZ", data[:400]  # (ASCII: no bit 11; its bytes below)
            z.writestr(name, data)
    path.write_bytes(path.read_bytes().replace(b"x/data/ZZ", "x/data/é".encode()))
    msg = _refusal(lambda p: torch_load(p, fix="get it again", mmap=mapped), path)
    assert msg.startswith(
        f"{path} was not written by torch.save: its members 'x/data/é' and 'x/data/├⌐' are the "
        "same bytes, read as UTF-8 in one (its flag bit 11) and cp437 in the other, which "
        "torch.save never writes"
    ), msg


def test_a_torchscript_archive_of_the_cache_is_told_a_copy_outside_it(tmp_path, monkeypatch):
    """A TorchScript file of one's own hub repo in the Hugging Face cache was told to write its
    copy in the cache's snapshot folder (a pickle's way out there: the current folder); both
    say the current folder now, through check_torch_file (a backbone's cached .bin) and
    torch_load too, and the line told writes there."""
    from loftup.hub.files import read_weights, torch_load

    snapshot = tmp_path / "hub" / "models--alice--my-loftup" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), snapshot / "m.pt")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    for load in (lambda p: check_torch_file(p, fix="x"), lambda p: torch_load(p, fix="x")):
        said = _refusal(load, snapshot / "m.pt")
        assert said.endswith(f", then load {tmp_path / 'work' / 'm.weights.pt'}")
    msg = _refusal(read_weights, snapshot / "m.pt")
    line, out = msg.split("if you trust the file, in Python: ")[1].rsplit(", then load ", 1)
    assert out == str(tmp_path / "work" / "m.weights.pt")
    exec(line, {"torch": torch})
    assert sorted(read_weights(out)) == ["bias", "weight"]
    assert sorted(p.name for p in snapshot.iterdir()) == ["m.pt"]


def _flagged(path, member: str, bit: int, crc: bool) -> None:
    """torch.save's archive of a tiny LoftUp at ``path``, its member ending in ``member``
    flagged with the general purpose ``bit`` in its local header and its directory entry (as
    an encrypting zip tool writes it); ``crc``: the CRC-32s computed (else 0, as torch.save
    writes them when told not to compute them)."""
    config = pytest.importorskip("torch.utils.serialization").config  # torch >= 2.5
    before = config.save.compute_crc32
    config.save.compute_crc32 = crc
    try:
        buf = io.BytesIO()
        torch.save(LoftUp(dim=8, n_freqs=2).state_dict(), buf)
    finally:
        config.save.compute_crc32 = before
    data = bytearray(buf.getvalue())
    with zipfile.ZipFile(buf) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(member))
        assert (info.CRC != 0) == crc
        start, end = z.start_dir, data.rindex(b"PK\x05\x06")
    data[info.header_offset + 6] |= bit  # the local header's flag bits
    at = start
    while at < end:  # each central directory entry: the one of this member
        n, m, k = struct.unpack("<HHH", data[at + 28 : at + 34])
        if data[at + 46 : at + 46 + n].decode() == info.filename:
            data[at + 8] |= bit
        at += 46 + n + m + k
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "load",
    [load_upsampler, lambda p: check_torch_file(p, fix="x")],
    ids=["load_upsampler", "check_torch_file"],
)
@pytest.mark.parametrize(
    "member, bit, crc",
    [("data.pkl", 0x1, True), ("data.pkl", 0x1, False), ("data/0", 0x1, True)]
    + [("data/0", 0x1, False), ("data.pkl", 0x40, True)],
    ids=["pickle", "pickle-crc-0", "tensor", "tensor-crc-0", "strong-encryption"],
)
def test_an_encrypted_member_is_refused_as_not_torch_saves(tmp_path, member, bit, crc, load):
    """zipfile's raw "File <ZipInfo ...> is encrypted, password required for extraction" (a
    RuntimeError; NotImplementedError "strong encryption" for bit 6) came out of the CRC check,
    or with CRC-32s of 0 out of the walk of the pickle; a tensor's member of CRC 0 was said
    "corrupt or truncated" by load_upsampler and passed by check_torch_file. Refused now, naming
    the file and the member, before any member is read."""
    path = tmp_path / "w.pth"
    _flagged(path, member, bit, crc)
    msg = _refusal(load, path)
    assert msg.startswith(
        f"{path} was not written by torch.save (an encrypted member): its member 'archive/"
        f"{member}' is flagged as encrypted"
    )
    assert msg.endswith(f"which torch.save never writes{NOT_LOADED}")
    assert "\n" not in msg


def _directory_set(path, member: str, field: int, value) -> None:
    """torch.save's archive of a tiny state dict at ``path``, the 2-byte ``field`` (its offset)
    of the directory entry of each member ending in ``member`` set to ``value(old)``."""
    buf = io.BytesIO()
    torch.save({"w": torch.full((4,), 3.0)}, buf)
    data = bytearray(buf.getvalue())
    at = data.index(b"PK\x01\x02")
    while data[at : at + 4] == b"PK\x01\x02":  # (the zip64 end record after the last)
        n, m, k = struct.unpack("<HHH", data[at + 28 : at + 34])
        if data[at + 46 : at + 46 + n].decode().endswith(member):
            old = struct.unpack_from("<H", data, at + field)[0]
            struct.pack_into("<H", data, at + field, value(old))
        at += 46 + n + m + k
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("member", ["data.pkl", "data/0"])
def test_a_member_flagged_as_patched_data_is_refused_in_one_line(tmp_path, member):
    """Flag bit 5 ("compressed patched data", which torch's reader refuses too) came out of
    zipfile as a raw NotImplementedError."""
    path = tmp_path / "w.pth"
    _directory_set(path, member, 8, lambda flags: flags | 0x20)
    for load in (load_upsampler, lambda p: check_torch_file(p, fix="x")):
        assert _refusal(load, path) == (
            f"{path} was not written by torch.save (a member of patched data): its member "
            f"'archive/{member}' is flagged as compressed patched data, which torch.save never "
            f"writes{NOT_LOADED}"
        )


def test_a_version_to_extract_above_zipfiles_is_read_as_torch_reads_it(tmp_path):
    """A directory saying its members need zip 6.4 to be extracted (zipfile reads up to 6.3, a
    raw NotImplementedError; torch's reader reads no such field, and loads the file): loaded,
    its members checked all the same (a changed byte said as corrupt)."""
    from loftup.hub.files import read_weights

    path = tmp_path / "w.pt"
    _directory_set(path, "", 6, lambda _: 64)
    check_torch_file(path, fix="x")
    assert torch.equal(read_weights(path)["w"], torch.full((4,), 3.0))
    data = bytearray(path.read_bytes())
    data[data.index(b"\0\0\x40\x40")] = 1  # (the first float of w, 3.0)
    path.write_bytes(bytes(data))
    assert _refusal(lambda p: check_torch_file(p, fix="x"), path) == (
        f"{path} is corrupt: its member 'archive/data/0' does not match the checksum written with it "
        "(damaged bytes); x"
    )
