"""benchmarks/gpu.sh's own logic, as on a GPU (suite ``gpu``, the tests run), in seconds: its
`loftup bench` processes and pytest are stand-ins that write a stored H200 run's sections (with
the failures a test puts in) and a count line; the merge, the targets and the shell are real."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

from processes import REPO

RESULTS = REPO / "benchmarks" / "results"
LAUNCH = "AcceleratorError: CUDA error: unspecified launch failure"

FAKE = r"""
import json, os, sys
args = sys.argv[1:]
if args[:2] == ["-m", "pytest"]:
    if "--help" in args:  # pytest-timeout's options, as the lent machines' image lists them
        print("  --timeout=TIMEOUT  per test\n  --session-timeout=SECONDS  whole session")
        sys.exit(0)
    with open(os.environ["FAKE_PYTEST_ARGS"], "w") as f:
        json.dump(args, f)
    print(os.environ.get("FAKE_PYTEST_SAYS", "...  [100%]\n3 passed in 1.00s"))
    sys.exit(int(os.environ.get("FAKE_PYTEST_EXIT", "0")))
only, out = args[args.index("--only") + 1], args[args.index("--json") + 1]
with open(os.environ["FAKE_SECTIONS"]) as f:
    stored = json.load(f)
machine = {"device": "cuda", "gpu": "NVIDIA H200", "date": "2026-11-27T00:00:00"}
sections = {k: stored[k] for k in only.split(",") if k in stored}
with open(out, "w") as f:
    json.dump({"suite": "gpu", "machine": machine, "settings": {}, "sections": sections}, f)
sys.exit(json.loads(os.environ.get("FAKE_EXIT", "{}")).get(only, 0))
"""


def stored_sections() -> dict:
    """The last H200 call's sections, with the ablation its budget left to a call of its own."""
    report = json.loads((RESULTS / "gpu-nvidia-h200-2026-11-27.json").read_text())
    ablation = json.loads((RESULTS / "gpu-ablation-nvidia-h200-2026-11-27.json").read_text())
    sections = {**report["sections"], "ablation": ablation["sections"]["ablation"]}
    return copy.deepcopy({k: v for k, v in sections.items() if k != "_seconds"})


def run_gpu_sh(tmp_path, sections: dict, exits=None, **env) -> tuple:
    """gpu.sh with the stand-ins; its report, stdout, its log and the fake nvidia-smi's calls."""
    fake = tmp_path / "fake.py"
    fake.write_text(FAKE)
    wrapper, smi = tmp_path / "python", tmp_path / "bin" / "nvidia-smi"
    # its check of each part (python -c) must not import torch: 2 s of the GPU budget a group
    no_torch = tmp_path / "no_torch" / "torch"
    no_torch.mkdir(parents=True)
    (no_torch / "__init__.py").write_text("raise ImportError('gpu.sh checked a part with torch')")
    # its merge (python -) draws the figure without matplotlib: "not drawn", which it may be (a
    # second a call; test_bench_gpu_sh.py's smoke run draws one)
    no_plots = tmp_path / "no_plots" / "matplotlib"
    no_plots.mkdir(parents=True)
    (no_plots / "__init__.py").write_text("raise ImportError('no figure in these tests')")
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" -m loftup "*|*" -m pytest "*) exec "{sys.executable}" {fake} "$@";; '
        f'" -c "*) export PYTHONPATH="{no_torch.parent}:$PYTHONPATH";; '
        f'" - "*) export PYTHONPATH="{no_plots.parent}:$PYTHONPATH";; '
        f'esac\nexec "{sys.executable}" "$@"\n'
    )
    smi.parent.mkdir()
    smi.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "smi.calls"}\n')
    for f in (wrapper, smi):
        f.chmod(0o755)
    (tmp_path / "sections.json").write_text(json.dumps(sections))
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "PYTHON": str(wrapper),
        "PATH": f"{smi.parent}:{os.environ['PATH']}",
        "FAKE_SECTIONS": str(tmp_path / "sections.json"),
        "FAKE_EXIT": json.dumps(exits or {}),
        "FAKE_PYTEST_ARGS": str(tmp_path / "pytest.args"),
        **env,
    }
    env.pop("LOFTUP_SMOKE", None)
    cmd = ["bash", str(REPO / "benchmarks" / "gpu.sh")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (path,) = out.glob("gpu-nvidia-h200-*.json")
    calls = tmp_path / "smi.calls"
    log = (out / "gpu-bench.log").read_text()
    return (
        json.loads(path.read_text()),
        done.stdout,
        log,
        calls.read_text() if calls.exists() else "",
    )


def target(report: dict, starts: str) -> dict:
    (row,) = [r for r in report["targets"] if r["target"].startswith(starts)]
    return row


def test_a_launch_failure_caught_inside_a_section_is_named_and_the_card_reported(tmp_path):
    """attempt() catches every exception, a launch failure too, into the section's `failed`
    list; the ablation's compilation into a row with an `error`. The section had no top-level
    error: gpu.sh named nothing, never logged the card's ECC/Xid reports, and the time target
    and the ablation's read "met"."""
    sections = stored_sections()
    sections["backbones"]["failed"] = [
        {"method": "vitb14", "dtype": "float16", "size": 448, "error": LAUNCH}
    ]
    sections["ablation"] = [r for r in sections["ablation"] if r["variant"] != "compiled"]
    sections["ablation"].append({"size": 224, "variant": "compiled", "error": LAUNCH})
    report, stdout, log, smi = run_gpu_sh(tmp_path, sections)
    assert report["gpu_sh_cut"] == {"backbones": "cases-failed-1", "ablation": "cases-failed-1"}
    assert "gpu.sh: section backbones failed (cases-failed-1;" in log
    assert "gpu.sh: section ablation failed (cases-failed-1;" in log
    assert smi.count("-q -d ECC,ROW_REMAPPER,PAGE_RETIREMENT") == 1  # the second group's
    row = target(report, "benchmarks/gpu.sh")
    assert row["met"] is False and "backbones (cases-failed-1)" in row["measured"]
    ablation = target(report, "ablation")
    assert ablation["met"] is None and "failed: compiled at 224" in ablation["measured"]


def test_the_targets_name_a_section_that_lost_cases_even_where_gpu_sh_did_not():
    """A report whose cut list does not name them (merged by hand, say): the time target still
    says which sections lost cases or rows, and is not met."""
    from loftup.bench.gpu_sh import failures
    from loftup.bench.targets import targets

    sections = stored_sections()
    report = json.loads((RESULTS / "gpu-nvidia-h200-2026-11-27.json").read_text())
    report = {**report, "gpu_sh_cut": {}, "gpu_sh_seconds": {"tests": 100, "total": 300}}
    whole = {**report, "sections": sections}
    assert failures(sections) == {}
    assert target({"targets": targets(whole)}, "benchmarks/gpu.sh")["met"] is True
    sections["forward"]["failed"] = [
        {"method": "loftup", "dtype": "float16", "size": 2048, "error": LAUNCH}
    ]
    sections["backbones"]["results"][0]["errors"] = {"graph": LAUNCH}
    assert failures(sections) == {"forward": "cases-failed-1", "backbones": "cases-failed-1"}
    row = target({"targets": targets({**report, "sections": sections})}, "benchmarks/gpu.sh")
    assert row["met"] is False and row["measured"].endswith("sections failed: forward, backbones")


def test_the_tests_run_to_their_own_deadline_and_the_call_is_judged_against_six_minutes(tmp_path):
    """The time target judges the whole call, the tests included, against 360 s. The tests once
    ran to a deadline at the figures' budget: on the 2026-11-28 H200 run (figures 240 s, tests
    109 s, 353 s in all) that would have stopped their session at 59 s, a second failure where
    the call fitted. They get what the figures left of their own deadline
    (LOFTUP_GPU_SH_TESTS_UNTIL, default 420 s), less the merge's reserve, at most 240 s; the
    session stops 40 s before that (a test may take its 30 s past the check, and pytest then
    writes its count line)."""
    from loftup.bench.targets import targets

    (tmp_path / "default").mkdir()
    _, _, log, _ = run_gpu_sh(tmp_path / "default", stored_sections(), LOFTUP_GPU_SH_BUDGET="200")
    assert "gpu.sh: the tests get 240 s (pytest: --timeout 30 --session-timeout 200)" in log
    report, stdout, log, _ = run_gpu_sh(
        tmp_path, stored_sections(), LOFTUP_GPU_SH_BUDGET="200", LOFTUP_GPU_SH_TESTS_UNTIL="200"
    )
    args = json.loads((tmp_path / "pytest.args").read_text())
    session = int(args[args.index("--session-timeout") + 1])
    assert session <= 200 - 16 - 40 and args[args.index("--timeout") + 1] == "30"
    # what the figures left: 10 s for the merge, 6 for timeout's -k, 40 of margin (a second of
    # slack for the shell's whole seconds)
    figures = report["gpu_sh_seconds"]["figures"]
    assert 200 - 16 - figures - 1 - 40 <= session <= 200 - 16 - figures - 40
    assert f"gpu.sh: the tests get {session + 40} s (pytest: --timeout 30 " in log
    assert report["gpu_sh_tests"]["summary"] == "3 passed in 1.00s"
    row = target(report, "benchmarks/gpu.sh")
    assert f"(figures {figures} s, tests " in row["measured"]
    assert report["gpu_sh_seconds"]["total"] < 200 - 5
    # tests stopped by their session timeout did not all run: the call is not whole
    stopped = {**report["gpu_sh_tests"], "stopped": "session-timeout: 104.0 sec exceeded"}
    assert row["met"] is True  # every section, whole, in time (the stand-ins are fast)
    row = target({"targets": targets({**report, "gpu_sh_tests": stopped})}, "benchmarks/gpu.sh")
    assert row["met"] is False and row["measured"].endswith("stopped halfway: tests")


def test_a_group_stopped_by_its_time_logs_the_card_s_reports(tmp_path):
    """A GPU hang (Xid 8 or 109) shows up as a group stopped by its timeout (124, or 137 after
    timeout's -k): the card's ECC/Xid block was skipped for exactly those."""
    last = "batches,video,backbones,ablation,extraction"
    report, _, log, smi = run_gpu_sh(tmp_path, stored_sections(), exits={last: 124})
    assert report["gpu_sh_cut"][last].startswith("stopped-after-")
    assert "gpu.sh: stopped batches,video" in log
    assert smi.count("-q -d ECC,ROW_REMAPPER,PAGE_RETIREMENT") == 1


def test_a_pytest_that_never_ran_is_not_reported_as_killed_by_its_timeout():
    """With pytest missing, the log holds "No module named pytest" and no count line: the
    target said "killed by its timeout?", sending the reader after the wrong cause."""
    from loftup.bench.suite import pytest_outcome
    from loftup.bench.targets import targets

    missing = subprocess.run(
        [sys.executable, "-m", "no_such_pytest_here", "-q"], capture_output=True, text=True
    )
    cases = {
        "missing": missing.stdout + missing.stderr,
        "killed": "..s..                                             [ 40%]\n....",
    }
    said = {}
    for name, log in cases.items():
        report = {"gpu_sh_tests": pytest_outcome(log), "machine": {"device": "cuda"}}
        row = target({"targets": targets(report)}, "CUDA and kernel tests")
        said[name] = (row["met"], row["measured"])
    assert said["missing"] == (
        False,
        f"pytest ran no test; its log ends: {sys.executable}: No module named no_such_pytest_here",
    )
    assert said["killed"] == (False, "no count line (killed by its timeout?)")


def test_a_pytest_that_never_ran_is_not_run_in_the_script_s_row_not_stopped_halfway():
    """The script's row said "stopped halfway: tests" of tests pytest never started (pytest
    missing), while the tests' row said "pytest ran no test"."""
    from loftup.bench.targets import targets

    never = {"summary": None, "progress": False, "last_line": "No module named pytest"}
    killed = {"summary": None, "progress": True, "last_line": "...."}
    said = {}
    for name, tests in (("never", never), ("killed", killed)):
        report = {
            "sections": stored_sections(),
            "machine": {"device": "cuda"},
            "gpu_sh_tests": tests,
            "gpu_sh_seconds": {"figures": 200, "tests": 3, "total": 210},
        }
        said[name] = target({"targets": targets(report)}, "benchmarks/gpu.sh")
    assert said["never"] == {
        "target": said["never"]["target"],
        "measured": "210 s (figures 200 s, tests 3 s); not run: tests",
        "met": False,
    }
    assert said["killed"]["measured"].endswith("; stopped halfway: tests")
    assert said["killed"]["met"] is False


def test_backbones_stopped_halfway_list_the_cases_they_never_reached():
    """Stopped after 2 of its 8 rows, the backbones section gave two targets (vits14 float32)
    and silently dropped the other six, vitb14 and float16 among them: each is now a row, not
    measured, saying why."""
    from loftup.bench.targets import targets

    report = json.loads((RESULTS / "gpu-nvidia-h200-2026-11-27.json").read_text())
    rows = report["sections"]["backbones"]["results"]
    assert len(rows) == 8
    failed = [{"method": "vits14", "dtype": "float16", "size": 224, "error": "OutOfMemoryError"}]
    stopped = {"results": rows[:2], "failed": failed, "incomplete": "stopped before its end"}
    got = targets({**report, "sections": {**report["sections"], "backbones": stopped}})
    e2e = {r["target"].split(":")[0]: r for r in got if "+ LoftUp <=" in r["target"]}
    assert sorted(e2e) == sorted(
        f"{a} {d} {s}"
        for a in ("vits14", "vitb14")
        for d in ("float32", "float16")
        for s in (224, 448)
    )
    assert [r["met"] for r in e2e.values()].count(None) == 6
    assert e2e["vitb14 float16 448"]["measured"] == "not measured: stopped before its end"
    assert e2e["vits14 float16 224"]["measured"] == "failed: OutOfMemoryError"
    assert e2e["vits14 float32 448"]["measured"] == "5.63x (loftup_graph_stream)"
    # run whole, no row is added
    whole = [r for r in targets(report) if "+ LoftUp <=" in r["target"]]
    assert len(whole) == 8 and all(r["met"] is not None for r in whole)
