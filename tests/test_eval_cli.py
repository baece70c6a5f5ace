"""Every evaluation task end to end through ``loftup eval`` on tiny datasets on disk."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from davis_scorer import score_results
from eval_data import (
    DIM,
    TEST_BACKBONE,
    run_eval,
    write_ade20k,
    write_cityscapes,
    write_cocostuff,
    write_davis,
    write_nyu_normals,
    write_nyuv2,
    write_voc,
)
from loftup import LoftUp
from loftup.cli import main
from loftup.featurizers import (
    FEATURIZERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Featurizer,
    FeaturizerSpec,
    register,
)

pytestmark = pytest.mark.usefixtures("one_thread")
COLOUR_BACKBONE = "eval_test_colour2"


class ColourFeaturizer(Featurizer):
    """Mean colour of 2x2 patches: features that make segmentation and tracking easy."""

    name = COLOUR_BACKBONE
    patch_size = 2
    dim = 3

    def forward(self, x):
        return F.avg_pool2d(x, 2)


@pytest.fixture(scope="module")
def backbones():
    if COLOUR_BACKBONE not in FEATURIZERS:
        register(FeaturizerSpec(COLOUR_BACKBONE, lambda w, device=None: ColourFeaturizer(), 2, 3))


@pytest.fixture(scope="module")
def upsampler(tmp_path_factory, backbones):
    path = tmp_path_factory.mktemp("up") / "loftup_tiny"
    torch.manual_seed(0)
    LoftUp(dim=DIM).save_pretrained(path, backbone=TEST_BACKBONE)
    return str(path)


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_seg_runs_loftup_and_baselines_share_the_feature_cache(tmp_path, upsampler, capsys):
    write_cocostuff(tmp_path)
    common = ["--size", "28", "--epochs", "2", "--cache-dir", str(tmp_path / "cache")]
    res = run_eval("seg", tmp_path, upsampler, tmp_path, *common, name="loftup")
    assert "mIoU" in capsys.readouterr().out
    m = res["metrics"]
    assert 0 <= m["miou"] <= 1 and 0 <= m["pixel_accuracy"] <= 1
    assert len(m["per_class_iou"]) == 27 and len(res["class_names"]) == 27
    assert res["num_images"] == {"train": 4, "val": 4}
    assert res["settings"]["probe"]["optimizer"] == "nadam" and res["settings"]["size"] == 28
    assert res["run"]["loftup_version"] and "git_commit" in res["run"]
    assert res["run"]["libraries"]["numpy"] == np.__version__
    # what a reader needs to know the features were these: weights by content, and the sizes
    from loftup import get_featurizer, load_upsampler
    from loftup.extract.record import weights_digest

    feats = res["features"]
    assert feats["upsampler"]["weights_digest"] == weights_digest(load_upsampler(upsampler))
    assert feats["upsampler"]["name"] == upsampler and feats["upsampler"]["kind"] == "loftup"
    assert feats["upsampler"]["trained_on"] == TEST_BACKBONE
    backbone = get_featurizer(TEST_BACKBONE)
    assert feats["backbone"]["weights_digest"] == weights_digest(backbone)
    assert feats["backbone"]["dim"] == DIM and feats["backbone"]["patch_size"] == 14
    assert feats["sizes"] == {"image": [28, 28], "backbone_input": [28, 28], "lowres": [2, 2],
                              "upsampled": [28, 28]}  # fmt: skip
    assert res["cache"] == {"hits": 4, "misses": 8}  # epoch 2 reads what epoch 1 wrote
    assert _is_png(tmp_path / "loftup.png") and res["figure"].endswith("loftup.png")
    # another upsampler on the same backbone features: no backbone work at all
    cached = run_eval("seg", tmp_path, "nearest", tmp_path, *common, name="nearest")
    assert cached["cache"]["misses"] == 0
    assert cached["features"]["upsampler"] == {"name": "nearest", "kind": "baseline"}
    fresh = run_eval("seg", tmp_path, "nearest", tmp_path, "--size", "28", "--epochs", "2",
                  "--no-cache", name="fresh")  # fmt: skip
    assert fresh["metrics"] == cached["metrics"]  # cached features are the computed ones


@pytest.mark.parametrize(
    "dataset, writer, classes",
    [("cityscapes", write_cityscapes, 19), ("ade20k", write_ade20k, 150), ("voc", write_voc, 21)],
)
def test_seg_on_every_dataset(tmp_path, backbones, dataset, writer, classes):
    writer(tmp_path)
    res = run_eval("seg", tmp_path, "bilinear", tmp_path, "--dataset", dataset, "--size", "28",
                "--epochs", "1", "--no-cache", "--limit", "2")  # fmt: skip
    assert len(res["metrics"]["per_class_iou"]) == classes
    assert res["num_images"] == {"train": 2, "val": 2}


def test_seg_probe_learns_from_informative_features(tmp_path, backbones):
    write_cocostuff(tmp_path)
    res = run_eval("seg", tmp_path, "bilinear", tmp_path, "--size", "28", "--epochs", "40",
                "--lr", "0.05", "--batch-size", "2", "--no-cache",
                backbone=COLOUR_BACKBONE)  # fmt: skip
    assert res["metrics"]["miou"] > 0.9


def test_highres_runs_the_backbone_on_a_larger_input(tmp_path, backbones):
    write_voc(tmp_path)
    common = ["--dataset", "voc", "--size", "28", "--epochs", "1", "--limit", "2"]
    common += ["--cache-dir", str(tmp_path / "cache")]
    run_eval("seg", tmp_path, "bilinear", tmp_path, *common, name="a")
    res = run_eval("seg", tmp_path, "highres", tmp_path, *common, "--highres-factor", "2", name="b")
    assert res["cache"]["hits"] == 0  # the 56-px input is a different cache entry
    from safetensors.torch import load_file

    entries = list((tmp_path / "cache").rglob("*.safetensors"))
    shapes = sorted({tuple(load_file(p)["feats"].shape) for p in entries})
    assert len(entries) == 8 and shapes == [(DIM, 2, 2), (DIM, 4, 4)]
    write_davis(tmp_path / "davis", frames=3)
    res = run_eval("davis", tmp_path / "davis", "highres", tmp_path, "--size", "28", "--limit", "1",
                "--no-cache", name="c")  # fmt: skip
    assert res["num_sequences"] == 1 and res["settings"]["highres_factor"] == 2
    assert res["features"]["upsampler"]["name"] == "highres"
    sizes = res["features"]["sizes"]  # DAVIS: features at half the frame's side
    assert sizes["backbone_input"] == [56, 56] and sizes["upsampled"] == [14, 14]
    assert res["num_frames"] == {"total": 3, "scored": 1}


def test_depth_end_to_end(tmp_path, backbones, capsys):
    write_nyuv2(tmp_path, n=6)
    res = run_eval(
        "depth", tmp_path, "jbu", tmp_path, "--size", "28", "--epochs", "2", "--no-cache"
    )
    m = res["metrics"]
    assert f"(scale-invariant: delta1 {100 * m['si_delta1']:.2f}" in capsys.readouterr().out
    three = {"delta1", "delta2", "delta3", "rmse", "abs_rel"}
    assert set(m) == three | {f"si_{k}" for k in three}
    assert m["delta1"] <= m["delta2"] <= m["delta3"]
    assert 0 <= m["delta1"] <= 1 and 0 <= m["si_delta1"] <= 1 and m["rmse"] > 0
    # each image's least-squares scale and shift can only lower its squared error
    assert m["si_rmse"] <= m["rmse"]
    assert res["num_images"] == {"train": 3, "test": 3}
    assert res["images_without_valid_pixels"] == 0
    assert res["settings"]["probe"]["schedule"] == "probe3d"
    assert _is_png(res["figure"])


def test_an_image_without_valid_depth_is_left_out_of_the_means(tmp_path, backbones):
    """A test image with no valid pixel has nothing to score: counted, and out of the per-image
    means (it scored delta1 = RMSE = 0 before, which pulled delta1 down and RMSE too)."""
    write_nyuv2(tmp_path / "a", n=6)
    write_nyuv2(tmp_path / "b", n=8, blank=7)  # the same 3 + 3, and a blank 4th test image
    args = ("--size", "28", "--epochs", "2", "--no-cache")
    sets = tmp_path / "b" / "splits.mat"
    from scipy.io import savemat

    savemat(
        sets,
        {"trainNdxs": np.arange(1, 4.0)[:, None], "testNdxs": np.array([[4.0], [5], [6], [8]])},
    )
    full = run_eval("depth", tmp_path / "a", "bilinear", tmp_path, *args, name="a")
    blank = run_eval("depth", tmp_path / "b", "bilinear", tmp_path, *args, name="b")
    assert full["images_without_valid_pixels"] == 0
    assert blank["images_without_valid_pixels"] == 1 and blank["num_images"]["test"] == 4
    for k in ("delta1", "rmse", "abs_rel", "si_delta1", "si_rmse", "si_abs_rel"):
        assert blank["metrics"][k] == pytest.approx(full["metrics"][k], rel=1e-6), k


def test_normals_end_to_end(tmp_path, backbones, capsys, monkeypatch):
    write_nyu_normals(write_nyuv2(tmp_path, n=6))
    monkeypatch.setenv("LOFTUP_CACHE", str(tmp_path / "cache"))
    res = run_eval(
        "normals", tmp_path, "bilinear", tmp_path, "--size", "28", "--epochs", "2", "--no-cache"
    )
    assert not (tmp_path / "cache").exists()  # --no-cache: the pickle's conversion too
    m = res["metrics"]
    assert set(m) == {"rmse", "mean", "within_11.25", "within_22.5", "within_30"}
    assert 0 <= m["within_11.25"] <= m["within_22.5"] <= m["within_30"] <= 1 and m["rmse"] > 0
    assert res["num_images"] == {"train": 3, "test": 3}
    assert res["settings"]["probe"]["schedule"] == "probe3d"
    assert _is_png(res["figure"])
    assert "within 11.25/22.5/30 deg" in capsys.readouterr().out


def test_davis_end_to_end_with_loftup_and_saved_masks(tmp_path, upsampler):
    write_davis(tmp_path, frames=4)
    res = run_eval("davis", tmp_path, upsampler, tmp_path, "--size", "56", "--no-cache",
                "--save-masks", str(tmp_path / "masks"))  # fmt: skip
    m = res["metrics"]
    assert m["num_objects"] == 3 and 0 <= m["J&F_mean"] <= 1
    assert m["J&F_mean"] == pytest.approx((m["J_mean"] + m["F_mean"]) / 2)
    assert set(res["per_object"]) == {"bear_1", "car_1", "car_2"}
    masks = sorted((tmp_path / "masks" / "car").glob("*.png"))
    assert [p.name for p in masks] == ["00000.png", "00001.png", "00002.png", "00003.png"]
    img = Image.open(masks[2])
    assert img.mode == "P" and img.size == (80, 48)
    assert res["settings"]["propagation"]["topk"] == 5 and _is_png(res["figure"])
    # the saved masks scored by the benchmark's rules, written out independently
    official = score_results(tmp_path, tmp_path / "masks", ["bear", "car"])
    for key, value in official.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key


def test_davis_tracks_objects_given_informative_features(tmp_path, backbones):
    write_davis(tmp_path, frames=5)
    res = run_eval("davis", tmp_path, "bilinear", tmp_path, "--size", "56", "--no-cache",
                "--radius", "6", backbone=COLOUR_BACKBONE)  # fmt: skip
    assert res["metrics"]["J_mean"] > 0.7 and res["metrics"]["F_mean"] > 0.7


def test_davis_void_pixels_are_background_and_the_prediction_is_scored_there(tmp_path, backbones):
    """davis2017-evaluation (semi-supervised) reads 255 as background and computes its void
    mask from the masks after they were made boolean (``masks > 0`` == 255: never true), so an
    object predicted over a void area is a false positive there, as anywhere else. Taking the
    void out of the prediction scored higher than the official scorer on the same masks."""
    from loftup.eval.metrics import contour_accuracy, region_similarity

    write_davis(tmp_path, frames=3, sequences=("bear",))  # frame 1 alone is scored
    args = ("--size", "56", "--no-cache", "--radius", "6", "--save-masks", str(tmp_path / "m"))
    run_eval("davis", tmp_path, "bilinear", tmp_path, *args, backbone=COLOUR_BACKBONE)
    pred = np.array(Image.open(tmp_path / "m" / "bear" / "00001.png")) == 1
    label = tmp_path / "Annotations" / "480p" / "bear" / "00001.png"
    ids = np.array(Image.open(label))
    rows = np.nonzero(pred.any(1))[0]
    void = np.zeros_like(pred)
    void[rows[0] : rows[0] + len(rows) // 2] = True  # the top half of the predicted object
    ids[void] = 255
    Image.fromarray(ids).save(label)
    # the same features (the first frame's labels are as they were), so the same prediction
    res = run_eval("davis", tmp_path, "bilinear", tmp_path, *args, backbone=COLOUR_BACKBONE)
    assert (np.array(Image.open(tmp_path / "m" / "bear" / "00001.png")) == 1).tolist() == (
        pred.tolist()
    )
    p, g = torch.from_numpy(pred), torch.from_numpy(ids == 1)  # the void is background
    assert res["per_object"]["bear_1"]["J"] == pytest.approx(region_similarity(p, g))
    assert res["per_object"]["bear_1"]["F"] == pytest.approx(contour_accuracy(p, g))
    without_void = torch.from_numpy(pred & ~void)  # what the scorer does not do
    assert res["per_object"]["bear_1"]["J"] < region_similarity(without_void, g) - 0.1


def test_bad_runs_fail_with_one_clear_line(tmp_path, backbones, capsys):
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


def _readme_section() -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("## Evaluation")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_readme_evaluation_example_runs():
    section = _readme_section()
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md (Evaluation)", "exec"), {})


def test_readme_evaluation_commands_parse():
    import re
    import shlex

    from loftup.cli import build_parser

    section = _readme_section().replace("\\\n", " ")
    commands = re.findall(r"loftup eval (?:seg|depth|normals|davis) +--[^`\n#]*", section)
    assert sum(" normals " in cmd for cmd in commands) >= 2
    assert len(commands) >= 10
    for cmd in commands:
        args = build_parser().parse_args(shlex.split(cmd)[1:])
        assert args.func.__name__ == "_cmd_eval"


@pytest.mark.parametrize("task", ["seg", "depth", "normals", "davis"])
def test_cache_dir_help_names_the_folder_features_are_cached_in(task, capsys, monkeypatch):
    from pathlib import Path

    from loftup.cli import build_parser
    from loftup.eval.features import default_cache_dir

    monkeypatch.delenv("LOFTUP_CACHE", raising=False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", task, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    folder = "~/" + default_cache_dir().relative_to(Path.home()).as_posix()
    assert f"(default {folder}," in text, text


# -- bad input: one line, exit 2, before any work ------------------------------------------------


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


@pytest.mark.parametrize(
    "task, option, value, words",
    [
        ("seg", "--limit", "0", [">= 1"]),
        ("seg", "--limit", "-1", [">= 1"]),
        ("depth", "--batch-size", "0", [">= 1"]),
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
def test_settings_out_of_range_are_refused_before_any_work(
    tmp_path, capsys, monkeypatch, task, option, value, words
):
    import loftup.eval.pipeline as pipeline

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(pipeline.FeaturePipeline, "__init__", no_model)
    # no dataset at all: the setting is what is said, not the missing data
    _fails(capsys, _eval(task, tmp_path / "none", option, value), f"{option} must be",
           f"got {value}", *words)  # fmt: skip


def test_context_zero_propagates_from_the_first_frame_only(tmp_path, backbones):
    write_davis(tmp_path, frames=3, sequences=("bear",))
    res = run_eval("davis", tmp_path, "bilinear", tmp_path, "--size", "28", "--no-cache",
                "--context", "0", "--max-frames", "3")  # fmt: skip
    assert res["settings"]["propagation"]["n_last_frames"] == 0
    assert res["metrics"]["num_objects"] == 1


def test_device_auto_runs_on_the_device_it_picks(tmp_path, backbones):
    # the CLI's device check tells a user "use auto, cpu, cuda or cuda:N": eval takes auto too
    write_davis(tmp_path, frames=3, sequences=("bear",))
    res = run_eval("davis", tmp_path, "bilinear", tmp_path, "--size", "28", "--no-cache",
                   "--max-frames", "3", "--device", "auto", backbone=COLOUR_BACKBONE)  # fmt: skip
    picked = "cuda" if torch.cuda.is_available() else "cpu"
    assert res["settings"]["device"] == res["run"]["device"] == picked


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
    # the figure goes next to the JSON, with .png: a JSON named .png would be overwritten by it
    for args in (
        ("--json", str(tmp_path / "r.png")),
        ("--json", str(tmp_path / "r.json"), "--figure", str(tmp_path / "r.json")),
    ):
        _fails(capsys, _eval("seg", nowhere, *args), "is where the figure would go too")
    assert not list(tmp_path.glob("r.*"))


def test_a_folder_that_refuses_new_files_is_named_not_its_temporary_file(
    tmp_path, capsys, monkeypatch
):
    import errno
    import tempfile

    ro = tmp_path / "ro"
    ro.mkdir()
    real = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(ro)):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # as a read-only folder does, even for root
    line = _fails(capsys, _eval("seg", tmp_path / "none", "--json", str(ro / "s.json")),
                  f"--json {ro / 's.json'}", "Permission denied")  # fmt: skip
    assert ".tmp" not in line


def test_a_failed_write_at_the_end_keeps_the_scores(tmp_path, capsys, monkeypatch, backbones):
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


def test_json_to_stdout_is_the_json_alone_and_strict(tmp_path, capsys, backbones):
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


def test_unreadable_or_inconsistent_seg_files_are_named(tmp_path, capsys, backbones):
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


def test_unreadable_or_empty_davis_files_are_named(tmp_path, capsys, backbones):
    write_davis(tmp_path, frames=3)
    davis = _eval("davis", tmp_path)
    frame = tmp_path / "JPEGImages" / "480p" / "car" / "00001.jpg"
    frame.write_bytes(b"junk")
    _fails(capsys, davis, f"cannot read {frame}", "not an image file")
    write_davis(tmp_path, frames=3)
    first = tmp_path / "Annotations" / "480p" / "bear" / "00000.png"
    Image.new("L", (80, 48)).save(first)
    _fails(capsys, davis, "DAVIS sequence bear", str(first), "no objects")


def test_broken_nyu_files_are_named(tmp_path, capsys, backbones):
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


def test_missing_or_mismatched_normals_are_named(tmp_path, capsys, backbones):
    write_nyuv2(tmp_path, n=4)
    normals = _eval("normals", tmp_path, "--epochs", "1")
    _fails(capsys, normals, str(tmp_path / "all_normals.pklz"), "nyuv2_surfacenormal_metadata.zip")
    np.save(tmp_path / "all_normals.npy", np.zeros((4, 32, 32, 3), np.float32))
    _fails(capsys, normals, "all_normals.npy", "expected (4, 48, 64, 3)")


def _fine_checkerboard(side: int) -> torch.Tensor:
    """(1, 3, side, side) in {0, 1}: squares of 2 px, shifted by 1 px, so that every pixel's
    neighbours at 1 and 2 px to the right/below share its value (mean 0.5)."""
    idx = torch.arange(side)
    board = (((idx[:, None] + 1) // 2 + (idx[None] + 1) // 2) % 2).float()
    return board.expand(1, 3, side, side).contiguous()


def test_a_shrunk_guidance_image_averages_what_each_pixel_covers(backbones):
    from loftup.baselines import bilinear
    from loftup.eval.pipeline import EvalConfig, FeaturePipeline, guidance_image

    board = _fine_checkerboard(32)
    # 4x smaller (e.g. --feature-scale 0.25): grey, as the image averages to; a point-sampling
    # bilinear resize reads 2 x 2 of each 4 x 4 block and gives a flat 0 or 1 instead
    assert torch.allclose(guidance_image(board, 8), torch.full((1, 3, 8, 8), 0.5), atol=1e-6)
    # 2x smaller (the DAVIS protocol's 0.5): the reference's bilinear halving, unchanged
    img = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    half = F.interpolate(img, size=(14, 14), mode="bilinear", align_corners=False)
    assert torch.allclose(guidance_image(img, 14), half, atol=1e-6)
    assert guidance_image(img, 28) is img
    assert torch.allclose(
        guidance_image(img, 56), F.interpolate(img, size=(56, 56), mode="bilinear")
    )

    cfg = EvalConfig(task="davis", dataset="davis", root=".", backbone=COLOUR_BACKBONE,
                     upsampler="bilinear", size=32, cache_dir=None)  # fmt: skip
    pipe = FeaturePipeline(cfg, policy="test")
    seen = []
    pipe.upsample = lambda lr, image: seen.append(image) or bilinear(lr, image)
    _, hr = pipe(board, ["board"], 8)
    assert hr.shape == (1, 3, 8, 8)
    unnormalised = seen[0] * torch.tensor(IMAGENET_STD)[:, None, None]
    guide = unnormalised + torch.tensor(IMAGENET_MEAN)[:, None, None]
    assert torch.allclose(guide, torch.full((1, 3, 8, 8), 0.5), atol=1e-5)
