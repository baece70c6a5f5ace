"""The zip archive ``torch.save`` writes, checked before it is loaded (:func:`check_zip`: each
member stored, not compressed, and against its CRC-32, a read error said as one), and loaded
with its tensors memory-mapped (:func:`mapped_load`: the bytes checked are the ones mapped),
for :func:`~.files.torch_load`."""

from __future__ import annotations

import errno
import os
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..escaping import printable
from .zip_layout import NOT_LOADED, layout_refusal, script_refusal
from .zip_open import open_zip

#: What torch says where ``UntypedStorage.from_file`` cannot map a file (a file system that maps
#: none: some FUSE mounts, ENODEV), in the RuntimeError it raises for the system's error
_NOT_MAPPED = ("unable to mmap", "unable to open file", "mmap() failed")
#: What zipfile says of an archive whose end record it cannot find (a file that begins as a
#: zip archive: a download or copy cut short), said as that, not as "not a zip file"
_NO_END_SAID = "File is not a zip file"
_NO_END = "its zip archive has no end: cut short, as an interrupted download or copy leaves it"


def check_zip(file, name: str, fix: str, path: Path | None = None) -> None:
    """A CheckpointError when a member of the zip archive open as ``file`` fails its
    CRC-32 (bytes changed after torch.save wrote it: ``fix`` offered), or when it cannot be read
    (an I/O error: said as such, not passed as good, with its own fix: the file may be whole,
    not to be thrown away), or when Python's zipfile cannot read it (cut short, its directory
    not where its end records say, a member's header not its directory's: corrupt or
    truncated, ``fix`` offered), not left to torch.load, whose reader loads some such archives
    (zip64 end records with extensible data, a directory said longer than it is) unchecked.
    Members stored with a CRC of 0 have their headers checked alone: ``torch.save`` writes 0
    when told not to compute them (``torch.utils.serialization.config.save.compute_crc32 = False``).
    Before any member is read: members listed twice or overlapping are refused
    (:func:`~.zip_layout.layout_refusal`), a TorchScript archive (at ``path``) is told as one
    (:func:`~.zip_layout.script_refusal`), a member compressed is refused
    (:func:`_refuse_compressed`). An archive whose directory says a member needs a zip version
    above 6.3 (zipfile's limit) is read as torch reads it (:func:`~.zip_open.open_zip`); any
    other feature zipfile does not read (a NotImplementedError) is refused in one line."""
    bad = packed = refusal = None
    try:
        with open_zip(file) as z:
            refusal = layout_refusal(z, name) or script_refusal(z, name, path)
            for info in z.infolist() if refusal is None else ():
                if info.compress_type != zipfile.ZIP_STORED:  # before a byte is inflated
                    packed = info
                    break
                if info.CRC == 0:  # (no checksum to match: its header checked alone)
                    z.open(info).close()
                    continue
                try:
                    with z.open(info) as f:
                        while f.read(1 << 24):
                            pass
                except zipfile.BadZipFile as e:  # "Bad CRC-32 for file ...", or a header's
                    if not str(e).startswith("Bad CRC-32"):  # ("... and header ... differ")
                        raise
                    bad = info.filename
                    break
    except NotImplementedError as e:  # (a feature zipfile does not read: torch.save's none)
        refusal = (
            f"{name} was not written by torch.save: it uses a zip feature Python's zipfile does "
            f"not read ({e}), which torch.save never writes{NOT_LOADED}"
        )
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        failed = _read_error(e)
        if failed is None:  # (torch's reader may load what zipfile cannot: none checked)
            said = _NO_END if str(e) == _NO_END_SAID else f"its zip archive: {printable(str(e))}"
            raise CheckpointError(
                f"{name} is corrupt or truncated and cannot be read ({said}); {fix}"
            ) from None
        code = errno.errorcode.get(failed.errno, failed.errno)
        raise CheckpointError(  # not ``fix``, for a file of unsafe content: the file may be whole
            f"{name} could not be read: {code} ({failed.strerror}), a disk or file-system "
            "error: check the disk (dmesg), copy the file elsewhere, then run again"
        ) from None
    if refusal is not None:  # (raised here: a CheckpointError is a ValueError, caught above)
        raise CheckpointError(refusal)
    if packed is not None:
        _refuse_compressed(name, packed)
    if bad is not None:
        raise CheckpointError(
            f"{name} is corrupt: its member {bad!r} does not match the checksum written with it "
            f"(damaged bytes); {fix}"
        )


def _refuse_compressed(name: str, info: zipfile.ZipInfo) -> None:
    """The refusal of the archive ``name`` whose member ``info`` is compressed: torch.save
    stores every member as it is, and torch.load would inflate it whole (a crafted one of 1 MB
    to gigabytes in memory) before any check of what its pickle holds."""
    method = zipfile.compressor_names.get(info.compress_type, f"method {info.compress_type}")
    raise CheckpointError(
        f"{name} was not written by torch.save: its member {info.filename!r} is compressed "
        f"({method}), which torch.save never does (an archive repacked, or crafted to inflate "
        f"to far more than its size){NOT_LOADED}"
    )


def _read_error(e: Exception) -> OSError | None:
    """The error of the system that ``e`` is or that zipfile says as "not a zip file" (an error
    reading its end record), but for the EINVAL of a seek before the start of a file cut
    short; None where ``e`` is none (a damaged or cut archive)."""
    if not isinstance(e, OSError):
        e = e.__context__
    if isinstance(e, OSError) and e.errno not in (None, errno.EINVAL):
        return e
    return None


def mapped_load(f, path) -> object | None:
    """``torch.load`` of the zip archive open as ``f`` (at ``path``) with its tensors mapped,
    not read: the very file ``f`` is (``/proc/self/fd/N`` on Linux; elsewhere ``path`` where
    it is still that file), whose bytes were checked. None where it cannot be mapped (a file
    system that maps no files; ``path`` now another file): the caller reads ``f`` whole. Any
    other error is torch.load's, raised (a regression in this call is not read whole, silently)."""
    fd = f.fileno()
    name = f"/proc/self/fd/{fd}"
    try:
        if not os.path.samestat(os.stat(name), os.fstat(fd)):
            raise OSError(errno.ENOENT, "not this file")
    except OSError:  # no /proc (macOS, BSD): the path, where it is still the file checked
        name = os.fspath(path)
        try:
            if not os.path.samestat(os.stat(name), os.fstat(fd)):
                return None
        except OSError:
            return None
    try:
        return torch.load(name, map_location="cpu", weights_only=True, mmap=True)
    except OSError:  # ENODEV, EINVAL, EACCES, ENOMEM...: said by a Python-level open or map
        return None
    except RuntimeError as e:  # said by UntypedStorage.from_file
        if any(mark in str(e) for mark in _NOT_MAPPED):
            return None
        raise
