"""``loftup bench``'s figures and progress: a table drawn beside its JSON with the machine's
load, progress bars on stderr (hidden when asked), a suite's sections drawn as they end."""

from __future__ import annotations

import json
import os
import re
import sys

from bench_helpers import TINY_BENCH, marked_png, png_size
from loftup.cli import main


def test_bench_draws_its_table_beside_the_json_and_says_the_machine_s_load(tmp_path, capsys):
    """The figure a person looks at is drawn next to the numbers (same stem, .png), whole and
    of the size the figure is made at, with no temporary file left; the JSON holds the load
    average at the start and the end; --no-progress shows no bar."""
    from loftup.atomic import leftovers
    from loftup.bench.figure import DPI, FIGSIZE
    from loftup.figure_mark import is_loftup_png

    out = tmp_path / "bench.json"
    marked_png(tmp_path / "bench.png", "loftup 0.0.1")  # an earlier run's figure: replaced
    assert main([*TINY_BENCH, "--json", str(out), "--no-progress"]) == 0
    said = capsys.readouterr()
    assert f"wrote {tmp_path / 'bench.png'}" in said.out and "call" not in said.err
    assert png_size(tmp_path / "bench.png") == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)
    assert is_loftup_png(tmp_path / "bench.png")  # marked: the next run may replace it
    assert leftovers(tmp_path) == []
    machine = json.loads(out.read_text())["machine"]
    if hasattr(os, "getloadavg"):
        for key in ("load_average_start", "load_average_end"):
            assert len(machine[key]) == 3 and all(v >= 0 for v in machine[key])


def test_bench_progress_goes_to_stderr_and_json_dash_keeps_stdout_json(tmp_path, capsys):
    fig = tmp_path / "figs" / "table.png"
    assert main([*TINY_BENCH, "--json", "-", "--figure", str(fig)]) == 0
    said = capsys.readouterr()
    report = json.loads(said.out)  # stdout: the JSON alone
    assert report["results"] and report["machine"]["load_average_end"] is not None
    # the bar counted every call of the table: 3 cases x (2 first calls, the second's memory
    # read, + 1 timed)
    assert re.search(r"bench: 100%\|.*\| 9/9 ", said.err), said.err[-500:]
    assert "16 bicubic/float32" in said.err  # the case being timed, with its size
    assert png_size(fig)[0] > 0 and f"wrote {fig}" in said.err


def test_bench_figure_path_is_checked_before_any_work(tmp_path, capsys):
    argv = [*TINY_BENCH, "--json", str(tmp_path / "a.json"), "--figure", str(tmp_path / "a.json")]
    assert main(argv) == 2
    assert "--figure" in capsys.readouterr().err and not (tmp_path / "a.json").exists()
    (tmp_path / "b.png").mkdir()  # the figure of --json b: a folder
    assert main([*TINY_BENCH, "--json", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err == (  # not "e.g. b.png/out": no option takes that path
        f"error: the figure {tmp_path / 'b.png'} is a folder; give --figure another path\n"
    )
    assert main([*TINY_BENCH, "--figure", str(tmp_path)]) == 2  # a folder
    assert [p.name for p in tmp_path.glob("*.png")] == ["b.png"]  # the folder only
    assert not list((tmp_path / "b.png").iterdir()) and not (tmp_path / "b").exists()


def test_bench_never_replaces_a_png_beside_its_json_that_loftup_did_not_draw(tmp_path, capsys):
    """`loftup bench --json b/mine.json` replaced the user's own b/mine.png (a photo, another
    tool's plot) with its figure, --figure not given, status 0: refused before any work now,
    saying how to choose another; --figure naming that file replaces it."""
    from loftup.figure_mark import is_loftup_png

    out, png = tmp_path / "mine.json", tmp_path / "mine.png"
    for software in (None, "Matplotlib version3.11.2, https://matplotlib.org/"):
        marked_png(png, software)
        before = png.read_bytes()
        assert main([*TINY_BENCH, "--json", str(out), "--no-progress"]) == 2
        assert capsys.readouterr().err == (
            f"error: {png} bears no loftup mark (figures loftup drew before version 0.1.0 "
            f"bear none), and the figure of --json {out} would replace it; give --figure "
            f"another path for the figure (or --figure {png} to replace that file)\n"
        )
        assert png.read_bytes() == before and not out.exists()  # no work done
    assert main([*TINY_BENCH, "--json", str(out), "--figure", str(png), "--no-progress"]) == 0
    assert is_loftup_png(png) and out.exists()


def test_bench_replaces_the_unmarked_figure_an_earlier_version_drew_beside_its_json(
    tmp_path, capsys
):
    """Figures loftup drew before they bore its mark were refused as a user's own, every
    re-run with the same --json failing: an unmarked PNG beside a JSON that is loftup bench's
    own report is that report's figure, replaced. Beside a JSON of another program's it is
    still refused, and so is a file that is no PNG."""
    from loftup.figure_mark import is_loftup_png

    out, png = tmp_path / "b.json", tmp_path / "b.png"
    assert main([*TINY_BENCH, "--json", str(out), "--figure", str(tmp_path / "c.png")]) == 0
    marked_png(png, "Matplotlib version3.9.0, https://matplotlib.org/")  # as they drew it
    capsys.readouterr()
    assert main([*TINY_BENCH, "--json", str(out), "--no-progress"]) == 0, capsys.readouterr()
    assert is_loftup_png(png)
    report = json.loads(out.read_text())
    for theirs, mine in (
        ({**report, "machine": {"date": "2026-01-01"}}, None),  # no load average: not ours
        (report, b"\xff\xd8\xff\xe0 a JPEG named .png"),
    ):
        out.write_text(json.dumps(theirs))
        if mine is None:
            marked_png(png, None)
        else:
            png.write_bytes(mine)
        before = png.read_bytes()
        assert main([*TINY_BENCH, "--json", str(out), "--no-progress"]) == 2
        assert f"{png} bears no loftup mark" in capsys.readouterr().err
        assert png.read_bytes() == before


def test_bench_figures_beside_two_jsons_of_one_stem_are_two():
    """--json runs/a.loftup and runs/a.bilinear drew one runs/a.png, the second run's figure
    over the first's; as eval's, another ending than .json is kept and .png added."""
    from argparse import Namespace

    from loftup.cli.bench import _figure_path

    def figure(json):
        return _figure_path(Namespace(figure=None, json=json, suite=None, only=None))

    assert figure("runs/a.loftup") != figure("runs/a.bilinear")
    assert figure("runs/a.loftup") == "runs/a.loftup.png"
    assert figure("runs/a.json") == figure("runs/a") == "runs/a.png"
    assert figure("runs/b.png") == "runs/b.png.png"  # never the JSON itself


def test_a_suite_draws_its_forward_sections_as_they_end(tmp_path):
    """A suite's figure is drawn once its forward sections have run (a run cut short after
    them keeps it), from their rows together; a suite with none draws nothing."""
    from loftup.bench import bench_forward
    from loftup.bench.figure import suite_figure, suite_rows
    from loftup.cli.bench import _saver

    table = bench_forward((16,), dim=32, grid=4, repeats=1, warmup=0, peak=False, progress=False)
    big = bench_forward((24,), dim=32, grid=4, repeats=1, warmup=0, peak=False, progress=False)
    report = {"suite": "smoke", "machine": table["machine"], "sections": {"parity": {}}}
    js, png = tmp_path / "s.json", tmp_path / "s.png"
    save = _saver(str(js), str(png))
    save(report)
    assert js.exists() and not png.exists()  # no forward section yet
    report["sections"]["forward"] = table
    report["sections"]["forward_4096"] = big
    save(report)
    assert png_size(png)[0] > 0
    assert {r["size"] for r in suite_rows(report)["results"]} == {16, 24}
    assert suite_figure({"suite": "smoke", "sections": {"forward": {"error": "x"}}}, png) is None


def test_each_suite_section_has_a_bar_and_its_load_average(capsys):
    from loftup.bench.suite import run_suite

    report = run_suite("smoke", only=["parity"], log=lambda *a: None)
    assert "[smoke] parity" in capsys.readouterr().err
    m = report["machine"]
    assert ("load_average_start" in m and "load_average_end" in m) or not hasattr(os, "getloadavg")


def test_merged_parts_keep_the_run_s_load_average_without_calling_it_a_difference():
    from loftup.bench.parts import merge_machines

    a = {
        "date": "d1",
        "torch": "2",
        "load_average_start": [1.0, 1, 1],
        "load_average_end": [2.0, 1, 1],
    }
    b = {
        "date": "d2",
        "torch": "2",
        "load_average_start": [3.0, 1, 1],
        "load_average_end": [4.0, 1, 1],
    }
    got = merge_machines([a, b])
    assert got["load_average_start"] == [1.0, 1, 1]  # the first part's start, the last's end
    assert got["load_average_end"] == [4.0, 1, 1] and "differs_by_part" not in got


class _Terminal:
    """A stderr that says it is a terminal (where progress bars are drawn), keeping the text."""

    def __init__(self) -> None:
        import io

        self.buffer = io.StringIO()

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return self.buffer.write(text)

    def flush(self) -> None:
        pass


def test_no_progress_hides_the_stream_s_bar_too(monkeypatch):
    """`loftup bench --stream N --no-progress` still drew the stream's bar over its tiles on a
    terminal (the README: --no-progress hides the bars); without the flag it is drawn."""
    argv = ["bench", "--sizes", "16", "--dim", "32", "--grid", "4", "--repeats", "1"]
    argv += ["--warmup", "0", "--no-peak", "--tile-size", "16", "--stream", "48"]
    for flag, drawn in (["--no-progress"], False), ([], True):
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        assert main([*argv, *flag]) == 0
        assert ("tiles" in terminal.buffer.getvalue()) is drawn


def test_a_bench_that_draws_no_figure_does_not_refuse_a_png_beside_its_json(
    tmp_path, capsys, monkeypatch
):
    """A user's b.png beside --json b.json refused runs that draw no figure there: a suite
    whose --only names no forward section, a run without matplotlib (a warning instead).
    Both run now, leaving the file as it was; a suite run of its forward section is refused."""
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    marked_png(png, None)
    before = png.read_bytes()
    suite = ["bench", "--suite", "smoke", "--json", str(out), "--no-progress", "--only"]
    assert main([*suite, "forward,parity"]) == 2  # before any work
    assert f"{png} bears no loftup mark" in capsys.readouterr().err
    assert main([*suite, "parity"]) == 0, capsys.readouterr().err
    assert f"no figure: {png} draws the forward sections, and none ran" in capsys.readouterr().out
    assert png.read_bytes() == before and out.exists()
    out.write_text('{"mine": 1}')  # not loftup's report: its unmarked figure is no earlier one
    for loaded in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert main([*TINY_BENCH, "--json", str(out), "--no-progress"]) == 0
    assert "warning: no figure: matplotlib is not installed" in capsys.readouterr().err
    assert png.read_bytes() == before
