"""A training checkpoint loaded with its tensors mapped (the look of `loftup demo --resume`):
mapped in fact, not read whole behind a catch-all; refused where a full load refuses it (a
tensor's member of another size than it needs, a read error of its disk); and the very file
whose bytes were checked, not whatever lies at its path by the time it is mapped."""

from __future__ import annotations

import errno
import io
import os
import sys
import zipfile
import zlib

import pytest
import torch

from loftup.errors import CheckpointError
from loftup.train.checkpoint import load_checkpoint, save_checkpoint


def _saved(path, step=3):
    return save_checkpoint(path, {"step": step, "w": torch.arange(1000.0), "v": torch.ones(4)})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps: Linux")
def test_a_mapped_load_maps_the_checkpoint(tmp_path):
    path = _saved(tmp_path / "checkpoint.pt")
    ckpt = load_checkpoint(path, mapped=True)
    with open("/proc/self/maps") as f:
        mapped = {line.split(maxsplit=5)[-1].strip() for line in f if "/" in line}
    assert str(path.resolve()) in mapped
    assert ckpt["w"][999].item() == 999.0


def test_an_error_of_the_mapped_call_itself_is_not_read_whole_silently(tmp_path, monkeypatch):
    """Only a file system's refusal to map falls back to a whole read: a TypeError (a change in
    torch's or our call) was caught too, and nothing was ever mapped, unseen."""
    path = _saved(tmp_path / "checkpoint.pt")

    def changed(*args, **kwargs):
        raise TypeError("from_file() got an unexpected keyword argument")

    monkeypatch.setattr(torch.UntypedStorage, "from_file", changed)
    with pytest.raises(CheckpointError, match=r"\(TypeError\)"):
        load_checkpoint(path, mapped=True)


@pytest.mark.parametrize(
    "refusal",
    [
        OSError(errno.ENODEV, "No such device"),
        RuntimeError("unable to mmap 5184 bytes from file </x/checkpoint.pt>: No such device (19)"),
    ],
)
def test_a_checkpoint_that_cannot_be_mapped_is_read_whole(tmp_path, monkeypatch, refusal):
    """A file system that maps no files (some FUSE mounts), said as an OSError or as torch's
    RuntimeError: read as a load does, not refused as corrupt."""
    path = _saved(tmp_path / "checkpoint.pt")

    def unmappable(*args, **kwargs):
        raise refusal

    monkeypatch.setattr(torch.UntypedStorage, "from_file", unmappable)
    ckpt = load_checkpoint(path, mapped=True)
    assert ckpt["step"] == 3 and ckpt["w"][999].item() == 999.0


def _resize_member(path, suffix: str, size: int) -> None:
    """Say the member of ``path`` whose name ends with ``suffix`` is ``size`` bytes long (its
    local and central headers, with the CRC of that many of its bytes): the rest as it was."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(suffix))
    h, name = info.header_offset, info.filename.encode()
    start = h + 30 + int.from_bytes(raw[h + 26 : h + 28], "little")
    start += int.from_bytes(raw[h + 28 : h + 30], "little")
    fields = zlib.crc32(raw[start : start + size]).to_bytes(4, "little")
    fields += size.to_bytes(4, "little") * 2
    raw[h + 14 : h + 26] = fields
    central = raw.index(b"PK\x01\x02")
    while raw[central + 46 : central + 46 + len(name)] != name:
        central = raw.index(b"PK\x01\x02", central + 1)
    raw[central + 16 : central + 28] = fields
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("delta", [8, -8])
def test_a_tensor_member_of_another_size_is_refused_mapped_as_loaded(tmp_path, delta):
    """Its checksum good: the mapped look passed it (its bytes taken at the member's offset)
    and the training's load refused it later; torch 2.4 loaded it whole or mapped, without a
    word. Refused now by its member's size against its storage's in the pickle, both ways."""
    path = _saved(tmp_path / "checkpoint.pt")
    _resize_member(path, "/data/0", 4000 + delta)
    for mapped in (False, True):
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path, mapped=mapped)
        said = str(e.value)
        assert said.startswith(f"training checkpoint {path} is corrupt: its member"), said
        assert f"/data/0' holds {4000 + delta} bytes, where its tensor needs 4000" in said


class _FailingReads(io.FileIO):
    """A file whose reads of bytes ``bad`` (a range) fail with EIO (a failing disk)."""

    bad = range(0)

    def read(self, size=-1):
        start = self.tell()
        if start < self.bad.stop and (size < 0 or start + size > self.bad.start):
            raise OSError(errno.EIO, "Input/output error")
        return super().read(size)


@pytest.mark.parametrize("where", ["member", "end"])
def test_a_read_error_is_refused_as_one_not_passed(tmp_path, monkeypatch, where):
    """The CRC check read the archive through the open file, an EIO there swallowed and the
    file passed (then mapped by its path, unread); said now, as what it is: in a tensor's
    member, or in the archive's end record (which zipfile says as "not a zip file")."""
    import loftup.hub.files

    path = save_checkpoint(tmp_path / "checkpoint.pt", {"step": 3, "w": torch.zeros(10000)})
    size = path.stat().st_size
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    bad = range(info.header_offset + 8000, info.header_offset + 8100)  # past the head read
    monkeypatch.setattr(_FailingReads, "bad", bad if where == "member" else range(size - 10, size))
    monkeypatch.setattr(loftup.hub.files, "open_weights", lambda p, *a: _FailingReads(p))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, mapped=True)
    said = str(e.value)
    assert said.startswith(f"training checkpoint {path} could not be read: EIO"), said
    assert "Input/output error" in said and said.endswith(
        "a disk or file-system error: check the disk (dmesg), copy the file elsewhere, then run "
        "again"
    )
    assert "move this file away" not in said  # (the fix of unsafe content: the run discarded)


def test_the_file_mapped_is_the_one_checked(tmp_path, monkeypatch):
    """Another file renamed onto the path after it was opened (a run writing its checkpoint):
    the mapping is of the file opened and checked, not of the path's new file."""
    import loftup.hub.files

    path = _saved(tmp_path / "checkpoint.pt", step=3)
    newer = _saved(tmp_path / "newer.pt", step=4)
    real = loftup.hub.files.open_weights

    def opened_then_replaced(p, *args):
        f = real(p, *args)
        os.replace(newer, path)
        return f

    monkeypatch.setattr(loftup.hub.files, "open_weights", opened_then_replaced)
    assert load_checkpoint(path, mapped=True)["step"] == 3
