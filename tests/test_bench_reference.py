"""Benchmarks measure the right things: the paper's stand-in is faithful, the arithmetic is the
anchors', and the reference is timed in the precisions it runs in (float32, tf32) or said why
not."""

from __future__ import annotations

import json

import pytest
import torch

from bench_helpers import STANDIN, TINY_BENCH
from loftup import LoftUp
from loftup.bench import flops_per_pixel, load_reference_class
from loftup.cli import main
from model_helpers import ROWS_ROUND_BY_COUNT
from processes import REPO
from reference_files import CASE_NAMES


@pytest.mark.parametrize("case", CASE_NAMES)
def test_standin_of_the_papers_code_reproduces_its_outputs(reference_state, reference_cases, case):
    model = load_reference_class(STANDIN).from_state_dict(reference_state)
    with torch.no_grad():
        out = model(reference_cases[f"{case}.lr_feats"], reference_cases[f"{case}.image"])
    assert (out - reference_cases[f"{case}.output"]).abs().max().item() <= 1e-5


def test_flop_count_is_the_anchors():
    # 406.7 GFLOP for one 224 x 224 output of the released C = 384 model (anchors.md)
    assert abs(flops_per_pixel(LoftUp().config, 256) * 224 * 224 / 1e9 - 406.7) < 0.5


def test_bench_json_has_precisions_reference_and_arithmetic(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["bench", "--sizes", "24", "--dim", "32", "--grid", "4", "--repeats", "1"]
    argv += ["--dtypes", "float32", "bfloat16", "--reference", str(STANDIN), "--json", str(out)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny operations: one thread is faster on a busy machine
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    # what ran is said: a size without a reference row was above its limit, not failed
    assert report["settings"]["reference_max_size"] == 448 and report["failed"] == []
    assert report["settings"]["repeats"] == 1 and report["machine"]["torch_threads"] == 1
    rows = {(r["method"], r["dtype"]): r for r in report["results"]}
    assert set(rows) == {
        ("loftup", "float32"),
        ("loftup", "bfloat16"),
        ("reference", "float32"),
        ("reference", "bfloat16"),
        ("bilinear", "float32"),
        ("bicubic", "float32"),
    }
    assert set(report["peak_gflops_per_s"]) == {"float32", "bfloat16"}
    ours = rows[("loftup", "float32")]
    assert ours["gflops_per_s"] > 0 and 0 < ours["fraction_of_peak"]
    assert ours["max_abs_dev_vs_float32"] == 0.0
    # the paper's code with the same weights computes the same function
    assert rows[("reference", "float32")]["max_abs_dev_vs_float32"] <= 1e-4
    assert 0 < rows[("loftup", "bfloat16")]["mean_abs_dev_vs_float32"] <= 0.05


@pytest.mark.skipif(ROWS_ROUND_BY_COUNT, reason="torch 2.4: tiles agree to 1e-6, not bit for bit")
def test_readme_speed_example_runs(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    section = text.split("## Speed")[1].split("\n## ")[0]
    blocks = [b.split("```")[0] for b in section.split("```python\n")[1:]]
    assert blocks, "the Speed section has no python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md (Speed)", "exec"), {})


def test_tf32_rows_time_ours_and_the_reference_in_float32_with_tf32(tmp_path):
    """On a GPU "tf32" is float32 with TF32 tensor cores; on the CPU the flags change nothing,
    so the rows must compute exactly the float32 output. (``--device auto``: the CPU here; it
    once crashed with torch's traceback, torch.device('auto').)"""
    out = tmp_path / "bench.json"
    argv = ["bench", "--sizes", "16", "--dim", "32", "--grid", "4", "--repeats", "1", "--tf32"]
    argv += ["--device", "auto", "--no-peak", "--reference", str(STANDIN), "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["machine"]["device"] == "cpu"
    rows = {(r["method"], r["dtype"]): r for r in report["results"]}
    assert ("loftup", "tf32") in rows and ("reference", "tf32") in rows
    assert rows[("loftup", "tf32")]["max_abs_dev_vs_float32"] == 0.0
    assert rows[("loftup", "tf32")]["output_bytes"] == rows[("loftup", "float32")]["output_bytes"]
    assert report["settings"]["tf32_rows"] is True
    assert not torch.backends.cuda.matmul.allow_tf32  # switched back off


def test_summary_names_the_reference_s_precision_when_it_is_not_ours():
    """Where the paper's code has no row in our precision (it failed there, say), the summary
    compares with its float32 row: that speed-up is across precisions and must say so."""
    from loftup.bench.suite import summary

    def row(method, dtype, best_s):
        return {"method": method, "dtype": dtype, "size": 224, "best_s": best_s}

    rows = [row("loftup", "float32", 0.010), row("loftup", "bfloat16", 0.005)]
    rows += [row("reference", "float32", 0.040), row("bilinear", "float32", 0.001)]
    report = {"suite": "cpu", "machine": {"processor": "x"}, "sections": {"forward": {}}}
    report["sections"]["forward"]["results"] = rows
    lines = {ln.split()[1]: ln for ln in summary(report).splitlines() if ln.startswith("    224")}
    assert ", reference 40.0 ms (4.0x)" in lines["float32"]
    assert ", reference float32 40.0 ms (8.0x)" in lines["bfloat16"]


def test_a_reference_that_would_not_run_is_refused_and_one_left_out_is_said(capsys):
    """--reference with --reference-max-size below every size timed no reference and said
    nothing; a size above it had no reference row without a word (not a failure: not asked)."""
    tiny = ["--dim", "32", "--grid", "4", "--no-peak", "--repeats", "1"]
    ref = ["--reference", str(STANDIN), *tiny]
    assert main(["bench", "--sizes", "24", "--reference-max-size", "16", *ref]) == 2
    err = capsys.readouterr().err
    assert "--reference-max-size) 16 is below every size asked for (24)" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["bench", "--sizes", "16", "--graph-max-size", "-1", *tiny]) == 2
    assert "must be an integer >= 0 (0: none), got -1" in capsys.readouterr().err
    assert main(["bench", "--sizes", "8", "16", "--reference-max-size", "8", *ref]) == 0
    out = capsys.readouterr().out
    assert "\nreference  float32       8 " in out and "reference  float32      16" not in out
    assert "# reference not timed at 16: above --reference-max-size 8" in out


def test_without_float32_no_row_claims_a_deviation_from_float32():
    """`loftup bench --dtypes bfloat16` measured each deviation from our bfloat16 output and
    labelled it "vs float32": ours read 0.0 and the paper's float32 code 3.5e-2 (its distance
    from bfloat16). With no float32 output there is no such figure: none is given, the table
    says why, and the summary prints none rather than "not finite" (a broken output's mark)."""
    from loftup.bench.forward import bench_forward, format_table
    from loftup.bench.suite import summary

    reference = load_reference_class(STANDIN)
    report = bench_forward(
        (16,), dim=32, grid=4, dtypes=("bfloat16",), repeats=1, warmup=0, peak=False,
        reference=reference, progress=False,
    )  # fmt: skip
    assert {(r["method"], r["dtype"]) for r in report["results"]} >= {
        ("loftup", "bfloat16"),
        ("reference", "float32"),
    }
    assert not any("max_abs_dev_vs_float32" in r for r in report["results"])
    assert "max dev: from our float32 output, not timed here" in format_table(report)
    suite = {"suite": "cpu", "machine": report["machine"], "sections": {"forward": report}}
    (line,) = [ln for ln in summary(suite).splitlines() if " bfloat16 loftup " in ln]
    assert "dev -," in line and "not finite" not in line


def test_the_readme_s_cpu_figures_are_those_of_the_report_it_cites():
    """The README's CPU table and bullets cite the quiet suite's report; its 896 peak (1.38 GB)
    was an earlier run's, the report's reads 1.47 GB, the suite took 8 minutes there, not 15,
    and the matrix-product peak it measured was 195 GFLOP/s, not 180-183. Each figure is read
    off the report."""
    text = (REPO / "README.md").read_text()
    name = "cpu-suite-amd-epyc-2026-11-26-quiet.json"
    assert f"`benchmarks/results/{name}`" in text
    report = json.loads((REPO / "benchmarks" / "results" / name).read_text())
    sec = report["sections"]
    rows = {(r["method"], r["dtype"], r["size"]): r for r in sec["forward"]["results"]}

    def best(method, dtype, size):
        return rows[(method, dtype, size)]["best_s"]

    ref, ours = best("reference", "float32", 224), best("loftup", "float32", 224)
    bf16 = best("loftup", "bfloat16", 224)
    big = rows[("loftup", "float32", 896)]
    ours32_rate = rows[("loftup", "float32", 224)]["gflops_per_s"]
    mp = {r["size"]: r for r in sec["megapixels"]}
    said = [
        f"| 224 | {ref:.2f} s | **{ours:.2f} s ({ours / ref:.2f}x)**",
        f"{bf16:.2f} s ({bf16 / ref:.2f}x of the paper's float32)",
        f"bf16 takes {bf16 / ref:.2f}x of the paper's float32 time",
        f"| 896 | (88 s, 11.6 GB in the anchors) | {big['best_s']:.1f} s |",
        f"896: peak {big['peak_memory_bytes'] / 1e9:.2f} GB of which "
        f"{big['output_bytes'] / 1e9:.2f} GB is the output",
        f"{mp[224]['s_per_megapixel']:.1f} s/MP at 224 and "
        f"{mp[1024]['s_per_megapixel']:.1f} s/MP at 1024",
        f"{ours32_rate:.0f} GFLOP/s counted as direct arithmetic "
        f"({rows[('loftup', 'float32', 224)]['gflop']:.1f} GFLOP)",  # it said 406.7
        # the peak it beats is the one the same run measured (it said about 180-183)
        f"peak measured in the same run ({sec['forward']['peak_gflops_per_s']['float32']:.0f} "
        "GFLOP/s)",
        f"{sec['batches'][0]['images_per_s']:.2f} images/s at batch 1",
        f"{sec['video']['frames_per_s']:.2f} frames/s for 16 frames",
        f"{sec['compile']['compile_s']:.1f} s to compile (warm cache), then "
        f"{sec['compile']['speedup']:.2f}x the speed",
        # the suite's own length (it said 15 minutes; its sections took 469 s)
        f"about {round(sum(sec['_seconds'].values()) / 60)} minutes on a quiet machine",
    ]
    flat = " ".join(text.split())
    assert [s for s in said if " ".join(s.split()) not in flat] == []


def test_a_reference_under_the_home_folder_is_found_with_a_tilde(tmp_path, monkeypatch):
    """`--reference=~/ref.py` (the shell leaves that ~ alone) said "no such file" for a file
    that was there: ~ is the home folder here too, as in every path loftup takes."""
    (tmp_path / "ref.py").write_text(STANDIN.read_text())
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_reference_class("~/ref.py").__name__ == "ReferenceLoftUp"


def test_tf32_without_float32_is_refused_not_left_out(capsys):
    """`loftup bench --dtypes bfloat16 --tf32` timed no TF32 row and said nothing (the rows
    sit beside float32's): refused in one line, before anything is timed."""
    assert main([*TINY_BENCH, "--dtypes", "bfloat16", "--tf32"]) == 2
    err = capsys.readouterr().err
    assert "(--dtypes) bfloat16 has no float32: add float32 to dtypes (--dtypes)" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("precision", [{"dtypes": ("bfloat16",)}, {"dtype": torch.bfloat16}])
def test_tf32_rows_without_float32_are_refused_by_the_library_too(precision):
    """``bench_forward(dtypes=("bfloat16",), tf32_rows=True)`` timed bfloat16 alone and
    returned ``tf32_rows: False``, the rows asked for dropped unsaid (the CLI refused
    ``--tf32`` so, the function did not): one UsageError, the same check as the CLI's."""
    from loftup.bench import bench_forward
    from loftup.errors import UsageError

    with pytest.raises(UsageError, match=r"^tf32_rows \(--tf32\) .* has no float32: add") as e:
        bench_forward((16,), dim=32, grid=4, repeats=1, warmup=0, peak=False, progress=False,
                      tf32_rows=True, **precision)  # fmt: skip
    assert "\n" not in str(e.value)
