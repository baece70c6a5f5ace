"""The files a command is told to write (``--json``, ``--figure``) go where they were checked:
``~`` at the home folder, a link's target; names the file system cannot hold, and names
stdout cannot print, are said as errors, not tracebacks."""

from __future__ import annotations

import json

import pytest

from loftup.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    """$HOME a fresh folder, and the current folder another: where a literal ``./~`` shows."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir(), cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return home


def test_a_json_path_under_home_is_written_at_home_not_in_a_tilde_folder(home, capsys):
    """``--json=~/info.json`` (no shell expands it after ``=``) was checked at $HOME but
    written to ./~/info.json."""
    assert main(["info", "--json=~/info.json"]) == 0
    assert isinstance(json.loads((home / "info.json").read_text()), list)
    assert not (home.parent / "cwd" / "~").exists()
    assert f"wrote {home / 'info.json'}" in capsys.readouterr().out


def test_bench_json_and_figure_under_home_are_written_at_home(home):
    pytest.importorskip("matplotlib")
    tiny = ["bench", "--sizes", "16", "--dim", "32", "--grid", "4", "--repeats", "1"]
    tiny += ["--warmup", "0", "--no-peak", "--threads", "1"]
    assert main([*tiny, "--json=~/b.json", "--figure=~/figs/b.png"]) == 0
    assert (home / "b.json").is_file() and (home / "figs" / "b.png").is_file()
    assert main([*tiny, "--json=~/c.json"]) == 0  # its figure beside it
    assert (home / "c.json").is_file() and (home / "c.png").is_file()
    assert not (home.parent / "cwd" / "~").exists()


def test_eval_results_and_figure_under_home_are_written_at_home(home):
    from loftup.eval.config import EvalConfig
    from loftup.eval.results import finish

    drawn = []
    cfg = EvalConfig("seg", "ade20k", "data", "dinov2_vits14", "bilinear", json="~/r.json")
    results = finish(cfg, {"metrics": {}}, drawn.append)
    assert json.loads((home / "r.json").read_text())["figure"] == str(home / "r.png")
    assert drawn == [str(home / "r.png")]
    cfg.figure = "~/f.png"
    finish(cfg, results, drawn.append)
    assert drawn[-1] == str(home / "f.png")
    assert not (home.parent / "cwd" / "~").exists()
