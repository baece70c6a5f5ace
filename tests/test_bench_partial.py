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
