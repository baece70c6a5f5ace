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
    which torch loads; zipfile's own error where its directory cannot be found."""
    try:
        return zipfile.ZipFile(f)
    except NotImplementedError as e:
        if not str(e).startswith("zip file version"):
            raise
        found = _directory(f)
        if found is None:
            raise
    return zipfile.ZipFile(_WithDirectory(f, *found))


def _directory(f) -> tuple[int, bytes] | None:
    """Where the central directory of the archive open as ``f`` starts, and its bytes with each
    entry's "version needed to extract" at most 6.3; None where its end record is not found."""
    f.seek(0, 2)
    size = f.tell()
    f.seek(max(0, size - _END_SPAN))
    tail = f.read()
    at = len(tail) - 22  # where zipfile reads it first: no comment (and the signature there)
    if at < 0 or tail[at : at + 4] != _END or tail[-2:] != b"\0\0":
        at = tail.rfind(_END)  # (not the signature its own fields may hold, 10 bytes in)
    if at < 0 or len(tail) - at < 22:
        return None
    end = size - len(tail) + at  # (where the directory ends, or its zip64 records begin)
    length = struct.unpack_from("<I", tail, at + 12)[0]
    f.seek(max(0, end - 20))  # (from the file: a long comment leaves it out of ``tail``)
    if end >= 20 and f.read(4) == _LOCATOR:  # zip64: its length in its own record
        f.seek(max(0, end - 20 - 56))
        record = f.read(56)
        if end < 76 or record[:4] != _END64:
            return None
        end, length = end - 20 - 56, struct.unpack_from("<Q", record, 40)[0]
    if length > end:
        return None
    f.seek(end - length)
    directory = bytearray(f.read(length))
    i = 0
    while i + 46 <= len(directory) and directory[i : i + 4] == b"PK\x01\x02":
        directory[i + 6] = min(directory[i + 6], zipfile.MAX_EXTRACT_VERSION)
        n, m, k = struct.unpack_from("<HHH", directory, i + 28)
        i += 46 + n + m + k
    return end - length, bytes(directory)


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
