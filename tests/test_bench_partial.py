"""A GPU section's rows survive a stop halfway (gpu.sh's time budget), and the ablation checks
each variant's output, torch.compile's included, against the default's."""

from __future__ import annotations

import copy

import pytest
import torch

from loftup import LoftUp


class Stopped(BaseException):
    """What a time limit's signal does to a section: not an error the suite catches."""


def test_a_long_section_s_rows_are_saved_as_they_come():
    """The backbones section (53 s on an H200) was saved only when it ended: a process stopped
    by gpu.sh's budget inside it lost every row. Each row is now saved as it comes, marked
    incomplete until the section ends."""
    from loftup.bench.suite import run_suite

    seen = []

    def on_section(report):
        seen.append(copy.deepcopy(report["sections"].get("backbones")))
        if len(seen) == 2:
            raise Stopped

    with pytest.raises(Stopped):
        run_suite("smoke", only=["backbones"], on_section=on_section, log=lambda *a: None)
    first, second = seen
    assert [len(s["results"]) for s in seen] == [1, 2]
    assert second["incomplete"] == "stopped before its end" and second["failed"] == []
    assert {r["backbone"] for r in second["results"]} == {"tiny"}
    from loftup.bench.suite import summary

    report = {"suite": "smoke", "machine": {"processor": "x"}, "sections": {"backbones": second}}
    assert "  backbones: stopped before its end (the rows it finished are kept)" in summary(report)
    # run to its end, it is whole, with no mark
    seen.clear()
    report = run_suite("smoke", only=["ablation"], on_section=seen.append, log=lambda *a: None)
    assert "incomplete" not in report["sections"]["ablation"]
    assert isinstance(report["sections"]["ablation"], list)


def test_the_ablation_checks_each_variant_against_the_default(monkeypatch):
    """torch.compile's output was timed and never compared on the GPU: each row now keeps its
    largest deviation from the default, and the compiled variant runs after every size's
    eager rows (a compilation takes 20 s on a fresh machine: a stop there keeps them)."""
    import loftup.compiled
    from loftup.bench.gpu import kernel_ablation

    def off_by_a_quarter(model, **kwargs):
        return lambda lr, image: model(lr, image) + 0.25

    monkeypatch.setattr(loftup.compiled, "compile_upsampler", off_by_a_quarter)
    torch.manual_seed(0)
    model = LoftUp(dim=32).eval()
    saved = []
    rows = kernel_ablation(
        model,
        (16, 24),
        dtype=torch.float32,
        grid=4,
        device="cpu",
        repeats=1,
        compile_sizes=(16,),
        on_rows=lambda rows: saved.append([r["variant"] for r in rows]),
    )
    assert [len(s) for s in saved] == [6, 12, 13] and saved[-1][-1] == "compiled"
    dev = {(r["size"], r["variant"]): r["max_abs_dev"] for r in rows}
    assert dev[(16, "default")] == 0.0 and dev[(24, "default")] == 0.0
    assert dev[(16, "compiled")] == pytest.approx(0.25, abs=1e-5)
    eager = [v for (size, name), v in dev.items() if name not in ("default", "compiled")]
    assert len(eager) == 10 and max(eager) < 1e-4  # the same function, computed otherwise
    (compiled,) = [r for r in rows if r["variant"] == "compiled"]
    assert compiled["relative_to_default"] > 0 and compiled["size"] == 16


# 10 s: slow; a failed section named, the card's reports logged, in the default suite:
# test_gpu_sh.py::test_a_launch_failure_caught_inside_a_section_is_named_and_the_card_reported
@pytest.mark.slow
def test_gpu_sh_names_a_section_that_raised_and_logs_the_card(tmp_path):
    """A section that raises is caught by the suite, whose process exits 0: gpu.sh saw nothing,
    its card diagnostics never ran and the time target read "met". It now names the section in
    the report's cut list and logs the card's ECC/Xid reports. Also: a relative OUT is the
    caller's folder (not the repository's), and an earlier run's log is not appended to."""
    import json
    import os
    import subprocess
    import sys

    from processes import REPO

    (tmp_path / "boom.py").write_text(
        "import runpy, sys\n"
        "import loftup.bench.gpu as g\n"
        "def boom(*a, **k):\n"
        "    raise RuntimeError('CUDA error: unspecified launch failure')\n"
        "g.kernel_ablation = boom\n"
        "sys.argv = ['loftup', *sys.argv[3:]]\n"  # after: boom.py -m loftup
        "runpy.run_module('loftup', run_name='__main__')\n"
    )
    # the first group dies at once (its figures are not what this is about)
    wrapper = tmp_path / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" bench "*"parity,"*) exit 3;; *" bench "*) exec "{sys.executable}" '
        f'{tmp_path / "boom.py"} "$@";; esac\nexec "{sys.executable}" "$@"\n'
    )
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\necho "fake nvidia-smi $*"\n')
    for f in (wrapper, smi):
        f.chmod(0o755)
    out = tmp_path / "rel"
    out.mkdir()
    (out / "smoke-bench.log").write_text("an earlier run's line\n")
    env = {**os.environ, "OUT": "rel", "PYTHON": str(wrapper), "LOFTUP_SMOKE": "1"}
    env["PATH"] = f"{smi.parent}:{env['PATH']}"
    cmd = ["bash", str(REPO / "benchmarks" / "gpu.sh")]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (path,) = out.glob("smoke-*.json")  # in the caller's folder
    report = json.loads(path.read_text())
    assert report["sections"]["ablation"]["error"].endswith("unspecified launch failure")
    assert report["sections"]["extraction"]["images_per_s"]  # the sections after it still ran
    cut = report["gpu_sh_cut"]
    assert cut["ablation"] == "section-error" and set(cut.values()) == {
        "section-error",
        "failed-exit-3",
    }
    (row,) = [r for r in report["targets"] if r["target"].startswith("benchmarks/gpu.sh")]
    assert "ablation (section-error)" in row["measured"]
    log = (out / "smoke-bench.log").read_text()
    assert "gpu.sh: section ablation failed" in log and "an earlier run's line" not in log
    assert "fake nvidia-smi -q -d ECC,ROW_REMAPPER,PAGE_RETIREMENT" in log
