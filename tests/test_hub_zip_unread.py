"""A torch.save archive that Python's zipfile cannot read, but torch's zip reader (miniz) loads,
is refused before torch.load: it was left to torch.load as "cut short" (zipfile's error
swallowed), its checks never made (its members' sizes and checksums), and torch 2.4 loaded a
member cut to 400 of its tensor's 4000 bytes as weights, torch 2.13 its mapped neighbours."""

from __future__ import annotations

import struct

import pytest
import torch

from loftup.errors import CheckpointError
from loftup.hub.files import check_torch_file, torch_load
from test_hub_mapped_load import _resize_member


def _extensible_data(raw: bytearray) -> None:
    """16 bytes of extensible data in the zip64 end record torch.save writes (its size field
    said so), which miniz reads at the zip64 locator's offset and zipfile 56 bytes before it."""
    at = raw.rindex(b"PK\x06\x06")
    struct.pack_into("<Q", raw, at + 4, struct.unpack_from("<Q", raw, at + 4)[0] + 16)
    raw[at + 56 : at + 56] = bytes(16)


def _directory_said_longer(raw: bytearray) -> None:
    """The directory's length said 8 bytes longer in both end records: miniz reads as many
    entries as they count; zipfile reads the directory as ending where they begin."""
    end, at = len(raw) - 22, raw.rindex(b"PK\x06\x06")
    struct.pack_into("<I", raw, end + 12, struct.unpack_from("<I", raw, end + 12)[0] + 8)
    struct.pack_into("<Q", raw, at + 40, struct.unpack_from("<Q", raw, at + 40)[0] + 8)


def _header_names_another(raw: bytearray) -> None:
    """The first member's local header names another file (data.pkl as DATA.PKL, same length),
    which zipfile refuses as the member is read (miniz never reads it), and the tensor's bytes
    damaged: the file was refused as data.pkl's bytes not matching their checksum, which they
    do (each zipfile error of a member's read was said as a bad CRC-32)."""
    at = raw.index(b"/data.pkl")
    raw[at : at + 9] = b"/DATA.PKL"
    head = raw.index(b"x/data/0") - 30  # (its local header: before the directory's entry)
    name, extra = struct.unpack_from("<HH", raw, head + 26)
    raw[head + 30 + name + extra + 100] ^= 0xFF


@pytest.mark.parametrize(
    "edit, said",
    [
        (_extensible_data, "Bad magic number for central directory"),
        (_directory_said_longer, "Bad magic number for central directory"),
        (_header_names_another, "File name in directory"),
    ],
    ids=["zip64 extensible data", "directory said longer", "header names another"],
)
def test_an_archive_zipfile_cannot_read_is_refused_not_loaded_unchecked(tmp_path, edit, said):
    path = tmp_path / "x.pt"
    torch.save({"w": torch.arange(1000.0)}, path)
    if edit is not _header_names_another:
        _resize_member(path, "/data/0", 400)  # (its tensor needs 4000 bytes)
    raw = bytearray(path.read_bytes())
    edit(raw)
    path.write_bytes(bytes(raw))
    assert torch.load(path, weights_only=True, mmap=True)["w"].shape == (1000,)  # (miniz reads it)
    for mapped in (False, True):
        with pytest.raises(CheckpointError) as e:
            torch_load(path, fix="get it again", mmap=mapped)
        assert str(e.value).startswith(
            f"{path} is corrupt or truncated and cannot be read (its zip archive: {said}"
        ), e.value
        assert str(e.value).endswith("); get it again")
    with pytest.raises(CheckpointError, match="cannot be read \\(its zip archive"):
        check_torch_file(path, fix="get it again")  # (for transformers' own torch.load)
