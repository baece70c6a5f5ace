"""The end record :func:`~loftup.hub.zip_open.open_zip` finds of an archive whose directory
says a member needs zip 6.4 to be extracted (read as torch reads it): the one Python's zipfile
reads, for any archive zipfile reads once that field is 6.3."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from loftup.hub.zip_open import open_zip

#: The signature of a zip archive's end record
_END = b"PK\x05\x06"


def _archive(names: list[str]) -> bytes:
    """A zip archive of a one-byte member of each of ``names``, each entry of its directory
    saying zip 6.4 is needed to extract it."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in names:
            z.writestr(name, b"x")
    data = bytearray(out.getvalue())
    at = data.index(b"PK\x01\x02")
    while at >= 0:
        data[at + 6] = 64
        at = data.find(b"PK\x01\x02", at + 4)
    return bytes(data)


def test_an_end_record_whose_fields_hold_its_signature_is_read_where_it_lies():
    """19,280 members (0x4b50, "PK") and a directory of 0x....0605 bytes: the end record's
    members-and-size fields read "PK\\x05\\x06", 10 bytes into the record, the archive's last
    22 bytes. zipfile reads the end record there (no comment); open_zip searched for the
    signature's last place, found that one, and refused the whole archive (zipfile's
    NotImplementedError, 'zip file version 6.4')."""
    names = [f"m/{i}" for i in range(0x4B50)]
    pad = (0x0605 - sum(46 + len(n) for n in names)) % 0x10000
    names[0] += "x" * (pad // 2)
    names[1] += "x" * (pad - pad // 2)
    data = _archive(names)
    end = data[-22:]
    assert end[:4] == _END and end[10:14] == _END  # (the case made: the signature twice)
    with open_zip(io.BytesIO(data)) as z:
        assert z.namelist() == names
        assert z.read(names[-1]) == b"x"


def test_a_comment_after_the_end_record_is_passed_over():
    """An archive with a comment (its end record not its last 22 bytes) is read all the same."""
    data = bytearray(_archive(["archive/data.pkl", "archive/data/0"]))
    data[-2:] = struct.pack("<H", 7)
    with open_zip(io.BytesIO(bytes(data) + b"comment")) as z:
        assert z.namelist() == ["archive/data.pkl", "archive/data/0"]


def test_a_zip64_archive_with_a_long_comment_is_read_by_its_zip64_record():
    """65,536 members (zip64's end records) and a comment of 65,530 bytes: the zip64 locator
    lies before the 65,557 bytes open_zip searched for the end record, and was not seen there;
    the end record's 32-bit fields (0xFFFF members) were read as the directory's and the
    archive refused whole (zip file version 6.4), as zipfile read it."""
    names = [f"m/{i}" for i in range(0x10000)]
    data = bytearray(_archive(names))
    assert data.rfind(b"PK\x06\x07") == len(data) - 42  # (zip64: its locator before the end)
    data[-2:] = struct.pack("<H", 65530)
    with open_zip(io.BytesIO(bytes(data) + b"c" * 65530)) as z:
        assert len(z.namelist()) == len(names)


@pytest.mark.parametrize("mapped", [False, True], ids=["whole", "mapped"])
def test_a_torch_archive_written_again_with_zip64_headers_loads_as_torch_loads_it(tmp_path, mapped):
    """torch.save's members written again by zipfile with force_zip64 (each local header's zip64
    extra field, as a writer of files over 4 GB writes them): checked and loaded as torch.load
    loads it, each tensor whole (the end records' places read as torch reads them)."""
    import torch

    from loftup.hub.files import torch_load

    saved = tmp_path / "saved.pt"
    state = {"w": torch.arange(1000.0), "h": torch.ones(3, dtype=torch.bfloat16)}
    torch.save(state | {"i": torch.arange(5)}, saved)
    path = tmp_path / "zip64.pt"
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            with zout.open(info.filename, "w", force_zip64=True) as member:
                member.write(zin.read(info))
    assert path.read_bytes().count(b"\x01\x00\x10\x00") == len(zin.infolist())  # (zip64 extras)
    loaded = torch_load(path, fix="get it again", mmap=mapped)
    expected = torch.load(path, weights_only=True, mmap=mapped)
    assert loaded.keys() == expected.keys() == {"w", "h", "i"}
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]) and value.dtype == expected[key].dtype
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["h"], state["h"])
