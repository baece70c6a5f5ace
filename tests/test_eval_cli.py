"""Every evaluation task end to end through ``loftup eval`` on tiny datasets on disk."""

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from eval_data import (
    DIM,
    TEST_BACKBONE,
    run_eval,
    write_ade20k,
    write_cityscapes,
    write_cocostuff,
    write_davis,
    write_nyuv2,
    write_voc,
)
from loftup import LoftUp
from loftup.cli import main
from loftup.featurizers import FEATURIZERS, Featurizer, FeaturizerSpec, register

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
    assert res["cache"] == {"hits": 4, "misses": 8}  # epoch 2 reads what epoch 1 wrote
    assert _is_png(tmp_path / "loftup.png") and res["figure"].endswith("loftup.png")
    # another upsampler on the same backbone features: no backbone work at all
    cached = run_eval("seg", tmp_path, "nearest", tmp_path, *common, name="nearest")
    assert cached["cache"]["misses"] == 0
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


def test_depth_end_to_end(tmp_path, backbones):
    write_nyuv2(tmp_path, n=6)
    res = run_eval(
        "depth", tmp_path, "jbu", tmp_path, "--size", "28", "--epochs", "2", "--no-cache"
    )
    m = res["metrics"]
    assert set(m) == {"delta1", "rmse", "abs_rel"} and 0 <= m["delta1"] <= 1 and m["rmse"] > 0
    assert res["num_images"] == {"train": 3, "test": 3}
    assert res["settings"]["probe"]["schedule"] == "cosine"
    assert _is_png(res["figure"])


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


def test_davis_tracks_objects_given_informative_features(tmp_path, backbones):
    write_davis(tmp_path, frames=5)
    res = run_eval("davis", tmp_path, "bilinear", tmp_path, "--size", "56", "--no-cache",
                "--radius", "6", backbone=COLOUR_BACKBONE)  # fmt: skip
    assert res["metrics"]["J_mean"] > 0.7 and res["metrics"]["F_mean"] > 0.7


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
    commands = re.findall(r"loftup eval (?:seg|depth|davis) +--[^`\n#]*", section)
    assert len(commands) >= 8
    for cmd in commands:
        args = build_parser().parse_args(shlex.split(cmd)[1:])
        assert args.func.__name__ == "_cmd_eval"
