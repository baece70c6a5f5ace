"""A zip archive opened for reading as torch's zip reader (miniz) reads it (:func:`open_zip`):
Python's zipfile refuses a whole archive whose directory says a member needs a zip version
above 6.3 to be extracted ("zip file version 6.4", a NotImplementedError), a field torch's
reader does not read (torch.save writes 0); such an archive is read with that field taken as
6.3, every other byte as it is (its members, their flags, sizes and checksums all checked)."""

from __future__ import annotations

import struct
import zipfile

#: The signatures of a zip archive's end record, its zip64 locator and its zip64 end record
_END, _LOCATOR, _END64 = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
#: How far before its end an archive's end record may begin (its comment at most 64 KB long)
_END_SPAN = 22 + 0xFFFF


def open_zip(f) -> zipfile.ZipFile:
    """``zipfile.ZipFile`` of the archive open as ``f`` (a binary file, at any position), read
    with the "version needed to extract" of its directory's entries above 6.3 taken as 6.3,
    which torch loads; zipfile's own error where its directory cannot be found, and a
    BadZipFile where its end records say its directory lies elsewhere than where zipfile reads
    it (:func:`_misplaced`: torch's reader reads it there, another directory to load than the
    one checked)."""
    try:
        z = zipfile.ZipFile(f)
    except zipfile.BadZipFile:  # (said as what torch's reader reads otherwise, where it is)
        misplaced = _misplaced(f, None)
        if misplaced is None:
            raise
        raise zipfile.BadZipFile(misplaced) from None
    except NotImplementedError as e:
        if not str(e).startswith("zip file version"):
            raise
        found = _directory(f)
        if found is None:
            raise
        z = zipfile.ZipFile(_WithDirectory(f, *found))
    misplaced = _misplaced(f, z.start_dir)
    if misplaced is not None:
        z.close()
        raise zipfile.BadZipFile(misplaced)
    return z


def _ends(f) -> tuple[int, int, int, int] | None:
    """Of the archive open as ``f``: where its end record begins, where its zip64 end record
    does (as its locator says: where torch's reader reads it; the end record's where there is
    none) and the directory's offset and length that record gives; None where no end record
    is found, or a zip64 locator points at no zip64 end record."""
    f.seek(0, 2)
    size = f.tell()
    f.seek(max(0, size - _END_SPAN))
    tail = f.read()
    at = len(tail) - 22  # where zipfile reads it first: no comment (and the signature there)
    if at < 0 or tail[at : at + 4] != _END or tail[-2:] != b"\0\0":
        at = tail.rfind(_END)  # (not the signature its own fields may hold, 10 bytes in)
    if at < 0 or len(tail) - at < 22:
        return None
    end = size - len(tail) + at
    length, offset = struct.unpack_from("<II", tail, at + 12)
    f.seek(max(0, end - 20))  # (from the file: a long comment leaves it out of ``tail``)
    locator = f.read(20) if end >= 20 else b""
    if locator[:4] != _LOCATOR:
        return end, end, offset, length
    record_at = struct.unpack_from("<Q", locator, 8)[0]
    f.seek(record_at)
    record = f.read(56)
    if len(record) < 56 or record[:4] != _END64:
        return None
    length, offset = struct.unpack_from("<QQ", record, 40)  # (zipfile's and torch's both)
    return end, record_at, offset, length


def _misplaced(f, start: int | None) -> str | None:
    """Why the archive open as ``f``, whose directory zipfile read from ``start`` (None: could
    not read), is read otherwise by torch's reader (miniz); None where both read it alike, or
    no end records are found where zipfile could read none. zipfile reads the
    directory that ends where the end records begin, the zip64 end record 56 bytes before its
    locator, and takes bytes before the archive (its members' offsets moved by as many);
    torch's reader reads the directory and members at the offsets the records give, the zip64
    one where its locator says: torch.save writes each where the others say."""
    ends = _ends(f)
    if ends is None:
        return None if start is None else "its zip64 locator points at no zip64 end record"
    end, record_at, offset, _ = ends
    if record_at != end and record_at != end - 20 - 56:
        return "its zip64 end record is not where zipfile reads it (extensible data, or moved)"
    if (
        start is not None and offset != start
    ):  # (its length the one zipfile read it by: from the same record)
        return (
            f"its directory lies at byte {start}, not {offset}, where its end records say "
            "(bytes before or within the archive)"
        )
    return None


def _directory(f) -> tuple[int, bytes] | None:
    """Where the central directory of the archive open as ``f`` starts, and its bytes with each
    entry's "version needed to extract" at most 6.3; None where its end records are not found
    or do not say where it lies (:func:`_misplaced`, said once zipfile has read it)."""
    ends = _ends(f)
    if ends is None or ends[3] > ends[1]:
        return None
    _, record_at, _, length = ends
    f.seek(record_at - length)  # (the directory zipfile reads: ending at the end records)
    directory = bytearray(f.read(length))
    i = 0
    while i + 46 <= len(directory) and directory[i : i + 4] == b"PK\x01\x02":
        directory[i + 6] = min(directory[i + 6], zipfile.MAX_EXTRACT_VERSION)
        n, m, k = struct.unpack_from("<HHH", directory, i + 28)
        i += 46 + n + m + k
    return record_at - length, bytes(directory)


class _WithDirectory:
    """The file ``f`` read with ``directory``'s bytes in place of its own from ``start`` on."""

    def __init__(self, f, start: int, directory: bytes):
        self.f, self.start, self.directory = f, start, directory

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def seekable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        at = self.f.tell()
        data = self.f.read(n)
        low = max(at, self.start)
        high = min(at + len(data), self.start + len(self.directory))
        if low >= high:
            return data
        part = self.directory[low - self.start : high - self.start]
        return data[: low - at] + part + data[high - at :]
