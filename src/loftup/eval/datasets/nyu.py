"""NYU Depth v2, the labelled set with the official split (795 train, 654 test images).

Layout (the two files of the official release, side by side)::

    ROOT/nyu_depth_v2_labeled.mat   MATLAB v7.3 (HDF5): images (N, 3, 640, 480) uint8,
                                    rawDepths (N, 640, 480) float32 metres (stored transposed)
    ROOT/splits.mat                 trainNdxs, testNdxs: 1-based indices into the N images

The ground truth is ``rawDepths``, the sensor's depth projected onto the image, 0 where the
sensor saw nothing, as Probe3D scores it; not ``depths``, the same maps with those holes filled
in by colorization, which would train and score the probe on filled-in guesses. Depth beyond
10 m is marked invalid (0) too, as in Probe3D.

Surface normals (:class:`NYUv2Normals`) are Ladicky et al.'s, for all 1449 labelled images, as
FAIR's self-supervision benchmark distributes them and Probe3D tests on them::

    ROOT/all_normals.pklz           gzip pickle of {"all_normals": (N, 480, 640, 3) float}
                                    (nyuv2_surfacenormal_metadata.zip, unzipped)

The pickle is read safely, once, into an ``all_normals.npy`` that later runs memory-map
(:mod:`.normals_file`, whose names are importable from here too). A normal is scored where
the sensor's depth is valid, as in Probe3D. Probe3D trains its probes on GeoNet's
larger frame set; this reader trains on the 795 official training images and tests on the same
654 official test images Probe3D tests on. Needs ``h5py`` (in the ``eval`` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import one_line
from ...read_refusal import read_refused
from .common import (
    FIX,
    DatasetError,
    home_expanded,
    limited,
    require,
    resize_short_crop,
    to_image_tensor,
)
from .normals_file import (
    NORMALS_HINT,
    NORMALS_NAME,
    NORMALS_NPY,
    normals_file_for_run,
    nyu_normals_file,
    read_normals_pickle,
)

MAT_NAME = "nyu_depth_v2_labeled.mat"
SPLITS_NAME = "splits.mat"
MAX_DEPTH = 10.0
DEPTH_KEY = "rawDepths"  # the sensor's depth (0 = none); "depths" has its holes filled in
NYU_HINT = (
    f"Put {MAT_NAME} and {SPLITS_NAME} from the NYU Depth v2 site in ROOT (see the README's "
    "Evaluation section)."
)


def nyu_indices(root: str | Path, split: str) -> list[int]:
    """0-based indices of ``split`` ('train' or 'test'; 'val' means 'test').

    A DatasetError naming ``splits.mat`` where the split is not a list of whole indices
    >= 1, lists none, lists an image twice (its scores would count twice in the means), or
    shares an image with the other split (a probe scored on images it was trained on): the
    official file does none of these."""
    from scipy.io import loadmat

    key = {"train": "trainNdxs", "test": "testNdxs", "val": "testNdxs"}.get(split)
    if key is None:
        raise DatasetError(f"nyuv2 has splits 'train' and 'test', not {split!r}")
    other = "testNdxs" if key == "trainNdxs" else "trainNdxs"
    path = require(home_expanded(root, "dataset root") / SPLITS_NAME, "NYUv2 splits", NYU_HINT)
    expected = "expected the official splits.mat with trainNdxs and testNdxs (1-based indices)"
    try:
        mat = loadmat(path, variable_names=[key, other])
    except Exception as e:  # noqa: BLE001 - scipy raises several kinds for a file it cannot read
        why = one_line(e)  # of a file it may not open: "Reader needs file name or ...", so
        refused = read_refused(path, what="NYUv2 splits")  # opened to see
        raise refused or DatasetError(
            f"cannot read {path} as a MATLAB file ({why}); {expected}"
        ) from None
    if key not in mat:
        raise DatasetError(f"{path} has no {key}; {expected}")
    values = np.asarray(mat[key]).reshape(-1)
    if not _whole_from_one(values):
        raise DatasetError(f"{path}: {key} is not a list of indices >= 1; {expected}")
    if not values.size:  # else a probe trained on nothing, or no image scored
        raise DatasetError(f"{path}: {key} lists no image; {expected}")
    seen, counts = np.unique(values, return_counts=True)
    if counts.max() > 1:
        i = int(np.argmax(counts > 1))
        raise DatasetError(
            f"{path}: {key} lists image {int(seen[i])} {counts[i]} times, and its scores would "
            f"count as many times in the means; {expected}, each image once"
        )
    others = np.asarray(mat.get(other, [])).reshape(-1)
    both = np.intersect1d(seen, others) if _whole_from_one(others) else []
    if len(both):
        raise DatasetError(
            f"{path}: image {int(both[0])} is in both trainNdxs and testNdxs ({len(both)} "
            f"images are), so the probe would be scored on images it was trained on; "
            f"{expected}, whose splits share no image"
        )
    return [int(i) - 1 for i in values]


def _whole_from_one(values: np.ndarray) -> bool:
    """Whether ``values`` are numbers that are whole and at least 1 (1-based indices)."""
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.isfinite(values) & (values >= 1) & (values == np.round(values))))


class NYUv2Depth(torch.utils.data.Dataset):
    """Items: ``image`` float (3, S, S) in [0, 1], ``depth`` float (S, S) metres (0 = invalid),
    ``key`` a string naming the image (file + index), after the FeatUp resize and centre crop.

    Arguments:
      root: folder with the two .mat files.
      split: 'train' or 'test'.
      size: output side S.
      limit: only the first ``limit`` images of the split.
      backbone_size: side of the image the backbone sees (``backbone_image``), when not S.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        size: int,
        limit: int | None = None,
        backbone_size: int | None = None,
    ):
        self.root = home_expanded(root, "dataset root")
        self.mat = require(self.root / MAT_NAME, "NYUv2 labelled set", NYU_HINT)
        self.indices = limited(nyu_indices(self.root, split), limit)
        self.size = size
        self.backbone_size = backbone_size if backbone_size != size else None
        self._file = None
        self._check()

    def _check(self) -> None:
        """DatasetError, naming the file and what it should hold, unless the labelled set has
        ``images`` (N, 3, W, H) and ``rawDepths`` (N, W, H) covering every index of the split."""
        with self._open() as f:  # closed again: DataLoader workers open their own
            self._check_file(f)

    def _check_file(self, f) -> None:
        expected = (
            f"expected the official nyu_depth_v2_labeled.mat with images (N, 3, 640, 480) and "
            f"{DEPTH_KEY} (N, 640, 480)"
        )
        shapes = {}
        for key, ndim in (("images", 4), (DEPTH_KEY, 3)):
            data = f.get(key)
            if data is None or not hasattr(data, "shape"):
                raise DatasetError(f"{self.mat} has no {key!r} dataset; {expected}")
            if len(data.shape) != ndim:
                raise DatasetError(f"{self.mat}: {key!r} has shape {tuple(data.shape)}; {expected}")
            shapes[key] = tuple(data.shape)
        n = min(shapes["images"][0], shapes[DEPTH_KEY][0])
        if shapes["images"][1] != 3 or shapes["images"][2:] != shapes[DEPTH_KEY][1:]:
            raise DatasetError(
                f"{self.mat}: images {shapes['images']} and {DEPTH_KEY} {shapes[DEPTH_KEY]} do "
                f"not match; {expected}"
            )
        beyond = [i for i in self.indices if i >= n]
        if beyond:
            raise DatasetError(
                f"{self.root / SPLITS_NAME} lists image {beyond[0] + 1} but {self.mat} holds "
                f"{n}; the two files are not from the same release"
            )

    def __len__(self) -> int:
        return len(self.indices)

    def _open(self):
        import h5py

        try:
            return h5py.File(self.mat, "r")
        except OSError as e:
            why = one_line(e, None)
            raise read_refused(self.mat, e, "NYUv2 labelled set") or DatasetError(
                f"{self.mat} is not a MATLAB v7.3 (HDF5) file ({why}); expected the official "
                f"nyu_depth_v2_labeled.mat"
            ) from None

    def _h5(self):
        if self._file is None:
            self._file = self._open()
        return self._file

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        f, n = self._h5(), self.indices[i]
        try:
            rgb = np.asarray(f["images"][n]).transpose(2, 1, 0)  # (480, 640, 3)
            depth = np.asarray(f[DEPTH_KEY][n], dtype=np.float32).T  # (480, 640)
        except (OSError, KeyError, ValueError) as e:  # a damaged chunk of the file
            why = one_line(e)
            raise DatasetError(f"cannot read image {n + 1} of {self.mat} ({why}); {FIX}") from None
        rgb, depth = np.ascontiguousarray(rgb), np.ascontiguousarray(depth)
        image = resize_short_crop(Image.fromarray(rgb), self.size, nearest=False)
        depth_img = resize_short_crop(Image.fromarray(depth), self.size, nearest=True)
        d = torch.from_numpy(np.array(depth_img, dtype=np.float32))
        d[d > MAX_DEPTH] = 0.0
        item = {"image": to_image_tensor(image), "depth": d, "key": f"{self.mat.resolve()}#{n}"}
        if self.backbone_size:
            big = resize_short_crop(Image.fromarray(rgb), self.backbone_size, nearest=False)
            item["backbone_image"] = to_image_tensor(big)
        return item

    def __getstate__(self):  # h5py handles do not pickle (DataLoader workers reopen)
        state = dict(self.__dict__)
        state["_file"] = None
        return state


class NYUv2Normals(NYUv2Depth):
    """Items of :class:`NYUv2Depth` (``depth`` 0 where nothing is scored) plus ``normals``
    float (3, S, S): the surface normal of each pixel after the same resize (nearest) and
    crop, from ``normals`` (an (N, H, W, 3) ``.npy``; default: :func:`nyu_normals_file`)."""

    def __init__(self, root: str | Path, *args, normals=None, cache_dir=None, **kwargs):
        """``root, split, size, limit, backbone_size`` as :class:`NYUv2Depth`'s; ``cache_dir``:
        where the pickle is converted (see :func:`nyu_normals_file`)."""
        self.normals_path = Path(normals) if normals else nyu_normals_file(root, cache_dir)
        self._normals = None
        super().__init__(root, *args, **kwargs)

    def _check_file(self, f) -> None:
        super()._check_file(f)
        try:
            normals = np.load(self.normals_path, mmap_mode="r")
        except (OSError, ValueError) as e:
            why = one_line(e)
            refused = read_refused(self.normals_path, e, "NYUv2 surface normals")
            raise refused or DatasetError(
                f"cannot read {self.normals_path} ({why}); {FIX}"
            ) from None
        n, w, h = f["images"].shape[0], *f["images"].shape[2:]
        if normals.ndim != 4 or normals.shape[1:] != (h, w, 3) or normals.shape[0] < n:
            raise DatasetError(
                f"{self.normals_path} holds normals of shape {normals.shape}, but {self.mat} "
                f"has {n} images of {w}x{h}: expected ({n}, {h}, {w}, 3), Ladicky et al.'s "
                f"normals of the same labelled set"
            )

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        item = super().__getitem__(i)
        if self._normals is None:
            self._normals = np.load(self.normals_path, mmap_mode="r")
        n = self.indices[i]
        try:
            normal = np.asarray(self._normals[n], dtype=np.float32)  # (480, 640, 3)
        except (OSError, ValueError) as e:
            why = one_line(e)
            raise DatasetError(
                f"cannot read normals {n + 1} of {self.normals_path} ({why})"
            ) from None
        channels = [
            np.array(resize_short_crop(Image.fromarray(np.ascontiguousarray(normal[..., c])),
                                       self.size, nearest=True), dtype=np.float32)
            for c in range(3)
        ]  # fmt: skip
        item["normals"] = torch.from_numpy(np.stack(channels))
        return item

    def __getstate__(self):  # a memory map reopens in each DataLoader worker
        state = super().__getstate__()
        state["_normals"] = None
        return state


__all__ = [  # the normals file's names too, importable from here as they always were
    "DEPTH_KEY",
    "MAT_NAME",
    "MAX_DEPTH",
    "NORMALS_HINT",
    "NORMALS_NAME",
    "NORMALS_NPY",
    "NYU_HINT",
    "NYUv2Depth",
    "NYUv2Normals",
    "SPLITS_NAME",
    "normals_file_for_run",
    "nyu_indices",
    "nyu_normals_file",
    "read_normals_pickle",
]
