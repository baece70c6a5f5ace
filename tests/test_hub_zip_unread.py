"""A torch.save archive that Python's zipfile cannot read, or reads otherwise than torch's zip
reader (miniz) does, is refused before torch.load: it was left to torch.load as "cut short"
(zipfile's error swallowed), or its checks made on another directory than the one torch
loads (its members' sizes and checksums), and torch 2.4 loaded a member cut to 400 of its
tensor's 4000 bytes as weights, torch 2.13 its mapped neighbours, both a copy of zeros."""

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


def _unchecksummed_header_names_another(raw: bytearray) -> None:
    """data.pkl's CRC-32 said 0 (torch.save's, told not to compute them: its bytes not read
    by the check) and its local header naming another file: the walk of its pickle, refused
    by zipfile, was taken for one it could not follow and the members' sizes went unchecked."""
    central = raw.index(b"PK\x01\x02")  # (data.pkl's entry: the first, at offset 0)
    raw[14:18] = raw[central + 16 : central + 20] = bytes(4)
    raw[30:40] = raw[30:40].upper()


def _directory_hidden(raw: bytearray) -> None:
    """A second directory where the end records say (one that cuts the tensor's member to 400
    bytes), the members again after it and the directory torch.save wrote after them: zipfile
    reads the directory that ends at the end records and takes the bytes before it as not the
    archive's (its members' offsets moved by as many); torch's reader reads the first."""
    end, at = len(raw) - 22, raw.rindex(b"PK\x06\x06")
    length, offset = struct.unpack_from("<II", raw, end + 12)
    body, directory = raw[:offset], raw[offset : offset + length]
    hidden = bytearray(directory)
    entry = hidden.index(b"x/data/0") - 46
    struct.pack_into("<II", hidden, entry + 20, 400, 400)  # (its sizes)
    records = raw[at:]
    struct.pack_into("<Q", records, 56 + 8, 2 * offset + 2 * length)  # (the locator's offset)
    raw[:] = body + hidden + body + directory + records


def _zip64_record_moved(raw: bytearray) -> None:
    """The zip64 locator pointing at a second zip64 end record, before the directory: torch's
    reader reads that one (the directory's place, members at the offsets it gives), zipfile
    the one 56 bytes before the locator, which places the archive after a copy of its
    members whose tensor's bytes are zeros: torch loaded the zeros, the whole copy checked."""
    end, at = len(raw) - 22, raw.rindex(b"PK\x06\x06")
    length, offset = struct.unpack_from("<II", raw, end + 12)
    body, directory = bytes(raw[:offset]), bytes(raw[offset : offset + length])
    head = raw.index(b"x/data/0") - 30
    name, extra = struct.unpack_from("<HH", raw, head + 26)
    zeros = bytearray(body)
    zeros[head + 30 + name + extra : head + 30 + name + extra + 4000] = bytes(4000)
    start = 2 * offset + 56  # (the directory's place, after the second record)
    torch_s, zipfile_s = bytearray(raw[at : at + 56]), bytearray(raw[at : at + 56])
    struct.pack_into("<Q", torch_s, 48, start)
    struct.pack_into("<Q", zipfile_s, 48, start - offset)  # (its members one copy on)
    locator, last = bytearray(raw[at + 56 : at + 76]), bytearray(raw[end:])
    struct.pack_into("<Q", locator, 8, 2 * offset)
    struct.pack_into("<I", last, 16, start)
    raw[:] = zeros + body + torch_s + directory + zipfile_s + locator + last


@pytest.mark.parametrize(
    "edit, said",
    [
        (_extensible_data, "its zip64 end record is not where zipfile reads it (extensible"),
        (_directory_said_longer, "Bad magic number for central directory"),
        (_header_names_another, "File name in directory"),
        (_unchecksummed_header_names_another, "File name in directory"),
        (_directory_hidden, "its directory lies at byte "),
        (_zip64_record_moved, "its zip64 end record is not where zipfile reads it"),
    ],
    ids=[
        "zip64 extensible data",
        "directory said longer",
        "header names another",
        "no CRC, header names another",
        "hidden",
        "moved",
    ],
)
def test_an_archive_zipfile_reads_otherwise_than_torch_is_refused_not_loaded(tmp_path, edit, said):
    path = tmp_path / "x.pt"
    torch.save({"w": torch.arange(1000.0)}, path)
    if edit in (_extensible_data, _directory_said_longer, _unchecksummed_header_names_another):
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
