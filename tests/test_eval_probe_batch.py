"""`loftup eval --batch-size` is how many images' features are computed at once, and the probe
trains on batches of `--probe-batch-size`: lowering the first to fit memory changes no score."""

import pytest

from eval_data import run_eval, write_cocostuff, write_nyuv2

pytestmark = pytest.mark.usefixtures("one_thread")


def _seg(root, out, name, *extra):
    common = ["--size", "28", "--epochs", "2", "--lr", "0.05", "--no-cache"]
    return run_eval("seg", root, "bilinear", out, *common, *extra, name=name)


def test_a_smaller_feature_batch_trains_the_same_probe(tmp_path):
    write_cocostuff(tmp_path, n=6)
    whole = _seg(tmp_path, tmp_path, "whole")  # the 6 images of a probe step at once
    split = _seg(tmp_path, tmp_path, "split", "--batch-size", "4")  # 4 + 2 at a time
    for res in (whole, split):
        assert res["settings"]["probe"]["batch_size"] == 8  # the protocol's, whatever --batch-size
    for name in ("miou", "pixel_accuracy"):
        assert split["metrics"][name] == pytest.approx(whole["metrics"][name], abs=1e-6)
    assert split["metrics"]["per_class_iou"] == pytest.approx(
        whole["metrics"]["per_class_iou"], abs=1e-6, nan_ok=True
    )


def test_the_probe_batch_is_its_own_option(tmp_path):
    write_cocostuff(tmp_path, n=6)
    res = _seg(tmp_path, tmp_path, "run", "--probe-batch-size", "2", "--batch-size", "1")
    assert res["settings"]["probe"]["batch_size"] == 2
    assert res["settings"]["probe_batch_size"] == 2 and res["settings"]["batch_size"] == 1


def test_highres_depth_computes_the_larger_inputs_in_feature_batches(tmp_path):
    write_nyuv2(tmp_path)
    common = ["--size", "28", "--epochs", "1", "--no-cache"]
    runs = [
        run_eval("depth", tmp_path, "highres", tmp_path, *common, *extra, name=name)
        for name, extra in (("whole", []), ("single", ["--batch-size", "1"]))
    ]
    whole, single = (r["metrics"] for r in runs)
    assert single == pytest.approx(whole, abs=1e-5)
