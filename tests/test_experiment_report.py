"""`loftup experiment`'s report: the verdict rule, the table, small regions, scoring, the header,
the loss curves and bars, and what it records of the run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from loftup.experiments import ExperimentSettings
from loftup.experiments.runs import Variant, stage_configs
from loftup.experiments.scoring import region_miou, score_upsampler, small_area, small_regions
from loftup.experiments.stats import NO_DIFFERENCE, summarize, table, verdict


def test_a_difference_within_the_spread_is_no_finding():
    ref = summarize([0.70, 0.72, 0.74])  # std 0.02
    close = summarize([0.72, 0.73, 0.74])  # +0.01, pooled std ~0.016
    far = summarize([0.78, 0.79, 0.80])  # +0.07
    assert verdict(close, ref)["verdict"] == NO_DIFFERENCE
    assert verdict(far, ref)["verdict"] == "better"
    assert verdict(ref, far)["verdict"] == "worse"
    assert verdict(far, ref, higher_is_better=False)["verdict"] == "worse"
    v = verdict(far, ref)
    assert v["diff"] == pytest.approx(0.07) and v["pooled_std"] == pytest.approx(
        math.sqrt((0.01**2 + 0.02**2) / 2)
    )
    assert verdict(summarize([0.9]), summarize([0.1]))["verdict"] == "one seed: no spread"
    # a score over no pixels (no small regions in the scored half) at 3 seeds: no traceback
    unmeasured = summarize([math.nan] * 3)
    assert math.isnan(unmeasured["mean"]) and math.isnan(unmeasured["std"])
    assert verdict(unmeasured, ref)["verdict"] == "not measured"
    assert verdict(ref, unmeasured)["verdict"] == "not measured"
    assert table({"a": {"m": ref}, "b": {"m": unmeasured}}, {"m": "m"}, "a", ("m",))


def test_loss_curve_bands_are_the_tables_spread():
    """The loss curves' band was numpy's std (ddof 0), the tables' the sample std (ddof 1):
    with 3 seeds the figure showed the spread 0.82 times as wide as the rule under it."""
    from loftup.experiments.plots import seed_band

    seeds = [[1.0, 0.5, 0.3], [2.0, 1.0, 0.4], [3.0, 0.0, 0.8], [9.0]]
    mean, std, length = seed_band(seeds)
    assert length == 1 and mean.tolist() == [3.75]
    assert std[0] == pytest.approx(summarize([1.0, 2.0, 3.0, 9.0])["std"])
    mean, std, length = seed_band(seeds[:1])
    assert length == 3 and std.tolist() == [0.0] * 3


def test_table_compares_every_row_with_the_reference():
    rows = {
        "released": {"miou": summarize([0.70, 0.72, 0.74])},
        "variant": {"miou": summarize([0.72, 0.73, 0.74])},
        "bilinear": {"miou": summarize([0.60, 0.61, 0.62])},
    }
    text = table(rows, {"miou": "mIoU"}, "released", compare=("miou",))
    lines = text.splitlines()
    assert lines[0] == "| variant | mIoU | Δ mIoU vs released |"
    assert lines[2] == "| released | 0.720 ± 0.020 | (reference) |"
    assert lines[3].endswith(f"| +0.010 ({NO_DIFFERENCE}) |")
    assert lines[4].endswith("| -0.110 (worse) |")


def test_small_regions_are_small_connected_components_of_one_class():
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[0, 4:20, 4:20] = 1  # 256 px: large for a threshold of 100
    for i in range(10):  # a diagonal line of class 2: one 8-connected component of 10 px
        labels[0, 22 + i % 10, 20 + i] = 2
    labels[0, 30:32, 0:3] = 255  # not scored: never small
    small = small_regions(labels, min_area=100)
    assert small[0, 22, 20] and small[0, 31, 29] and small.sum() == 10
    assert not small[0, 10, 10] and not small[0, 31, 0]
    pred = labels.clone()
    pred[pred == 255] = 0
    perfect = region_miou(pred, labels, small, 3)
    assert perfect == {"miou_small": 1.0, "miou_large": 1.0}
    pred[small] = 0  # the line is missed: only the small-region score drops
    missed = region_miou(pred, labels, small, 3)
    assert missed["miou_large"] == 1.0 and missed["miou_small"] < 0.5
    assert small_area(8, 64, 64, 4) == 256 and small_area(8, 128, 64, 4) == 1024


def test_scoring_draws_no_progress_bar_of_its_own(capsys):
    """Each upsampler, seed and grid cell drew an "upsampling" bar on stderr, --no-progress
    or not (a quick grid run printed some 60 of them)."""
    from loftup.baselines import get_upsampler
    from loftup.experiments.data import EvalSet
    from loftup.world.config import DemoConfig

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (4, 16, 16), generator=g)
    evalset = EvalSet(torch.rand(4, 3, 16, 16, generator=g), labels, 3, "random")
    lr = torch.randn(4, 6, 4, 4, generator=g)
    r = score_upsampler(
        get_upsampler("bilinear"), lr, evalset.images, evalset, DemoConfig(probe_epochs=1)
    )
    assert r["pred"].shape == (2, 16, 16) and 0 <= r["miou"] <= 1
    assert capsys.readouterr().err == ""


def test_the_command_recorded_is_a_loftup_command_or_none(monkeypatch):
    """results.json and report.md gave "loftup" + sys.argv[1:] as the command whoever ran the
    process: from Python, a notebook's or pytest's arguments passed off as a loftup command."""
    from loftup.experiments.report import command

    monkeypatch.setattr("sys.argv", ["pytest", "-q", "tests/test_x.py"])
    assert command("coords") == []
    monkeypatch.setattr("sys.argv", ["/bin/loftup", "experiment", "--quick", "coords"])
    assert command("coords") == ["loftup", "experiment", "--quick", "coords"]


def test_an_experiment_runs_where_the_os_keeps_no_load_average(monkeypatch):
    """Windows has no os.getloadavg: the clock every experiment starts with raised an
    AttributeError there, before any work."""
    import os

    from loftup.experiments.report import Clock, header

    monkeypatch.delattr(os, "getloadavg", raising=False)
    clock = Clock().record()
    assert clock["load_average_1min"] == {"start": None, "end": None}
    results = {
        "settings": {"name": "coords", "seeds": 1, "stage1_steps": 2, "stage2_steps": 0,
                     "batch_size": 4, "size": 32},
        "backbone": {"name": "scenes_vit_p8", "sha256": None},
        "run": {"loftup_version": "0", "git_commit": None},
        "heldout": {"images": 4, "fit": 2, "scored": 2, "classes": 3, "source": "scenes"},
        "command": [],
        "clock": clock,
    }  # fmt: skip
    text = header("t", "q", results)
    assert "load average not known" in text and "load average None" not in text


def test_the_report_header_counts_in_words_that_agree():
    """A one-step, one-seed run's report said "1 seeds; stage 1: 1 steps"."""
    from loftup.experiments.report import header

    def results(seeds, steps):
        settings = {"name": "coords", "seeds": seeds, "stage1_steps": steps, "stage2_steps": 0,
                    "batch_size": 2, "size": 32}  # fmt: skip
        return {
            "settings": settings, "command": [], "backbone": {"name": "b", "sha256": None},
            "heldout": {"images": 4, "fit": 2, "scored": 2, "classes": 3, "source": "scenes"},
            "run": {"loftup_version": "x", "git_commit": "y"},
            "clock": {"seconds": {"total": 1.0}, "threads": 1,
                      "load_average_1min": {"start": 0, "end": 0}},
        }  # fmt: skip

    assert "- 1 seed; stage 1: 1 step of batch 2" in header("t", "q", results(1, 1))
    assert "- 3 seeds; stage 1: 20 steps of batch 2" in header("t", "q", results(3, 20))
    assert " s on 1 thread, load average " in header("t", "q", results(1, 1))  # "thread(s)"


def test_mask_noise_curves_hold_a_row_per_loss_term_as_its_notes_say(tmp_path):
    """The notes point at "the reconstruction term (second row of the curves)", but the curves
    were laid out 3 panels a row: with the 5 kinds, row 2 held two total-loss panels and one
    reconstruction panel, and the reconstruction panels ran on to row 4. The question also
    named levels 0.25, 0.5 and 1 whatever --levels gave."""
    from PIL import Image

    from loftup.experiments.data import EvalSet
    from loftup.experiments.designs import mask_noise
    from loftup.experiments.variants import _figures

    s = ExperimentSettings("mask-noise", noise_levels=[0.1, 0.3]).resolved()
    assert "at levels 0.1 and 0.3)?" in mask_noise(s).question
    s = ExperimentSettings("mask-noise", noise_kinds=["erode", "drop"], noise_levels=[1.0])
    s = s.resolved()
    design = mask_noise(s)
    assert "at level 1)?" in design.question
    kinds = len(s.noise_kinds)
    names = [v.name for v in design.variants]
    stats = {"miou": summarize([0.3, 0.4]), "pixel_accuracy": summarize([0.5, 0.6])}
    rows = {n: stats for n in [*names, "bilinear", "bicubic"]}
    curve = [{"step": i, "loss": 1.0 / (i + 1), "rec": 0.5 / (i + 1)} for i in range(4)]
    histories = {n: {"stage1": [curve, curve]} for n in names}
    images, labels = torch.rand(4, 3, 8, 8), torch.randint(0, 3, (4, 8, 8))
    preds = {n: labels[2:] for n in names[:2]}
    metrics = {"miou": "mIoU", "pixel_accuracy": "pixel accuracy"}
    _figures(tmp_path, design, rows, metrics, histories, EvalSet(images, labels, 3, "x"), preds)
    width, height = Image.open(tmp_path / "loss_curves.png").size
    assert width / height == pytest.approx((4.2 * kinds) / (3.2 * 2), rel=0.02)  # 2 rows
    assert kinds == 2  # (3 panels a row gave 4.2 * 3 / (3.2 * 2))


def test_a_loss_curve_of_one_step_is_drawn(tmp_path):
    """A stage-2 run of one step (`stages --quick`) left its loss-curve panels empty: a line
    through one point draws nothing, and only the faint seed band showed."""
    from PIL import Image

    from loftup.experiments.plots import loss_curves

    path = loss_curves(tmp_path / "c.png", {"stage 2": {"a": [[1.0], [1.1]]}}, "t")
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    tab_blue = np.abs(rgb - [31, 119, 180]).sum(-1) < 30  # the first line's colour
    assert tab_blue.sum() > 20


def test_the_grid_bars_give_loftup_one_colour():
    """The grid's bar chart coloured each LoftUp bar (one per grid) by its place among all
    bars: four colours for one method, read as four methods."""
    from loftup.experiments.grid import LOFTUP, _bar_rows, bar_method
    from loftup.experiments.plots import BASELINE_COLOUR, bar_colours

    cells = [(4, 2), (4, 8), (8, 2), (16, 2)]
    summary = {
        (m, c): summarize([0.5, 0.6]) for m in (LOFTUP, "bilinear", "bicubic") for c in cells
    }
    names = list(_bar_rows(cells, summary))
    grey = tuple(n for n in names if not n.startswith(LOFTUP))
    colours = bar_colours(names, grey, bar_method)
    ours = {colours[i] for i, n in enumerate(names) if n.startswith(LOFTUP)}
    assert len(ours) == 1 and BASELINE_COLOUR not in ours
    assert {colours[i] for i, n in enumerate(names) if n in grey} == {BASELINE_COLOUR}
    assert len(set(bar_colours(["a", "b", "c"]))) == 3  # variants: each its own colour


def test_the_configs_reported_name_the_folders_the_runs_used(tmp_path):
    """results.json's configs were each run's config.yaml as written, where every $ of a path
    is doubled (so that the file, read back, names the same folder): data.root=/d/a$b was
    reported as /d/a$$b, a folder the run never read."""
    from loftup.experiments.runs import RunResult, run_configs
    from loftup.train.config import load_config
    from loftup.train.monitor import write_run_record

    s = ExperimentSettings("coords").resolved()
    one, _ = stage_configs(s, Variant("a"), 0, tmp_path / "a$b", tmp_path / "runs")
    out = tmp_path / "run$1"
    out.mkdir()
    cfg = load_config({**one, "data": {**one["data"], "cache_dir": str(tmp_path / "$c")}})
    write_run_record(out, cfg.to_dict(), 1)
    assert "$$b" in (out / "config.yaml").read_text()
    run = RunResult(out / "final", out / "checkpoint.pt", [])
    [reported] = run_configs({"stage1": run}).values()
    assert reported["data"]["root"] == str(tmp_path / "a$b")
    assert reported["data"]["cache_dir"] == str(tmp_path / "$c")
    assert reported == {k: v for k, v in cfg.to_dict().items() if k != "log"}
