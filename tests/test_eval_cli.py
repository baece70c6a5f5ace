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
    assert fresh["cache"] is None  # no cache looked into: no lookup missed


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
                "--lr", "0.05", "--probe-batch-size", "2", "--no-cache",
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
    # 2 steps (3 images, batch 8, 2 epochs): the 1.5-epoch warm-up ran as 1 step, and says so
    probe = res["settings"]["probe"]
    assert (probe["warmup_epochs"], probe["steps"], probe["warmup_steps"]) == (1.5, 2, 1)
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
    # the results name the dataset's file, not the temporary conversion the run removed
    assert res["normals_source"] == str(tmp_path / "all_normals.pklz")
    assert res["normals_file"] is None
    m = res["metrics"]
    assert set(m) == {"rmse", "mean", "within_11.25", "within_22.5", "within_30"}
    assert 0 <= m["within_11.25"] <= m["within_22.5"] <= m["within_30"] <= 1 and m["rmse"] > 0
    assert res["num_images"] == {"train": 3, "test": 3}
    assert res["settings"]["probe"]["schedule"] == "probe3d"
    assert _is_png(res["figure"])
    assert "within 11.25/22.5/30 deg" in capsys.readouterr().out


def test_davis_end_to_end_with_loftup_and_saved_masks(tmp_path, upsampler):
    root = write_davis(tmp_path / "davis", frames=4)  # the masks outside --root
    res = run_eval("davis", root, upsampler, tmp_path, "--size", "56", "--no-cache",
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
    official = score_results(root, tmp_path / "masks", ["bear", "car"])
    for key, value in official.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key


def test_davis_tracks_objects_given_informative_features(tmp_path, backbones):
    write_davis(tmp_path, frames=5)
    res = run_eval("davis", tmp_path, "bilinear", tmp_path, "--size", "56", "--no-cache",
                "--radius", "6", backbone=COLOUR_BACKBONE)  # fmt: skip
    assert res["metrics"]["J_mean"] > 0.7 and res["metrics"]["F_mean"] > 0.7
    assert res["cache"] is None  # --no-cache: not every frame a "miss"


def test_davis_void_pixels_are_background_and_the_prediction_is_scored_there(tmp_path, backbones):
    """davis2017-evaluation (semi-supervised) reads 255 as background and computes its void
    mask from the masks after they were made boolean (``masks > 0`` == 255: never true), so an
    object predicted over a void area is a false positive there, as anywhere else. Taking the
    void out of the prediction scored higher than the official scorer on the same masks."""
    from loftup.eval.metrics import contour_accuracy, region_similarity

    root = write_davis(tmp_path / "davis", frames=3, sequences=("bear",))  # frame 1 scored
    args = ("--size", "56", "--no-cache", "--radius", "6", "--save-masks", str(tmp_path / "m"))
    run_eval("davis", root, "bilinear", tmp_path, *args, backbone=COLOUR_BACKBONE)
    pred = np.array(Image.open(tmp_path / "m" / "bear" / "00001.png")) == 1
    label = root / "Annotations" / "480p" / "bear" / "00001.png"
    ids = np.array(Image.open(label))
    rows = np.nonzero(pred.any(1))[0]
    void = np.zeros_like(pred)
    void[rows[0] : rows[0] + len(rows) // 2] = True  # the top half of the predicted object
    ids[void] = 255
    Image.fromarray(ids).save(label)
    # the same features (the first frame's labels are as they were), so the same prediction
    res = run_eval("davis", root, "bilinear", tmp_path, *args, backbone=COLOUR_BACKBONE)
    assert (np.array(Image.open(tmp_path / "m" / "bear" / "00001.png")) == 1).tolist() == (
        pred.tolist()
    )
    p, g = torch.from_numpy(pred), torch.from_numpy(ids == 1)  # the void is background
    assert res["per_object"]["bear_1"]["J"] == pytest.approx(region_similarity(p, g))
    assert res["per_object"]["bear_1"]["F"] == pytest.approx(contour_accuracy(p, g))
    without_void = torch.from_numpy(pred & ~void)  # what the scorer does not do
    assert res["per_object"]["bear_1"]["J"] < region_similarity(without_void, g) - 0.1


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
