"""``loftup eval`` given bad input, or outputs it cannot write: one ``error:`` line naming the
problem and the fix, exit 2, before any work where it can be known then; and what it writes to
stdout is strict JSON alone."""

import numpy as np
import pytest
import torch
from PIL import Image

from eval_data import (
    TEST_BACKBONE,
    write_cocostuff,
    write_davis,
    write_nyuv2,
    write_voc,
)
from loftup import LoftUp
from loftup.cli import main
from loftup.eval.datasets import DatasetError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bad_runs_fail_with_one_clear_line(tmp_path, capsys):
    base = ["eval", "seg", "--backbone", TEST_BACKBONE, "--no-progress", "--size", "28"]
    assert main([*base, "--root", str(tmp_path), "--upsampler", "bilinear"]) == 2
    assert "Coco164kFull_Stuff_Coarse.txt" in capsys.readouterr().err
    assert main([*base, "--root", str(tmp_path), "--upsampler", "x", "--dataset", "kitti"]) == 2
    assert "unknown seg dataset 'kitti'" in capsys.readouterr().err
    write_cocostuff(tmp_path)
    LoftUp(dim=8).save_pretrained(tmp_path / "small")
    assert main([*base, "--root", str(tmp_path), "--upsampler", str(tmp_path / "small")]) == 2
    assert "expects 8-channel features" in capsys.readouterr().err


@pytest.mark.parametrize(
    "task, dataset, layout",
    [
        ("seg", "cocostuff", "Coco164kFull_Stuff_Coarse.txt"),
        ("seg", "voc", "ROOT/JPEGImages"),
        ("depth", "nyuv2", "splits.mat"),
        ("normals", "nyuv2", "nyu_depth_v2_labeled.mat"),
        ("davis", "davis2017", "ROOT/ImageSets/2017"),
    ],
)
def test_a_root_that_is_no_folder_is_named_as_such(tmp_path, capsys, task, dataset, layout):
    """A mistyped --root was told as the first file of the layout missing under it
    ("COCO-Stuff curated list not found: typo/curated/train2017/..."), which reads as a
    dataset unpacked wrong, not as a path typed wrong; a file given as --root likewise."""
    missing, a_file = tmp_path / "typo", tmp_path / "a_file"
    a_file.write_text("x")
    for root, what in ((missing, "does not exist"), (a_file, "is a file, not a folder")):
        args = _eval(task, root, "--dataset", dataset)
        _fails(capsys, args, f"--root {root} {what}", f"the {dataset} dataset", layout)


def _fails(capsys, args, *words) -> str:
    """``loftup ARGS`` exits 2 with one ``error:`` line holding ``words``; that line."""
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _eval(task, root, *extra, upsampler="bilinear"):
    return ["eval", task, "--root", str(root), "--backbone", TEST_BACKBONE, "--upsampler",
            upsampler, "--size", "28", "--no-cache", "--no-progress", *extra]  # fmt: skip


@pytest.fixture
def no_model(monkeypatch):
    """Loading the backbone or the upsampler (FeaturePipeline) fails the test."""
    import loftup.eval.pipeline as pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(pipeline.FeaturePipeline, "__init__", refuse)


@pytest.mark.parametrize(
    "task, option, value, words",
    [
        ("seg", "--limit", "0", [">= 1"]),
        ("seg", "--limit", "-1", [">= 1"]),
        ("depth", "--batch-size", "0", [">= 1"]),
        ("normals", "--probe-batch-size", "0", [">= 1"]),
        ("seg", "--workers", "-1", [">= 0"]),
        ("seg", "--size", "0", [">= 1"]),
        ("seg", "--lr", "nan", ["finite number > 0"]),
        ("depth", "--epochs", "0", [">= 1"]),
        ("seg", "--highres-factor", "0", [">= 1"]),
        ("davis", "--topk", "-1", [">= 1"]),
        ("davis", "--topk", "0", [">= 1"]),
        ("davis", "--context", "-1", [">= 0"]),
        ("davis", "--temperature", "0", ["> 0"]),
        ("davis", "--temperature", "nan", ["> 0"]),
        ("davis", "--temperature", "-1", ["> 0"]),
        ("davis", "--feature-scale", "0", ["(0, 1]"]),
        ("davis", "--feature-scale", "-1", ["(0, 1]"]),
        ("davis", "--feature-scale", "100", ["(0, 1]"]),
        ("davis", "--radius", "-1", [">= 0"]),
        ("davis", "--max-frames", "1", [">= 3"]),
        ("davis", "--max-frames", "2", [">= 3"]),
        ("seg", "--seed", str(2**64), ["[0, 4294967296)"]),  # torch's seeds stop at 2**64 - 1
        ("depth", "--seed", "-1", ["[0, 4294967296)"]),
    ],
)
@pytest.mark.usefixtures("no_model")
def test_settings_out_of_range_are_refused_before_any_work(
    tmp_path, capsys, task, option, value, words
):
    # no dataset at all: the setting is what is said, not the missing data
    _fails(capsys, _eval(task, tmp_path / "none", option, value), f"{option} must be",
           f"got {value}", *words)  # fmt: skip


@pytest.mark.usefixtures("no_model")
def test_a_size_that_gives_a_one_patch_grid_is_refused_before_any_work(tmp_path, capsys):
    """--size 8 with a patch of 14 ran on a 1x1 grid (the backbone snaps a size to the nearest
    multiple of its patch, at least one) and reported mIoU 0.00 as if it were a score."""
    nowhere = tmp_path / "none"
    for task, size in (("seg", "8"), ("depth", "20"), ("davis", "1")):  # 20 px snaps to 14
        _fails(capsys, _eval(task, nowhere, "--size", size), f"--size {size} gives",
               f"backbone {TEST_BACKBONE} (patch 14) a 1x1 feature grid", "give --size 28 or more")  # fmt: skip
    # highres: what the backbone sees is --size x --highres-factor
    _fails(capsys, _eval("seg", nowhere, "--size", "8", upsampler="highres"),
           "--size 8 (x 2 for highres: 16 px)", "give --size 14 or more")  # fmt: skip
    # 21 px snaps to 28, a 2x2 grid; 14 x 2 likewise: past the size, to the missing --root
    for size, upsampler in (("21", "bilinear"), ("14", "highres")):
        _fails(capsys, _eval("seg", nowhere, "--size", size, upsampler=upsampler),
               f"--root {nowhere} does not exist")  # fmt: skip
    _fails(capsys, _eval("seg", nowhere, "--backbone", "dinov9"), "unknown backbone 'dinov9'")


@pytest.mark.usefixtures("no_model")
def test_a_feature_scale_that_gives_a_one_cell_map_is_refused_before_any_work(tmp_path, capsys):
    """--feature-scale 0.01 with --size 28 propagated labels on a 1x1 map (one label for the
    whole frame) and reported its J&F as a score."""
    nowhere = tmp_path / "none"
    for size, scale, valid in (("28", "0.01", "0.0715"), ("224", "0.005", "0.00893")):
        _fails(capsys, _eval("davis", nowhere, "--size", size, "--feature-scale", scale),
               f"--feature-scale {scale} with --size {size} gives a 1x1 propagation map",
               f"give --feature-scale {valid} or more")  # fmt: skip
    # the scale it suggests passes (on to the missing --root)
    _fails(capsys, _eval("davis", nowhere, "--feature-scale", "0.0715"),
           f"--root {nowhere} does not exist")  # fmt: skip


@pytest.mark.usefixtures("no_model")
def test_a_highres_factor_without_highres_is_said_to_do_nothing(tmp_path, capsys):
    """--highres-factor 4 with another upsampler was taken silently (and recorded as a
    setting of the run) while it changed nothing."""
    nowhere = tmp_path / "none"
    for upsampler, extra, warned in (
        ("bilinear", ["--highres-factor", "4"], True),
        ("highres", ["--highres-factor", "4"], False),
        ("bilinear", [], False),
    ):
        assert main(_eval("seg", nowhere, *extra, upsampler=upsampler)) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("error: --root"), lines  # the run goes on to its checks
        warning = "warning: --highres-factor scales the input of --upsampler highres only"
        assert (warning in lines[0]) is warned and len(lines) == 1 + warned, lines


@pytest.fixture
def no_data(monkeypatch):
    """Reading (checking) a dataset of seg, depth or davis is an error: "the dataset was read"."""
    import loftup.eval.dense as dense
    import loftup.eval.video as video

    def read(*args, **kwargs):
        raise DatasetError("the dataset was read")

    monkeypatch.setattr(dense, "SegmentationSet", read)
    monkeypatch.setattr(dense, "NYUv2Depth", read)
    monkeypatch.setattr(video, "davis_sequences", read)


@pytest.mark.usefixtures("no_model", "no_data")
def test_an_upsampler_that_names_nothing_is_refused_before_the_dataset_is_read(tmp_path, capsys):
    """A mistyped --upsampler was said only once the dataset's check had read every image's
    header (seconds to minutes on COCO): now before, without loading it (nor twice after)."""
    from loftup.hub import RELEASED

    (tmp_path / "folder").mkdir()
    repo = next(iter(RELEASED.values())).repo_id
    for task in ("seg", "depth", "davis"):
        _fails(capsys, _eval(task, tmp_path, upsampler="lofup_dinov2s"),
               "unknown upsampler 'lofup_dinov2s'", "released names are", "or a baseline: "
               "nearest, bilinear, bicubic, jbu, or highres")  # fmt: skip
    for source, words in (
        ("runs/up.safetensors", ["no such file or folder: runs/up.safetensors"]),
        (str(tmp_path / "gone"), [f"no such file or folder: {tmp_path / 'gone'}"]),
        ("dinov2_vits14", ["dinov2_vits14 is a backbone, not an upsampler"]),
        (repo, [f"{repo} is the hub repo of the released upsampler"]),
    ):
        _fails(capsys, _eval("seg", tmp_path, upsampler=source), *words)
    # what can be loaded is left to the run (no file read here): on to the dataset
    for source in ("nearest", "highres", "loftup_dinov2s", "me/my-upsampler", "me/up@v1",
                   str(tmp_path / "folder")):  # fmt: skip
        _fails(capsys, _eval("seg", tmp_path, upsampler=source), "the dataset was read")


@pytest.mark.usefixtures("no_model", "no_data")
def test_backbone_weights_that_are_not_there_are_said_before_the_dataset_is_read(tmp_path, capsys):
    """A mistyped --backbone-weights folder, like a mistyped --upsampler, was said only after
    the dataset's check had read every image's header."""
    empty, a_file = tmp_path / "empty", tmp_path / "model.safetensors"
    empty.mkdir()
    a_file.write_bytes(b"x")
    base = ("--backbone", "dinov2_vits14", "--backbone-weights")
    for weights, words in (
        ("./dinov2-smal", ["backbone weights for dinov2_vits14: ./dinov2-smal does not exist"]),
        (str(empty), [f"{empty} has no config.json"]),
        (str(a_file), [f"{a_file} is a file", f"pass its folder, {tmp_path}"]),
    ):
        _fails(capsys, _eval("seg", tmp_path, *base, weights), *words)
    # a hub id is left to the run (no download here), as is a backbone with no hub weights
    for backbone, weights in (("dinov2_vits14", "facebook/dinov2-small"), (TEST_BACKBONE, ".")):
        args = _eval("seg", tmp_path, "--backbone", backbone, "--backbone-weights", weights)
        _fails(capsys, args, "the dataset was read")


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, capsys):
    # no dataset: an output check that came after the data would say the data is missing
    nowhere = tmp_path / "none"
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for option, path, task in (
        ("--json", blocker / "s.json", "seg"),
        ("--figure", blocker / "deep" / "f.png", "depth"),
        ("--save-masks", blocker / "masks", "davis"),
        ("--cache-dir", blocker / "cache", "seg"),
    ):
        args = _eval(task, nowhere, option, str(path))
        if option == "--cache-dir":
            args.remove("--no-cache")
        _fails(capsys, args, f"{option} {path}", f"{blocker} is a file, not a folder")
    _fails(capsys, _eval("davis", nowhere, "--save-masks", str(blocker)), "--save-masks",
           "is a file; give a folder")  # fmt: skip
    _fails(capsys, _eval("seg", nowhere, "--figure", str(tmp_path)), "--figure", "is a folder",
           f"give a file name, e.g. {tmp_path}/figure.png")  # fmt: skip
    # a --figure that is the JSON's path would overwrite it
    args = ("--json", str(tmp_path / "r.json"), "--figure", str(tmp_path / "r.json"))
    _fails(capsys, _eval("seg", nowhere, *args), "is where the figure would go too")
    assert not list(tmp_path.glob("r.*"))


def test_a_folder_that_refuses_new_files_is_named_not_its_temporary_file(
    tmp_path, capsys, monkeypatch
):
    import errno
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.open

    def refuse(path, flags, *args, **kwargs):  # a new file in ro (the write check's temporary)
        if flags & os.O_CREAT and str(path).startswith(str(ro)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)  # as a read-only folder does, even for root
    line = _fails(capsys, _eval("seg", tmp_path / "none", "--json", str(ro / "s.json")),
                  f"--json {ro / 's.json'}", "Permission denied")  # fmt: skip
    assert ".tmp" not in line


def test_a_failed_write_at_the_end_keeps_the_scores(tmp_path, capsys, monkeypatch):
    import errno

    import loftup.eval.report as report
    from loftup.eval import EvalConfig, evaluate

    write_voc(tmp_path)
    seen = []

    def refuse(path, obj, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", f"{path}.x1.tmp")

    monkeypatch.setattr(report, "write_json", refuse)
    out = tmp_path / "s.json"
    line = _fails(capsys, _eval("seg", tmp_path, "--dataset", "voc", "--epochs", "1", "--limit",
                                "1", "--json", str(out)), f"--json {out}", "mIoU")  # fmt: skip
    assert "Permission denied" in line and ".tmp" not in line
    # evaluate's report hook sees the scores before any file is written
    monkeypatch.undo()
    cfg = EvalConfig(task="seg", dataset="voc", root=str(tmp_path), backbone=TEST_BACKBONE,
                     upsampler="nearest", size=28, limit=1, epochs=1, cache_dir=None,
                     json=str(out), progress=False)  # fmt: skip
    evaluate(cfg, report=lambda r: seen.append((r["metrics"]["miou"], out.exists())))
    assert len(seen) == 1 and seen[0][1] is False and out.exists()


def test_json_to_stdout_is_the_json_alone_and_strict(tmp_path, capsys):
    import json

    base = write_voc(tmp_path, n=1)
    for label in (base / "SegmentationClass").glob("2007_1*.png"):  # the val label: all border
        img = Image.open(label)
        img.paste(255, (0, 0, *img.size))
        img.save(label)
    args = _eval("seg", tmp_path, "--dataset", "voc", "--epochs", "1", "--figure",
                 str(tmp_path / "f.png"), "--json", "-")  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    results = json.loads(captured.out, parse_constant=refuse)  # nothing else on stdout
    assert results["metrics"]["miou"] is None  # no pixel scored: NaN, written as null
    assert "mIoU nan" in captured.err and "figure: " in captured.err


def _break_voc(tmp_path):
    base = write_voc(tmp_path, n=2)
    return sorted((base / "JPEGImages").glob("*.jpg")), base / "SegmentationClass"


def test_unreadable_or_inconsistent_seg_files_are_named(tmp_path, capsys):
    images, labels = _break_voc(tmp_path)
    seg = _eval("seg", tmp_path, "--dataset", "voc", "--epochs", "1")
    good = images[1].read_bytes()
    images[1].write_bytes(b"not a jpeg")
    _fails(capsys, seg, f"cannot read {images[1]}", "not an image file")
    images[1].write_bytes(good[: len(good) // 2])  # the header reads, the pixels do not
    _fails(capsys, seg, f"cannot read {images[1]}", "truncated")
    images[1].write_bytes(good)
    label = labels / f"{images[1].stem}.png"
    Image.new("L", (10, 10)).save(label)
    _fails(capsys, seg, str(label), "is 10x10 pixels", "44x36", "its image's size")
    values = torch.zeros(36, 44, dtype=torch.uint8)
    values[3, 4] = 200
    Image.fromarray(values.numpy()).save(label)
    for workers in ("0", "1"):  # a worker's error reaches the user as one line too
        _fails(capsys, [*seg, "--workers", workers], str(label), "label value 200",
               "0..20, and 255")  # fmt: skip


def test_an_image_in_both_splits_is_refused_before_any_model(tmp_path, capsys, no_model):
    """A split list of one's own that shares images with the other split (VOC's train_aug as
    train.txt) trained the probe on images it was then scored on, silently; NYUv2's
    splits.mat was refused for it, the segmentation lists were not."""
    base = write_voc(tmp_path, n=2)
    lists = base / "ImageSets" / "Segmentation"
    shared = (lists / "train.txt").read_text().split()[1]
    (lists / "val.txt").write_text((lists / "val.txt").read_text() + shared + "\n")
    _fails(capsys, _eval("seg", tmp_path, "--dataset", "voc"), f"{shared}.jpg is in both the "
           "train and the val split (1 of its 3 val images)", "take them out of one split")  # fmt: skip


def test_unreadable_or_empty_davis_files_are_named(tmp_path, capsys):
    write_davis(tmp_path, frames=3)
    davis = _eval("davis", tmp_path)
    frame = tmp_path / "JPEGImages" / "480p" / "car" / "00001.jpg"
    frame.write_bytes(b"junk")
    _fails(capsys, davis, f"cannot read {frame}", "not an image file")
    write_davis(tmp_path, frames=3)
    first = tmp_path / "Annotations" / "480p" / "bear" / "00000.png"
    Image.new("L", (80, 48)).save(first)
    _fails(capsys, davis, "DAVIS sequence bear", str(first), "no objects")


def test_broken_nyu_files_are_named(tmp_path, capsys):
    import h5py

    write_nyuv2(tmp_path, n=4)
    depth = _eval("depth", tmp_path, "--epochs", "1")
    splits = tmp_path / "splits.mat"
    good = splits.read_bytes()
    splits.write_bytes(b"junk junk junk")
    _fails(capsys, depth, f"cannot read {splits}", "trainNdxs")
    splits.write_bytes(good)
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat, "w") as f:
        f.create_dataset("depths", data=torch.zeros(4, 64, 48).numpy())
    _fails(capsys, depth, str(mat), "no 'images'", "images (N, 3, 640, 480)")
    with h5py.File(mat, "a") as f:  # the filled-in depths only: not what is scored
        f.create_dataset("images", data=torch.zeros(4, 3, 64, 48, dtype=torch.uint8).numpy())
    _fails(capsys, depth, str(mat), "no 'rawDepths'", "rawDepths (N, 640, 480)")
    mat.write_bytes(b"junk")
    _fails(capsys, depth, str(mat), "not a MATLAB v7.3 (HDF5) file")


def test_missing_or_mismatched_normals_are_named(tmp_path, capsys):
    write_nyuv2(tmp_path, n=4)
    normals = _eval("normals", tmp_path, "--epochs", "1")
    _fails(capsys, normals, str(tmp_path / "all_normals.pklz"), "nyuv2_surfacenormal_metadata.zip")
    np.save(tmp_path / "all_normals.npy", np.zeros((4, 32, 32, 3), np.float32))
    _fails(capsys, normals, "all_normals.npy", "expected (4, 48, 64, 3)")
