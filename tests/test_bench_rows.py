"""A benchmark suite's rows: every section runs, and a case, size, tile size, backbone or
variant that fails costs its own row, not the section."""

from __future__ import annotations

import sys

import pytest
import torch

from bench_helpers import STANDIN
from loftup import LoftUp
from loftup.bench import load_reference_class


def test_smoke_suite_runs_every_section(tmp_path):
    """The GPU suite's code at toy sizes (on the CPU here): what benchmarks/gpu.sh runs."""
    from loftup.bench.suite import SECTIONS, run_suite

    report = run_suite("smoke", log=lambda *a: None)
    failed = {k: v["error"] for k, v in report["sections"].items() if "error" in v}
    assert not failed, failed
    # in the order SECTIONS gives (the two that decide no target, the ablation and the
    # extraction loop, last)
    assert [k for k in report["sections"] if k != "_seconds"] == list(SECTIONS["smoke"])
    assert sys.modules.get("transformers") is not None  # the backbones ran
    for key in ("big_output", "backbones"):  # every case ran (none listed as failed)
        assert report["sections"][key]["results"] and report["sections"][key]["failed"] == []
    rows = report["sections"]["backbones"]["results"]
    assert rows and not [r["errors"] for r in rows if "errors" in r]
    assert all("backbone+loftup_overlap_s" in r for r in rows)  # pre-flown, kept, timed
    ex = report["sections"]["extraction"]  # loftup upsample's loop, files really written
    assert set(ex["images_per_s"]) == {
        "compute_only",
        "serial",
        "writers_1",
        "writers_2",
        "streamed_writers_2",
    }
    assert all(v > 0 for v in ex["images_per_s"].values())
    assert 32 * 28 * 28 * 4 / 1e6 < ex["file_mb"] < 0.11  # (32, 28, 28) float32 and a header


def test_a_failing_variant_is_dropped_with_its_error_and_the_others_kept():
    """One end-to-end variant failing on a GPU (a path never run before) must not cost the
    section the figures of the others."""
    from loftup.bench.gpu import _preflight

    ran = []

    def broken():
        raise RuntimeError("CUDA error: invalid resource handle")

    cases = {"base": lambda: ran.append("base"), "bad": broken, "good": lambda: ran.append("good")}
    errors = _preflight(cases, keep=("base",))
    assert list(cases) == ["base", "good"] and ran == ["good"]  # the kept case is not pre-run
    assert errors == {"bad": "RuntimeError: CUDA error: invalid resource handle"}


def test_a_case_that_fails_at_one_size_costs_its_own_row_not_the_section():
    """The paper's code at 2048 in float32 needs 72 GB (H200 run) next to our float32 output:
    on an 80 GB card it can run out of memory. That must cost its own row at that size, named
    with its error, not every row of the forward table (224's decide three of the targets)."""
    from loftup.bench import bench_forward

    standin = load_reference_class(STANDIN)

    class OutOfMemoryAbove16(standin):
        def forward(self, lr_feats, image):
            if image.shape[-1] > 16:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return super().forward(lr_feats, image)

    report = bench_forward(
        (16, 24), dim=32, grid=4, reference=OutOfMemoryAbove16, reference_max_size=24,
        peak=False, repeats=1, progress=False,
    )  # fmt: skip
    got = {(r["method"], r["dtype"], r["size"]) for r in report["results"]}
    for size in (16, 24):
        assert {("loftup", "float32", size), ("bilinear", "float32", size)} <= got
    assert ("reference", "float32", 16) in got and ("reference", "float32", 24) not in got
    assert report["failed"] == [
        {
            "method": "reference",
            "dtype": "float32",
            "size": 24,
            "error": "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB",
        }
    ]
    from loftup.bench.forward import format_table
    from loftup.bench.suite import summary

    assert "reference float32 24: OutOfMemoryError" in format_table(report)
    suite = {"suite": "cpu", "machine": report["machine"], "sections": {"forward": report}}
    assert "forward: reference float32 24 FAILED OutOfMemoryError" in summary(suite)


def _out_of_memory():
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_big_output_keeps_the_tile_sizes_that_did_not_fail(monkeypatch):
    """4096 x 4096 in tiles of 2048 may not fit an 80 GB card: that tile size costs its own
    rows (listed under the section's failed), not the other tile sizes' (one decides a target)."""
    from loftup.bench import gpu, large
    from loftup.bench.suite import summary
    from loftup.bench.targets import targets

    upsample_into = large._upsample_into  # where big_output looks it up

    def out_of_memory_at_16(model, lr, image, out):
        if model.tile_size == 16:
            raise _out_of_memory()
        return upsample_into(model, lr, image, out)

    monkeypatch.setattr(large, "_upsample_into", out_of_memory_at_16)
    model, failed = LoftUp(dim=32).eval(), []
    results = gpu.big_output(
        model, 24, dtype=torch.float32, tile_sizes=(8, 16, 24), grid=4, device="cpu", failed=failed
    )
    assert [r["tile_size"] for r in results] == [8, 24]  # the one after the failed one too
    assert all(r["finite"] and r["best_s"] > 0 and r["size"] == 24 for r in results)
    error = "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert failed == [
        {"method": "loftup", "dtype": "float32", "size": 24, "tile_size": 16, "error": error}
    ]
    with pytest.raises(torch.OutOfMemoryError):  # without a list to keep them in: raised
        gpu.big_output(model, 24, dtype=torch.float32, tile_sizes=(16,), grid=4, device="cpu")
    # what the suite keeps (its section) is summarised and judged by the rows that ran
    sec = {"results": [{**r, "size": 4096} for r in results], "failed": failed}
    report = {"suite": "gpu", "machine": {"processor": "x"}, "sections": {"big_output": sec}}
    assert f"big_output: loftup float32 24 16 FAILED {error}" in summary(report)
    assert "big_output: size=4096, dtype=float32, tile_size=8" in summary(report)
    big = [r for r in targets(report) if r["target"].startswith("4096 x 4096")][0]
    assert "(float32, tiles of" in big["measured"]
    stored = {**report, "sections": {"big_output": sec["results"]}}  # a report before this
    assert [r for r in targets(stored) if r["target"] == big["target"]] == [big]


def test_backbones_keep_the_rows_that_did_not_fail(monkeypatch):
    """ViT-B/14 at 448 in float32 out of memory must cost that row, not ViT-S/14's and the
    other sizes' (each decides a target)."""
    import loftup.model
    from loftup.bench import gpu
    from loftup.bench.suite import summary
    from loftup.bench.targets import targets

    class OutOfMemoryAt56(loftup.model.LoftUp):
        def forward(self, lr_feats, image, *args, **kwargs):
            if image.shape[-1] == 56:
                raise _out_of_memory()
            return super().forward(lr_feats, image, *args, **kwargs)

    monkeypatch.setattr(loftup.model, "LoftUp", OutOfMemoryAt56)
    failed = []
    results = gpu.backbone_end_to_end(
        (28, 56, 42), archs=("tiny",), dtypes=("float32",), device="cpu", repeats=1, failed=failed
    )
    assert [(r["backbone"], r["dtype"], r["size"]) for r in results] == [
        ("tiny", "float32", 28),
        ("tiny", "float32", 42),  # after the failed size
    ]
    assert all(r["backbone+loftup_s"] > 0 and "errors" not in r for r in results)
    error = "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert failed == [{"method": "tiny", "dtype": "float32", "size": 56, "error": error}]
    with pytest.raises(torch.OutOfMemoryError):  # without a list to keep them in: raised
        gpu.backbone_end_to_end((56,), archs=("tiny",), dtypes=("float32",), device="cpu")
    # what the suite keeps (its section) is summarised and judged with the failed case named
    sec = {"results": [{**results[0], "size": 224}], "failed": [{**failed[0], "size": 448}]}
    report = {"suite": "gpu", "machine": {"processor": "x"}, "sections": {"backbones": sec}}
    assert f"backbones: tiny float32 448 FAILED {error}" in summary(report)
    judged = {r["target"]: r["measured"] for r in targets(report)}
    assert "tiny float32 224: + LoftUp <= 1.5x + bilinear" in judged
    assert judged["tiny float32 448: + LoftUp <= 2.0x + bilinear"] == f"failed: {error}"
    # a stored report's section (a list of rows, before failed cases were kept) is still read
    stored = {**report, "sections": {"backbones": sec["results"]}}
    assert "tiny float32 224: + LoftUp <= 1.5x + bilinear" in {r["target"] for r in targets(stored)}


def test_a_variant_of_the_ablation_that_fails_costs_its_own_row(monkeypatch):
    """torch.compile failing on a GPU (a compiler error on a path never run there) lost the
    whole ablation, every size and variant; it now costs its own row, with its error."""
    import loftup.compiled
    from loftup.bench.gpu import kernel_ablation

    def broken_compile(model, **kwargs):
        def fn(lr, image):
            raise RuntimeError("InductorError: compilation failed")

        return fn

    monkeypatch.setattr(loftup.compiled, "compile_upsampler", broken_compile)
    torch.manual_seed(0)
    model = LoftUp(dim=32).eval()
    rows = kernel_ablation(
        model, (16,), dtype=torch.float32, grid=4, device="cpu", repeats=1, compile_sizes=(16,)
    )
    timed = {r["variant"] for r in rows if "best_s" in r}
    assert {"default", "NCHW convolutions", "no Triton kernels"} <= timed
    (failed,) = [r for r in rows if "error" in r]
    assert failed["variant"] == "compiled" and "compilation failed" in failed["error"]
