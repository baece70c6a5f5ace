"""Every experiment's `--quick` run writes its table, results JSON and figures (slow)."""

from __future__ import annotations

import json

import pytest

from loftup.cli import main
from loftup.experiments import EXPERIMENTS
from loftup.experiments.report import figure_names
from loftup.experiments.stats import RULE

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = {
    "coords": {"bars.png", "loss_curves.png", "examples.png"},
    "attention": {"bars.png", "loss_curves.png", "examples.png"},
    "stages": {"bars.png", "loss_curves.png", "examples.png"},
    "mask-noise": {"bars.png", "loss_curves.png", "levels.png", "examples.png"},
    "distill-view": {"bars.png", "loss_curves.png", "examples.png"},
    "grid": {"ratio_miou.png", "ratio_boundary.png", "loss_curves.png", "examples.png", "bars.png"},
}
ROWS = {
    "coords": ["coords + colour (released)", "colour only"],
    "attention": ["global (released)", "local k=3", "local k=5"],
    "stages": ["stage 1 + 2 (released)", "stage 1 only", "stage 1 for 3 steps"],
    "mask-noise": ["clean masks", "erode 0.25", "drop 1", "blobs 0.5"],
    "distill-view": ["crops (released)", "full image", "both"],
}


def quick(name, out, *extra):
    return main(["experiment", name, "--quick", "--out", str(out), "--threads", "1",
                 "--no-progress", *extra])  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_quick_experiment_writes_table_json_and_figures(name, tmp_path, capsys):
    out = tmp_path / name
    assert quick(name, out, "--json", str(tmp_path / "copy.json")) == 0
    printed = capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert report in printed and RULE in report and " ± " in report
    results = json.loads((out / "results.json").read_text())
    assert json.loads((tmp_path / "copy.json").read_text()) == results
    assert results["settings"]["seeds"] == 2 and results["run"]["loftup_version"]
    assert "git_commit" in results["run"] and len(results["backbone"]["sha256"]) == 64
    assert set(results["figures"]) == FIGURES[name] == set(figure_names(name))
    for fig in FIGURES[name]:
        assert (out / fig).read_bytes()[:8] == PNG and f"![{fig}]({fig})" in report
    assert results["clock"]["seconds"]["total"] > 0
    configs = results["training_configs"]  # the exact settings, demo defaults included
    if name == "grid":
        configs = {"LoftUp": configs}
    for runs in configs.values():
        s1, s2 = results["settings"]["stage1_steps"], results["settings"]["stage2_steps"]
        assert runs["stage1"]["max_steps"] in (s1, s1 + s2)  # stages' longer control: s1 + s2
        assert runs["stage1"]["stage1"]["image_size"] == results["settings"]["size"]
    if name == "grid":
        assert len(results["cells"]) == 10  # --quick: outputs up to 64 px
        cell = results["cells"][0]
        assert cell["LoftUp"]["miou"]["n"] == 2 and "bilinear" in cell and "bicubic" in cell
        assert "| 4x4 -> 8 px (2x) |" in report
        held = results["heldout"]  # the scenes of every cell, at each cell's own output side
        assert held["size"] is None and held["output_sides"] == [8, 16, 32, 64]
        assert (held["images"], held["fit"], held["scored"]) == (8, 4, 4)
        return
    for row in [*ROWS[name], "bilinear", "bicubic"]:
        assert f"| {row} | " in report
        assert len(results["rows"][row]["miou"]["values"]) == 2
    curves = results["curves"][ROWS[name][0]]
    assert all(len(h) == 2 for h in curves.values())  # a loss history per seed and stage
    if name == "distill-view":
        assert "mIoU small regions" in report and "miou_small" in results["rows"]["both"]


@pytest.mark.slow
def test_a_rerun_reuses_the_finished_runs_and_gives_the_same_table(tmp_path, capsys, monkeypatch):
    import loftup.train.checkpoint as checkpoint

    out = tmp_path / "coords"
    assert quick("coords", out) == 0
    first = json.loads((out / "results.json").read_text())
    ckpt = out / "runs" / "seed1" / "colour-only" / "stage1" / "checkpoint.pt"
    stamp = ckpt.stat().st_mtime_ns
    loads, load = [], checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda p, *a: loads.append(p) or load(p, *a))
    assert quick("coords", out) == 0
    again = json.loads((out / "results.json").read_text())
    assert ckpt.stat().st_mtime_ns == stamp  # not retrained
    # each loaded once by the start (the up-front check and the run reused it, loading it twice)
    assert sorted(loads) == sorted((out / "runs").glob("seed*/*/stage1/checkpoint.pt"))
    assert len(loads) == 4
    assert again["rows"] == first["rows"]
    assert quick("coords", out, "--stage1-lr", "0.01") == 2  # other settings: refused
    assert "holds a run made with other settings" in capsys.readouterr().err
