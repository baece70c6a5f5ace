"""gpu.sh's suite on a time budget: a report kept within it and judged by its own wall time,
parts of one run merged (never an earlier run's), and the CUDA tests' verdicts kept."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from processes import REPO


def _python_running_fewer(folder, fewer: str, case: str = "") -> str:
    """A Python for gpu.sh (its PYTHON) whose ``loftup bench`` runs only the sections
    ``fewer`` of each group it is given (``--only`` rewritten): gpu.sh's budgets, cuts and merge
    are what these tests look at, the sections' own toy runs (every one of them, tens of
    seconds) are test_smoke_suite_runs_every_section's. ``case``: shell case branches put
    before the rewriting (to end a group's process, say)."""
    wrapper = folder / "python"
    wrapper.write_text(
        f'#!/bin/sh\ncase " $* " in {case} esac\n'
        "only=\n"
        'for a; do shift; [ -n "$only" ] && a=' + fewer + '; only=; [ "$a" = --only ] && only=1\n'
        '  set -- "$@" "$a"; done\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def _gpu_sh(out, budget, last_until=None, timeout=300, python=sys.executable):
    env = {**os.environ, "OUT": str(out), "PYTHON": python, "LOFTUP_SMOKE": "1"}
    env["LOFTUP_GPU_SH_BUDGET"] = str(budget)
    if last_until is not None:
        env["LOFTUP_GPU_SH_LAST_UNTIL"] = str(last_until)
    cmd = ["bash", str(REPO / "benchmarks" / "gpu.sh")]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_gpu_sh_keeps_its_report_within_its_time_budget(tmp_path):
    """Device time is scarce: groups that do not fit their budget are not started, and the
    report of the ones that ran is still merged, saying which were cut (an earlier deadline
    for the last group shows it without a run that takes minutes); by default the whole call
    keeps inside the issue's 6 minutes."""
    from loftup.bench.suite import SECTIONS

    # its groups hold every section of the suite once, in the suite's order
    script = (REPO / "benchmarks" / "gpu.sh").read_text()
    groups = re.search(r"^groups=\((.*)\)$", script, re.M).group(1)
    assert ",".join(re.findall(r'"([^"]+)"', groups)).split(",") == list(SECTIONS["gpu"])
    (tmp_path / "gpu-tests.log").write_text("26 passed in 91.0s\n")  # an earlier run's
    assert (
        re.search(r'^budget="\$\{LOFTUP_GPU_SH_BUDGET:-(\d+)\}"$', script, re.M).group(1) == "355"
    )
    # a group starts while 30 s are left beyond the 10 s reserve: the last one, with a deadline
    # of 40 s, never; the one before it runs (two of its sections, the forward table among
    # them; a budget of 1800 s so that a loaded CI machine, minutes slower, does not cut it)
    python = _python_running_fewer(tmp_path, "parity,forward")
    done = _gpu_sh(tmp_path, 1800, last_until=40, timeout=1800, python=python)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (path,) = tmp_path.glob("smoke-*.json")
    report = json.loads(path.read_text())
    ran = [k for k in report["sections"] if k != "_seconds"]
    last = groups.split()[-1].strip('"').split(",")
    assert last[-2:] == ["ablation", "extraction"]  # the two that decide no target end it
    assert ran == ["parity", "forward"] and not set(ran) & set(last)
    # its forward table drawn beside it (where matplotlib is), the parts' figures of this run
    assert path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG" and "figure: " in done.stdout
    assert report["gpu_sh_cut"] == {",".join(last): "not-started"}
    assert "of its 40 s budget left" in done.stdout
    assert "cut by the budget" in done.stdout and "the GPU issue's targets" in done.stdout
    # its own time is in the report and judged (not on a GPU: not measured)
    assert 0 < report["gpu_sh_seconds"]["total"] < 1800
    (row,) = [r for r in report["targets"] if r["target"].startswith("benchmarks/gpu.sh")]
    assert "extraction (not-started)" in row["measured"] and row["met"] is None
    assert "gpu_sh_tests" not in report and "tests: not run" in done.stdout  # no stale log
    assert "tests" not in report["gpu_sh_seconds"] and "(tests" not in row["measured"]
    # no time at all: nothing is written, and it says why
    empty = tmp_path / "none"
    done = _gpu_sh(empty, 0)
    assert done.returncode == 1
    assert "no section finished within the 0 s budget (LOFTUP_GPU_SH_BUDGET)" in done.stderr
    assert not list(empty.glob("*.json"))


def test_gpu_sh_never_merges_an_earlier_run_s_parts(tmp_path):
    """OUT may be a folder an earlier run wrote into: a group whose process dies before its
    first section (a poisoned CUDA context, an out-of-memory kill at start) must not have that
    run's part-N.json merged in its place, as if measured now; the report names each group
    that failed, with its exit status, and keeps what the others measured."""
    stale = {
        "suite": "smoke",
        "machine": {"date": "2020-01-01T00:00:00", "device": "cpu", "processor": "earlier"},
        "settings": {},
        "sections": {"parity": {"size": 32}, "_seconds": {"parity": 1.0}},
    }
    for i in range(4):
        (tmp_path / f"part-{i}.json").write_text(json.dumps(stale))
    # every `loftup bench` process dies at once; the rest of the script runs on Python itself
    wrapper = tmp_path / "python"
    wrapper.write_text(
        f'#!/bin/sh\ncase " $* " in *" bench "*) exit 1;; esac\nexec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": str(wrapper), "LOFTUP_SMOKE": "1"}
    cmd = ["bash", str(REPO / "benchmarks" / "gpu.sh")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no section finished" in done.stderr
    assert not list(tmp_path.glob("smoke-*.json"))
    # the group before the last dies with status 3; the last (it ends with the extraction)
    # writes its part, of one section (a stand-in: a real group's run is the budget test's)
    now = {**stale, "machine": {"date": "2026-11-28T00:00:00", "device": "cpu", "processor": "now"}}
    now["sections"] = {"batches": {"size": 32}, "_seconds": {"batches": 1.0}}
    (tmp_path / "part.py").write_text(
        "import json, sys\n"
        "with open(sys.argv[sys.argv.index('--json') + 1], 'w') as f:\n"
        f"    f.write({json.dumps(now)!r})\n"
    )
    wrapper.write_text(
        f'#!/bin/sh\ncase " $* " in *" bench "*",extraction "*) exec "{sys.executable}" '
        f'{tmp_path / "part.py"} "$@";; *" bench "*) exit 3;; esac\nexec "{sys.executable}" "$@"\n'
    )
    for i in range(4):
        (tmp_path / f"part-{i}.json").write_text(json.dumps(stale))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (path,) = tmp_path.glob("smoke-*.json")
    report = json.loads(path.read_text())
    ran = [k for k in report["sections"] if k != "_seconds"]
    assert ran == ["batches"]
    assert set(report["gpu_sh_cut"].values()) == {"failed-exit-3"}
    assert len(report["gpu_sh_cut"]) == 1 and not set(ran) & set(report["gpu_sh_cut"])
    assert "failed (exit 3)" in done.stdout and "cut by the budget or failed" in done.stdout


def test_suite_sections_can_run_in_parts_and_be_merged():
    """benchmarks/gpu.sh runs groups of sections in separate processes and merges them."""
    from loftup.bench.suite import SECTIONS, merge_reports, run_suite

    quiet = {"log": lambda *a: None}
    a = run_suite("smoke", only=["parity"], **quiet)
    b = run_suite("smoke", only=["capped_stream"], **quiet)
    assert set(a["sections"]) == {"parity", "_seconds"}
    merged = merge_reports([a, b])
    assert set(merged["sections"]) == {"parity", "capped_stream", "_seconds"}
    assert set(merged["sections"]["_seconds"]) == {"parity", "capped_stream"}
    # the machine as the first part had it, but for the load average at the end: the last's
    end = "load_average_end"
    assert merged["machine"] == {**a["machine"], end: b["machine"][end]}
    assert len(merged["parts"]) == 2
    # the targets are read again off the merged sections (each part alone lacks the other's)
    met = {r["target"]: r["met"] for r in merged["targets"]}
    assert met["float32 (TF32 off) within 1e-4 of the CPU"] is None  # CPU against CPU: no
    assert met["4096 x 4096 x 384 < 2 s, < 4 GB beyond the output"] is None
    with pytest.raises(ValueError, match="no section 'paritee'; its sections: parity"):
        run_suite("smoke", only=["paritee"], **quiet)
    if not torch.cuda.is_available():  # the full GPU suite is not started on a CPU
        with pytest.raises(ValueError, match="would run on cpu; here use --suite smoke"):
            run_suite("gpu", only=["parity"], **quiet)
    assert SECTIONS["smoke"] == SECTIONS["gpu"]


def test_merged_parts_do_not_report_the_first_part_s_machine_for_all():
    """Each part of gpu.sh is a process of its own: the kernels' self-tests it ran, its flags.
    The merged report keeps every precision any part tested, and a field on which the parts
    disagree as one value a part, named, not the first part's value as the whole run's."""
    from loftup.bench.suite import merge_reports

    stored = REPO / "benchmarks" / "results" / "gpu-nvidia-h200-2026-11-26-v3.json"
    machine = {**json.loads(stored.read_text())["machine"], "cudnn_benchmark": False}

    def part(section, date, **changes):
        m = {**machine, "date": date, **changes}
        return {"suite": "gpu", "machine": m, "settings": {}, "sections": {section: {}}}

    a = part("parity", "2026-11-26T09:55:10", triton_kernels={"float16": True})
    b = part("forward", "2026-11-26T09:56:25", triton_kernels={"bfloat16": True})
    merged = merge_reports([a, b, part("ablation", "2026-11-26T09:57:07", triton_kernels={})])
    assert merged["machine"]["triton_kernels"] == {"float16": True, "bfloat16": True}
    assert (
        merged["machine"]["date"] == "2026-11-26T09:55:10"
        and "differs_by_part" not in merged["machine"]
    )
    # a precision that passed in one process and failed in another, and a flag set apart
    c = part("backbones", "2026-11-26T09:57:18", triton_kernels={"float16": False})
    d = part("video", "2026-11-26T09:57:59", cudnn_benchmark=True, triton_kernels={})
    got = merge_reports([a, c, d])["machine"]
    assert got["triton_kernels"] == [{"float16": True}, {"float16": False}, {}]
    assert got["cudnn_benchmark"] == [False, False, True]
    assert got["differs_by_part"] == ["cudnn_benchmark", "triton_kernels"]


def test_gpu_sh_is_judged_by_its_own_wall_time_and_its_cuts():
    """The issue's last target: one call of benchmarks/gpu.sh takes every figure in < 6 min."""
    from loftup.bench.targets import targets

    results = REPO / "benchmarks" / "results"
    report = json.loads((results / "gpu-nvidia-h200-2026-11-26-v3.json").read_text())

    def row(**changes):
        rows = targets({**report, **changes})
        (r,) = [r for r in rows if r["target"].startswith("benchmarks/gpu.sh")]
        return r["met"], r["measured"]

    # the stored run came before the extraction loop was a section: a figure it did not take
    assert row() == (False, "297 s (tests 100 s); not run: extraction")
    sections = {**report["sections"], "extraction": {"images_per_s": {}}}
    report = {**report, "sections": sections}
    assert row() == (True, "297 s (tests 100 s)")  # every section, in time
    assert row(gpu_sh_seconds={"tests": 150, "total": 361})[0] is False
    met, measured = row(gpu_sh_cut={"ablation": "stopped-after-31s"})
    assert met is False and measured.endswith(
        "cut by its budget or failed: ablation (stopped-after-31s)"
    )
    assert row(gpu_sh_seconds=None) == (None, "-")  # `loftup bench --suite gpu` alone
    # a section that raised was caught by the suite, its process exiting 0 (nothing cut): the
    # call still did not take that figure
    launch = {"error": "RuntimeError: CUDA error: unspecified launch failure", "traceback": ""}
    met, measured = row(sections={**sections, "ablation": launch, "extraction": launch})
    assert met is False and measured.endswith("sections failed: ablation, extraction")
    # stopped halfway, its finished rows saved, or missing from the report
    half = {"results": sections["ablation"], "incomplete": "stopped after 224"}
    assert row(sections={**sections, "ablation": half}) == (
        False,
        "297 s (tests 100 s); stopped halfway: ablation",
    )
    gone = {k: v for k, v in sections.items() if k != "backbones"}
    assert row(sections=gone) == (False, "297 s (tests 100 s); not run: backbones")


def test_gpu_sh_keeps_what_the_cuda_tests_said(tmp_path):
    """gpu.sh stores the tests' outcome in the report (its log is not kept): read here off a
    real pytest run of the same options, with a pass, a slow pass and a skip with a reason."""
    from loftup.bench.suite import pytest_outcome

    (tmp_path / "test_gpuish.py").write_text(
        "import time, pytest\n"
        "def test_slow():\n    time.sleep(0.3)\n"
        "def test_fast():\n    pass\n"
        "@pytest.mark.skip(reason='no CUDA GPU here')\n"
        "def test_cuda():\n    pass\n"
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "--durations=15", "-p", "no:cacheprovider"]
    done = subprocess.run([*cmd, "test_gpuish.py"], cwd=tmp_path, capture_output=True, text=True)
    got = pytest_outcome(done.stdout)
    assert got["summary"].startswith("2 passed, 1 skipped in ")
    assert got["skipped"] == ["SKIPPED [1] test_gpuish.py:6: no CUDA GPU here"]
    # the fast test's lines are listed too where a loaded machine spends >= 5 ms on them
    assert got["slowest"] and all("test_gpuish.py::test_" in ln for ln in got["slowest"])
    # its call's line (a loaded machine may also list its set-up or teardown, >= 5 ms)
    (slow,) = [ln for ln in got["slowest"] if ln.endswith("call     test_gpuish.py::test_slow")]
    assert float(slow.split("s")[0]) >= 0.3
    # a run killed by its timeout has no count line
    killed = pytest_outcome(done.stdout.split("= slowest")[0])
    assert killed["summary"] is None
    # and the targets judge them
    from loftup.bench.targets import targets

    def judged(outcome):
        (r,) = [
            r
            for r in targets({"gpu_sh_tests": outcome, "machine": {"device": "cuda"}})
            if r["target"].startswith("CUDA")
        ]
        return r["met"], r["measured"]

    assert judged(got) == (True, got["summary"])
    assert judged({**got, "summary": "1 failed, 25 passed in 90.1s"})[0] is False
    assert judged({**got, "summary": "25 passed, 1 error in 90.1s"})[0] is False
    # every test skipped (no GPU seen, Triton missing) ran nothing: not a pass
    assert judged({**got, "summary": "45 skipped in 3.1s"}) == (
        None,
        "45 skipped in 3.1s: none passed",
    )
    assert judged(killed) == (False, "no count line (killed by its timeout?)")
    # gpu.sh runs them last, with pytest-timeout's --session-timeout where it is: it stops
    # between tests, and the count line holds only those that ran (as pytest-timeout 2.4.0
    # printed it here)
    log = "\n".join(done.stdout.splitlines()[:-1])
    log += (
        "\n!!!!!!!!!!!!!! session-timeout: 110.0 sec exceeded !!!!!!!!!!!!!!\n2 passed in 111.52s\n"
    )
    stopped = pytest_outcome(log)
    assert stopped["stopped"] == "session-timeout: 110.0 sec exceeded" and "stopped" not in got
    assert judged(stopped) == (
        False,
        "2 passed in 111.52s; stopped: session-timeout: 110.0 sec exceeded",
    )
    assert judged(None) == (None, "-")
