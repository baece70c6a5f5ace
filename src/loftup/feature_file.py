"""A feature file filled in place through a memory map, tile by tile (:class:`FeatureFile`):
what ``loftup upsample`` streams an output too large to hold into, and ``upsample_to_npy``."""

from __future__ import annotations

import errno
import io
import json
import os
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

from .atomic import remove_temps, replace_durably, temp_beside
from .errors import UsageError
from .outputs import _check_format, _serialising

#: How each stored dtype is mapped (NumPy has no bfloat16: its 16 bits as unsigned integers),
#: and its name in a safetensors header.
_MAPPED = {
    torch.float32: (np.float32, "F32"),
    torch.float16: (np.float16, "F16"),
    torch.bfloat16: (np.uint16, "BF16"),
}


#: posix_fallocate's answers that mean "not supported" rather than "no room".
_NO_FALLOCATE = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


def _stored_dtype(dtype) -> torch.dtype:
    """The torch dtype that ``dtype`` names (:func:`loftup.checks.as_dtype`), or a UsageError
    saying what a feature file holds."""
    from .checks import as_dtype

    if dtype is None:  # not float32 by default: the constructor's dtype is said, never assumed
        raise UsageError("a feature file's dtype is float32, float16 or bfloat16, got None")
    try:
        return as_dtype(dtype)
    except UsageError:
        raise UsageError(
            f"a feature file holds float32, float16 or bfloat16, not {dtype!r}; pass one of those"
        ) from None


class FeatureFile:
    """A feature file filled in place through a memory map, tile by tile: an output of any
    size in the memory of one tile, and the same bytes as :func:`loftup.outputs.save_features` writes for the
    same values (tested for every format and dtype).

        with FeatureFile("feats/a.npy", "npy", torch.float32, (384, 4000, 3000)) as f:
            f.features[:, rows, cols] = tile  # a (C, H, W) tensor mapping the file's data
        # the block left: committed (renamed onto its path), or, left by an exception,
        # discarded (nothing is left behind)

    A block left without an exception (its end, or a ``break``/``return`` in it) commits
    whatever was written, the rest zeros, where ``features`` was used at all; where it was
    never used (a ``break`` before any tile: nothing was written), the file is discarded,
    with a warning, not put in place as zeros. To leave a block early without its file, call
    ``f.discard()`` first.

    Without ``with``: ``f.commit()``, or ``f.discard()``. One dropped uncommitted (the last
    reference gone, or the interpreter ending) is discarded: its temporary files, whose space
    was reserved whole (18 GB for a 12-megapixel photo's features), are not left behind.

    The file is made under a temporary name in the destination folder and its space reserved
    at once, so a full disk is an ``OSError`` here (not a crash on a later write through the
    map). A ``.pt`` file is a zip archive: its data is mapped in a second temporary file and
    saved into the archive at ``commit`` (twice its size on disk until then, both reserved at
    once). Features are (C, H, W); any other shape is mapped alike
    (:func:`loftup.tiling.upsample_to_npy` writes whole batches, in either layout).

    ``owner``: a list the file appends itself to before any temporary file is made, for a
    caller to discard on an error or an interruption: one that comes as the constructor
    returns (a SIGTERM, Ctrl-C) would otherwise lose the file, and its temporary files with it.
    """

    def __init__(
        self, path: str | Path, fmt: str, dtype: torch.dtype | str, shape: tuple, *, owner=None
    ) -> None:
        if not (isinstance(dtype, torch.dtype) and dtype in _MAPPED):  # a name ("float32",
            dtype = _stored_dtype(dtype)  # "bf16") read as the pipeline's: it was refused
        _check_format(fmt, dtype)
        shape = tuple(int(n) for n in shape)
        if not shape or min(shape) < 1:
            raise UsageError(f"a feature file needs a shape with positive sizes, got {shape}")
        path = Path(os.path.expanduser(os.fspath(path)))  # "~/x.npy" made a folder named ~
        self.path, self.fmt, self.dtype, self.shape = path, fmt, dtype, shape
        np_dtype, st_name = _MAPPED[dtype]
        nbytes = int(np.prod(shape)) * np.dtype(np_dtype).itemsize
        self._temps: list[str] = []  # each named before it is made (temp_beside's into)
        # dropped uncommitted: its temporary files removed (the list alone: no cycle to self)
        weakref.finalize(self, _remove_quietly, self._temps)
        self._tmp = self._raw = None  # the file, and the .pt data mapped beside the archive
        self._map = self._features = None
        self._used = False  # whether `features` was read: nothing was written where not
        self._busy = threading.Lock()  # held by commit (a writer thread) and discard
        if owner is not None:
            owner.append(self)
        try:
            self._tmp = temp_beside(self.path, into=self._temps)
            if fmt == "npy":
                header = io.BytesIO()  # exactly what numpy.save writes before the data
                descr = np.lib.format.dtype_to_descr(np.dtype(np_dtype))
                d = {"descr": descr, "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(header, d)
                mapped = self._reserve(self._tmp, header.getvalue(), nbytes)
            elif fmt == "safetensors":  # a little-endian length, a JSON header padded to 8
                meta = {
                    "features": {
                        "dtype": st_name,
                        "shape": list(shape),
                        "data_offsets": [0, nbytes],
                    }
                }
                text = json.dumps(meta, separators=(",", ":")).encode()
                text += b" " * (-len(text) % 8)
                mapped = self._reserve(self._tmp, len(text).to_bytes(8, "little") + text, nbytes)
            else:
                self._raw = temp_beside(self.path, into=self._temps)
                mapped = self._reserve(self._raw, b"", nbytes)
                # the archive's room too, kept until commit writes over it: with room for one
                # copy only, the save at commit failed for lack of room after all the work
                self._reserve(self._tmp, b"", nbytes)
            self._map = np.memmap(mapped[0], np_dtype, "r+", offset=mapped[1], shape=shape)
            t = torch.from_numpy(self._map)
            self._features = t.view(torch.bfloat16) if dtype == torch.bfloat16 else t
        except BaseException:
            self._drop()
            raise

    @staticmethod
    def _reserve(tmp: str, header: bytes, nbytes: int) -> tuple[str, int]:
        """Write ``header`` and reserve ``nbytes`` after it: (file, offset of the data)."""
        with open(tmp, "r+b") as f:
            f.write(header)
            f.flush()
            try:  # ENOSPC now, not SIGBUS on a write through the map later
                os.posix_fallocate(f.fileno(), len(header), nbytes)
            except (AttributeError, OSError) as e:  # no such call here, or not on this file system
                if getattr(e, "errno", None) not in (None, *_NO_FALLOCATE):
                    raise
                f.truncate(len(header) + nbytes)
        return tmp, len(header)

    @property
    def features(self) -> torch.Tensor | None:
        """(C, H, W) in ``dtype``, mapping the file's data: write the features here (None once
        committed or discarded)."""
        self._used = True
        return self._features

    def __enter__(self) -> FeatureFile:
        return self

    def __exit__(self, kind, error, tb) -> None:
        """The block left: committed if it ended without an exception (and was not committed or
        discarded in it) and ``features`` was used in it, else discarded (with a warning where
        it ended cleanly: nothing was written); the exception goes on."""
        if kind is None:
            if not self.done and not self._used:
                self.discard()
                warnings.warn(
                    f"{self.path} was not written: its block ended (a break or return?) before "
                    "its features were used, and a file of zeros is not put in place",
                    stacklevel=2,
                )
            elif not self.done:
                self.commit()
        else:
            self.discard()

    @property
    def done(self) -> bool:
        """Whether it was committed or discarded (it has no temporary file left)."""
        return not self._temps

    def commit(self) -> None:
        """Flush the data and put the complete file in place (renamed onto ``path``); one
        that fails is discarded. Once committed or discarded, a RuntimeError."""
        with self._busy:
            if self._map is None:
                raise RuntimeError(f"{self.path} was committed or discarded already")
            self._commit()

    def _commit(self) -> None:
        try:
            self._map.flush()
            if self.fmt == "pt":
                with open(self._tmp, "r+b") as f:  # over its reserved room, cut after
                    _serialising(lambda: torch.save(self._features, f))
                    f.truncate()
            self._features = self._map = None
            if self._raw is not None:
                os.unlink(self._raw)
                self._raw = None
            replace_durably(self._tmp, self.path)
            self._tmp = None
            self._temps.clear()
        except BaseException:
            self._drop()
            raise

    def discard(self) -> None:
        """Drop the map and the temporary files; ``path`` is left as it was. While another
        thread commits it, that commit has the last word (the file put in place or, failing,
        removed)."""
        if self._busy.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._busy.release()

    def _drop(self) -> None:
        self._features = self._map = None
        remove_temps(self._temps)
        self._tmp = self._raw = None


def _remove_quietly(temps: list) -> None:
    """A dropped file's temporary files removed (:func:`remove_temps`); one that cannot be is
    left, said by nothing: a finalizer has no caller to tell."""
    try:
        remove_temps(temps)
    except OSError:
        pass
