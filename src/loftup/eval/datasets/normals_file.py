"""Ladicky et al.'s surface normals of the NYUv2 labelled set, as a file a run can memory-map.

FAIR's self-supervision benchmark distributes them (and Probe3D tests on them) as::

    ROOT/all_normals.pklz           gzip pickle of {"all_normals": (N, 480, 640, 3) float}
                                    (nyuv2_surfacenormal_metadata.zip, unzipped)

A pickle can run code when loaded, so it is read by an unpickler that builds NumPy arrays and
nothing else (:func:`read_normals_pickle`), once, into ``all_normals.npy`` (N, 480, 640, 3)
float32 in the cache folder (:func:`nyu_normals_file`), which later runs memory-map; an
``all_normals.npy`` in ROOT is used as it is. The reader of the images with their normals is
:class:`.nyu.NYUv2Normals`.
"""

from __future__ import annotations

import gzip
import pickle
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ...errors import one_line, printable
from ...paths import there
from ...read_refusal import read_refused
from .common import DatasetError, home_expanded, require

NORMALS_NAME = "all_normals.pklz"
NORMALS_NPY = "all_normals.npy"
NORMALS_HINT = (
    f"Put {NORMALS_NAME} (Ladicky et al.'s normals of the labelled set) in ROOT: it is in "
    "nyuv2_surfacenormal_metadata.zip of FAIR's fair_self_supervision_benchmark "
    "(dl.fbaipublicfiles.com/fair_self_supervision_benchmark/), which Probe3D uses too."
)

#: What the normals pickle may name: NumPy's array reconstruction and nothing else (a pickle
#: that names anything more is refused, not run). Both NumPy 1's and NumPy 2's module paths.
_ARRAY_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which is not a NumPy array")
        return super().find_class(module, name)


def read_normals_pickle(path: str | Path) -> np.ndarray:
    """The (N, H, W, 3) array of FAIR's ``all_normals.pklz`` (gzip pickle of a dict with
    ``all_normals``), read by an unpickler that builds NumPy arrays only: a pickle naming any
    other global is a DatasetError, and nothing it names is run."""
    path = Path(path)
    expected = f"expected FAIR's {NORMALS_NAME}: a gzip pickle of {{'all_normals': (N, H, W, 3)}}"
    try:
        with gzip.open(path, "rb") as f:
            # Python 2 wrote it: its str are bytes, which latin-1 maps one to one
            data = _ArraysOnly(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        why = one_line(e)
        refused = read_refused(path, e, "NYUv2 surface normals")
        raise refused or DatasetError(f"cannot read {path} ({why}); {expected}") from None
    normals = data.get("all_normals") if isinstance(data, dict) else None
    if not isinstance(normals, np.ndarray) or normals.ndim != 4 or normals.shape[-1] != 3:
        got = type(normals).__name__ if not isinstance(normals, np.ndarray) else normals.shape
        raise DatasetError(f"{path}: all_normals is {got}; {expected}")
    return normals


def normals_source(root: str | Path) -> Path:
    """The dataset's own file of the normals under ``root``: ``ROOT/all_normals.npy`` where
    there is one (used as it is), else ``ROOT/all_normals.pklz`` (converted)."""
    root = home_expanded(root, "dataset root")
    npy = root / NORMALS_NPY
    return npy if there(npy, "NYUv2 surface normals") else root / NORMALS_NAME


def nyu_normals_file(
    root: str | Path, cache_dir: str | Path | None = None, *, for_run: bool = False
) -> Path:
    """The ``.npy`` (N, H, W, 3) float32 of the normals under ``root``: ``ROOT/all_normals.npy``
    if there is one, else ``ROOT/all_normals.pklz`` converted once into ``cache_dir`` (default:
    loftup's cache folder) under a name that changes with the pickle's size and date
    (``for_run``: ``cache_dir`` is this run's temporary folder, as the message says)."""
    from ...atomic import atomic_write

    source = normals_source(root)
    if source.name == NORMALS_NPY:
        return source
    require(source, "NYUv2 surface normals", NORMALS_HINT)
    if cache_dir is None:
        from ..features import default_cache_dir

        cache_dir = default_cache_dir()
    st = source.stat()
    name = f"all_normals-{st.st_size}-{st.st_mtime_ns}.npy"
    target = home_expanded(cache_dir, "cache folder") / "nyuv2" / name
    # a file of loftup's own cache, made here: not one to copy (a run cannot write it either)
    fix = "give cache_dir (--cache-dir) a folder of this user's"
    if there(target, "converted normals", fix, to_make=True):
        return target
    from tqdm.auto import tqdm

    # a few GB to unpickle, once: said, since it is silent for a minute or so
    when = "for this run only (--no-cache)" if for_run else "once; later runs memory-map it"
    tqdm.write(printable(f"converting {source} into {target} ({when})"), file=sys.stderr)
    normals = read_normals_pickle(source).astype(np.float32, copy=False)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file, not a name: np.save would add ".npy" to the name
            np.save(f, normals)

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, write)
    except OSError as e:  # not writable, or full: a few GB
        raise DatasetError(
            f"cannot write the converted normals ({normals.nbytes / 1e9:.1f} GB) to {target} "
            f"({one_line(e)}); give --cache-dir a writable folder with that much free space "
            f"(with --no-cache: TMPDIR), or put all_normals.npy (N, 480, 640, 3) float32 in ROOT"
        ) from None
    return target


@contextmanager
def normals_file_for_run(root: str | Path, cache_dir: str | Path | None):
    """:func:`nyu_normals_file` for one run: ``cache_dir`` None (``--no-cache``) converts the
    pickle into a temporary folder (under ``TMPDIR``) removed when the block ends, so that
    nothing is written to (or read from) a cache."""
    root = home_expanded(root, "dataset root")
    if cache_dir is not None or normals_source(root).name == NORMALS_NPY:
        yield nyu_normals_file(root, cache_dir)
        return
    with tempfile.TemporaryDirectory(prefix="loftup-normals-") as tmp:
        yield nyu_normals_file(root, tmp, for_run=True)
