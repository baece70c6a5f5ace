"""Tiny datasets written in each dataset's exact on-disk layout; the backbone the tests use.

Images are a few dozen pixels; each holds two colour regions whose class follows the colour,
so that a linear probe has something to learn.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

TEST_BACKBONE = "dinov2_tiny"  # a real Dinov2Model with seeded random weights
DIM = 32
COLOURS = {0: (200, 40, 40), 1: (40, 60, 210), 2: (40, 190, 60)}


def two_region_image(
    rng: np.random.Generator, h: int, w: int, classes: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image (H, W, 3) uint8 and its class map (H, W): left part / right part."""
    split = int(rng.integers(w // 3, 2 * w // 3))
    cls = np.empty((h, w), dtype=np.int64)
    cls[:, :split], cls[:, split:] = classes
    rgb = np.zeros((h, w, 3), dtype=np.float64)
    for c in classes:
        rgb[cls == c] = COLOURS[c]
    rgb += rng.normal(0, 8, size=rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), cls


def _save_rgb(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if path.suffix == ".jpg" else {}
    Image.fromarray(arr).save(path, **options)


def _save_label(arr: np.ndarray, path: Path, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr.astype(np.uint8))
    if palette:
        img.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, i)])
    img.save(path)


def _pairs(n: int, seed: int, h: int = 36, w: int = 44):
    rng = np.random.default_rng(seed)
    for i in range(n):
        classes = (0, 1) if i % 2 == 0 else (2, 0)
        yield i, *two_region_image(rng, h, w, classes)


def write_cocostuff(root: Path, n: int = 4) -> Path:
    """ROOT/cocostuff/{images,annotations,curated}/{train2017,val2017}; fine ids 0/1/156."""
    base = root / "cocostuff"
    fine = {0: 0, 1: 2, 2: 156}  # person -> 9, bicycle -> 11, fine 156 -> 23
    for split, seed in (("train2017", 0), ("val2017", 1)):
        ids = []
        for i, rgb, cls in _pairs(n, seed):
            iid = f"{i + 1:012d}"
            ids.append(iid)
            raw = np.vectorize(fine.get)(cls)
            raw[raw.shape[0] // 2, :] = 255  # unlabelled
            _save_rgb(rgb, base / "images" / split / f"{iid}.jpg")
            _save_label(raw, base / "annotations" / split / f"{iid}.png")
        lst = base / "curated" / split / "Coco164kFull_Stuff_Coarse.txt"
        lst.parent.mkdir(parents=True, exist_ok=True)
        lst.write_text("\n".join(ids) + "\n")
    return base


def write_cityscapes(root: Path, n: int = 4) -> Path:
    """ROOT/{leftImg8bit,gtFine}/{train,val}/CITY/...; labelIds 7 (road), 26 (car), 24."""
    base = root / "cityscapes"
    label_ids = {0: 7, 1: 26, 2: 24}
    for split, seed, city in (("train", 0, "aachen"), ("val", 1, "frankfurt")):
        for i, rgb, cls in _pairs(n, seed, 36, 72):
            stem = f"{city}_{i:06d}_000019"
            raw = np.vectorize(label_ids.get)(cls)
            raw[raw.shape[0] // 2, :] = 1  # ego vehicle -> not scored
            _save_rgb(rgb, base / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            _save_label(raw, base / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
    return base


def write_ade20k(root: Path, n: int = 4) -> Path:
    """ROOT/ADEChallengeData2016/{images,annotations}/{training,validation}; 0 = other."""
    base = root / "ADEChallengeData2016"
    for split, seed, tag in (("training", 0, "train"), ("validation", 1, "val")):
        for i, rgb, cls in _pairs(n, seed):
            stem = f"ADE_{tag}_{i + 1:08d}"
            raw = cls + 1
            raw[raw.shape[0] // 2] = 0
            _save_rgb(rgb, base / "images" / split / f"{stem}.jpg")
            _save_label(raw, base / "annotations" / split / f"{stem}.png")
    return base


def write_voc(root: Path, n: int = 4) -> Path:
    """ROOT/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}."""
    base = root / "VOCdevkit" / "VOC2012"
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    for split, seed in (("train", 0), ("val", 1)):
        ids = []
        for i, rgb, cls in _pairs(n, seed):
            iid = f"2007_{seed}{i:05d}"
            ids.append(iid)
            raw = cls.copy()
            raw[raw.shape[0] // 2, :] = 255  # border
            _save_rgb(rgb, base / "JPEGImages" / f"{iid}.jpg")
            _save_label(raw, base / "SegmentationClass" / f"{iid}.png", palette=True)
        (sets / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return base


def write_nyu_normals(root: Path, n: int = 6, h: int = 48, w: int = 64) -> np.ndarray:
    """ROOT/all_normals.pklz as FAIR's benchmark ships it: a gzip pickle of
    {"all_normals": (N, H, W, 3)}, written with protocol 2 (Python 2's). The normals: unit
    vectors, one per region of write_nyuv2's images (same seed), so features can predict them."""
    import gzip
    import pickle

    rng = np.random.default_rng(0)
    normals = np.zeros((n, h, w, 3), dtype=np.float32)
    faces = np.array([[0.0, 0.0, 1.0], [0.8, 0.0, 0.6]], dtype=np.float32)
    for i in range(n):
        _, cls = two_region_image(rng, h, w, (0, 1))
        rng.uniform(0, 0.2, (h, w))  # write_nyuv2's depth noise: the same regions per image
        normals[i] = faces[cls]
    with gzip.open(root / "all_normals.pklz", "wb") as f:
        pickle.dump({"all_normals": normals}, f, protocol=2)
    return normals


def write_nyuv2(root: Path, n: int = 6, h: int = 48, w: int = 64, blank: int | None = None) -> Path:
    """ROOT/nyu_depth_v2_labeled.mat (MATLAB v7.3 / HDF5, stored transposed) + splits.mat;
    image ``blank`` (an index) has no valid depth reading at all."""
    import h5py
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = np.zeros((n, 3, w, h), dtype=np.uint8)
    raw = np.zeros((n, w, h), dtype=np.float32)
    for i in range(n):
        rgb, cls = two_region_image(rng, h, w, (0, 1))
        depth = np.where(cls == 0, 2.0, 5.0).astype(np.float32) + rng.uniform(0, 0.2, (h, w))
        depth[h // 2, :] = 12.0  # beyond 10 m: invalid
        depth[:, w // 3] = 0.0  # no sensor reading: invalid
        if i == blank:
            depth[:] = 0.0
        images[i] = rgb.transpose(2, 1, 0)
        raw[i] = depth.T
    # the release's "depths": the same maps with the holes filled in (here with a wrong 7 m)
    filled = np.where(raw == 0, np.float32(7.0), raw)
    mat = root / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat, "w", userblock_size=512) as f:
        f.create_dataset("images", data=images)
        f.create_dataset("depths", data=filled)
        f.create_dataset("rawDepths", data=raw)
    with open(mat, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")
    half = n // 2
    savemat(
        root / "splits.mat",
        {
            "trainNdxs": np.arange(1, half + 1, dtype=np.float64)[:, None],
            "testNdxs": np.arange(half + 1, n + 1, dtype=np.float64)[:, None],
        },
    )
    return root


def write_davis(root: Path, sequences=("bear", "car"), frames: int = 5, h: int = 48, w: int = 80):
    """ROOT/{JPEGImages,Annotations}/480p/SEQ/NNNNN.{jpg,png} + ImageSets/2017/val.txt.

    Each sequence: a grey background with coloured squares (objects 1, 2) moving right.
    """
    rng = np.random.default_rng(0)
    for s, seq in enumerate(sequences):
        n_obj = 1 + s % 2
        for t in range(frames):
            rgb = np.full((h, w, 3), 110, dtype=np.float64) + rng.normal(0, 4, (h, w, 3))
            ids = np.zeros((h, w), dtype=np.uint8)
            for k in range(1, n_obj + 1):
                y0, x0 = 8 + 16 * (k - 1), 6 + 3 * t + 30 * (k - 1)
                ids[y0 : y0 + 14, x0 : x0 + 14] = k
                rgb[ids == k] = COLOURS[k]
            _save_rgb(
                np.clip(rgb, 0, 255).astype(np.uint8),
                root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg",
            )
            _save_label(ids, root / "Annotations" / "480p" / seq / f"{t:05d}.png", palette=True)
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "val.txt").write_text("\n".join(sequences) + "\n")
    return root


def run_eval(task, root, upsampler, out_dir, *extra, backbone=TEST_BACKBONE, name="run") -> dict:
    """``loftup eval TASK`` in-process on the dataset at ``root`` (it must succeed); its JSON
    results, written to ``out_dir/NAME.json``."""
    from loftup.cli import main

    out = Path(out_dir) / f"{name}.json"
    args = ["eval", task, "--root", str(root), "--backbone", backbone, "--upsampler", upsampler]
    args += ["--json", str(out), "--no-progress", *extra]
    assert main(args) == 0
    return json.loads(out.read_text())


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "16m"):
    """A tmpfs of ``size`` mounted on ``folder`` (a mount point, or a small disk to fill) for the
    block's time; the test skipped where none can be mounted (not root, no mount namespace)."""
    import subprocess

    import pytest

    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount namespace)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
