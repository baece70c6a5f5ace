"""Where an evaluation's results go: the settings recorded in the JSON, and the figure's name."""

from __future__ import annotations

import json
from pathlib import Path

from eval_data import TEST_BACKBONE, run_eval, write_davis, write_voc
from loftup.eval import EvalConfig, evaluate


def test_paths_given_as_path_objects_are_recorded_as_text(tmp_path):
    """``EvalConfig(root=Path(...), json=Path(...))`` ran the whole evaluation, then failed
    on writing the JSON (a PosixPath is no JSON value), losing the scores and the figure."""
    root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
    out = tmp_path / "out"
    cfg = EvalConfig(task="davis", dataset="davis2017", root=root, backbone=TEST_BACKBONE,
                     upsampler="bilinear", size=28, cache_dir=None, progress=False,
                     json=out / "r.json", figure=out / "f.png", save_masks=out / "m")  # fmt: skip
    results = evaluate(cfg)
    saved = json.loads((out / "r.json").read_text())
    assert saved["metrics"] == results["metrics"]
    assert saved["settings"]["root"] == str(root)
    assert saved["settings"]["save_masks"] == str(out / "m")
    assert (out / "f.png").is_file() and (out / "m" / "bear" / "00001.png").is_file()
    cfg.json = Path("elsewhere.json")  # set after construction: recorded as text too
    assert cfg.to_dict()["json"] == "elsewhere.json"


def test_the_backbone_input_recorded_is_what_the_backbone_saw(tmp_path):
    """``highres --size 30`` recorded a backbone input of 60 x 60, but the backbone saw 56 px:
    the image was resized to 60, then again by the featurizer to its patch grid. It goes to
    56 px in one step now: the features of a 56-px input, those a --size 28 run cached."""
    root = write_voc(tmp_path / "voc")
    common = ["--dataset", "voc", "--epochs", "1", "--limit", "2"]
    common += ["--cache-dir", str(tmp_path / "cache")]
    run_eval("seg", root, "highres", tmp_path, "--size", "28", *common, name="a")
    res = run_eval("seg", root, "highres", tmp_path, "--size", "30", *common, name="b")
    sizes = res["features"]["sizes"]
    assert sizes["backbone_input"] == [56, 56] and sizes["lowres"] == [4, 4]
    assert res["cache"] == {"hits": 4, "misses": 0}  # 2 training and 2 validation images


def test_runs_that_differ_draw_their_figures_to_different_files():
    """``--json runs/coco.loftup`` and ``--json runs/coco.bilinear`` both drew runs/coco.png,
    and without --json two backbones' runs both drew eval_seg_cocostuff_bilinear.png: the
    second figure replaced the first without a word."""
    from loftup.eval.results import figure_path

    def figure(**kw):
        settings = {"backbone": "dinov2_vits14", "upsampler": "bilinear", **kw}
        return figure_path(EvalConfig("seg", "cocostuff", "data", **settings))

    assert figure(json="runs/coco.loftup") == "runs/coco.loftup.png"
    assert figure(json="runs/coco.bilinear") == "runs/coco.bilinear.png"
    assert figure(json="runs/coco.json") == "runs/coco.png"  # as documented
    assert figure(json="runs/coco") == "runs/coco.png"
    assert figure(json="runs/r.png") == "runs/r.png.png"  # not the JSON's own path
    small, base = figure(), figure(backbone="dinov2_vitb14")
    assert small == "eval_seg_cocostuff_dinov2_vits14_bilinear.png" and base != small


def test_a_png_at_the_default_figure_path_that_loftup_did_not_draw_is_refused(tmp_path, capsys):
    """`loftup eval --json runs/coco.json` replaced the user's own runs/coco.png with its
    figure, --figure not given: refused before any work (before --root is looked at), saying
    how to choose another; an earlier run's figure (loftup's mark) is not refused."""
    from bench_helpers import marked_png
    from loftup.cli import main

    out, png = tmp_path / "coco.json", tmp_path / "coco.png"
    marked_png(png, None)
    argv = ["eval", "seg", "--root", str(tmp_path / "nowhere"), "--backbone", TEST_BACKBONE,
            "--upsampler", "bilinear", "--no-progress", "--json", str(out)]  # fmt: skip
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: {png} bears no loftup mark (figures loftup drew before version 0.1.0 bear "
        f"none), and the figure of --json {out} would replace it; give --figure another path "
        f"for the figure (or --figure {png} to replace that file)\n"
    )
    marked_png(png, "loftup 0.1.0")
    assert main(argv) == 2  # now refused for the --root that is not there, as before
    assert "--root" in capsys.readouterr().err and png.exists()


def test_an_unmarked_figure_beside_loftup_s_own_results_is_an_earlier_version_s(tmp_path, capsys):
    """Figures loftup drew before they bore its mark were refused as a user's own: an unmarked
    PNG beside --json results that `loftup eval` wrote (their run's loftup_version) is their
    figure, replaced (the run goes on, here to the --root that is not there); beside another
    program's JSON of that name it is still refused."""
    from bench_helpers import marked_png
    from loftup.cli import main
    from loftup.eval.report import run_info

    out, png = tmp_path / "coco.json", tmp_path / "coco.png"
    marked_png(png, "Matplotlib version3.9.0, https://matplotlib.org/")
    argv = ["eval", "seg", "--root", str(tmp_path / "nowhere"), "--backbone", TEST_BACKBONE,
            "--upsampler", "bilinear", "--no-progress", "--json", str(out)]  # fmt: skip
    ours = {"task": "seg", "dataset": "cocostuff", "metrics": {}, "run": run_info()}
    for results, refused in (({**ours, "run": {"date": "2026"}}, True), (ours, False)):
        out.write_text(json.dumps(results))
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert (f"{png} bears no loftup mark" in err) == refused, err
        assert ("--root" in err) != refused, err


def test_each_task_s_printed_scores_say_their_unit_and_match_the_json():
    """`loftup eval` printed `mIoU 0.37  pixel accuracy 0.89` where its JSON held `miou 0.0037`
    (and the demo's and experiments' reports, fractions, 0.37 for 37%): each percentage it
    prints now bears its sign and is the JSON's fraction times 100, depth's RMSE its metres,
    for every task."""
    from loftup.eval.report import summary

    head = {"dataset": "d", "backbone": "b", "upsampler": "u"}
    cases = {
        "seg": ({"miou": 0.0037, "pixel_accuracy": 0.89}, "mIoU 0.37%  pixel accuracy 89.00%"),
        "depth": (
            {
                "delta1": 0.9135,
                "rmse": 0.3121,
                "abs_rel": 0.0912,
                "si_delta1": 0.95,
                "si_rmse": 0.2,
            },
            "delta1 91.35%  RMSE 0.3121 m  AbsRel 0.0912  (scale-invariant: delta1 95.00%  "
            "RMSE 0.2000 m)",
        ),
        "normals": (
            {
                "within_11.25": 0.4,
                "within_22.5": 0.6,
                "within_30": 0.7261,
                "rmse": 31.5,
                "mean": 22.25,
            },
            "within 11.25/22.5/30 deg 40.00% / 60.00% / 72.61%  RMSE 31.50 deg  mean 22.25 deg",
        ),
        "davis": (
            {"J&F_mean": 0.6025, "J_mean": 0.58, "F_mean": 0.625},
            "J&F 60.25%  J 58.00%  F 62.50%",
        ),
    }
    for task, (metrics, said) in cases.items():
        assert summary({**head, "task": task, "metrics": metrics}) == f"d b + u: {said}", task


def test_each_task_s_figure_title_says_its_scores_as_the_printed_line_does():
    """The figure's title said `mIoU 0.37` (and `delta1 91.35`, `J&F 60.25`) beside a printed
    `mIoU 0.37%`: its scores now bear the printed line's units, each figure as printed."""
    from loftup.eval.report import figure_title, summary

    head = {"dataset": "d", "backbone": "b", "upsampler": "u"}
    metrics = {
        "seg": {"miou": 0.0037, "pixel_accuracy": 0.89},
        "depth": {"delta1": 0.9135, "rmse": 0.3121, "abs_rel": 0.0912},
        "normals": {"within_11.25": 0.4, "within_22.5": 0.6, "within_30": 0.7261, "rmse": 31.5,
                    "mean": 22.25},
        "davis": {"J&F_mean": 0.6025, "J_mean": 0.58, "F_mean": 0.625},
    }  # fmt: skip
    said = {
        "seg": "mIoU 0.37%",
        "depth": "delta1 91.35%, RMSE 0.3121 m",
        "normals": "within 30 deg 72.61%, RMSE 31.50 deg",
        "davis": "J&F 60.25%",
    }
    for task, m in metrics.items():
        title = figure_title(task, "d b + u", m)
        assert title == f"d b + u: {said[task]}", title
        printed = summary({**head, "task": task, "metrics": m})
        numbers = [w for w in said[task].replace(",", "").split() if "." in w]  # the scores
        assert all(n in printed.split() for n in numbers), (title, printed)  # as printed
