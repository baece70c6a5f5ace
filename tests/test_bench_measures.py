"""What a benchmark's columns measure: peak memory in megabytes (an earlier case's freed memory
counted), the deviation from float32 in chunks and of channels-last outputs, the ablation's
weights folded once, and which Triton ran."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from loftup import LoftUp
from processes import REPO


def test_the_forward_table_s_peak_memory_is_in_megabytes_as_its_label_says():
    """The table says MB, as the README's figures (GB = 1e9 bytes) do: 1e6 bytes, not 2**20."""
    from loftup.bench.forward import format_table

    stored = REPO / "benchmarks" / "results" / "gpu-nvidia-h200-2026-11-26-v3.json"
    report = json.loads(stored.read_text())
    forward = report["sections"]["forward"]
    row = {**forward["results"][0], "peak_memory_bytes": 300 * 2**20}  # 314.6e6 bytes
    table = format_table({**forward, "results": [row], "machine": report["machine"]})
    assert " 315MB " in table.splitlines()[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc behaviour")
def test_cpu_peak_memory_counts_memory_an_earlier_case_freed():
    """On the CPU the peak is the resident set's growth: memory that an earlier case freed and
    malloc kept, reused, did not grow it, and a case after a larger one read a fraction of its
    working memory (here 0.2 MB of 262)."""
    from loftup.bench.memory import PeakMemory

    size = 16384 * 4  # 64 KB blocks: below malloc's mmap threshold, so on its heap
    blocks = [torch.ones(16384) for _ in range(4000)]
    pin = torch.ones(16384)  # above them on the heap: their pages are not its free top
    del blocks  # freed, the pages kept by malloc
    with PeakMemory() as mem:
        again = [torch.ones(16384) for _ in range(4000)]
    assert mem.peak_bytes >= 0.8 * size * len(again)
    del again, pin


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the resident set, from /proc")
def test_cpu_peak_memory_leaves_out_a_case_s_one_time_costs():
    """On the CPU the peak was read over a case's first call, which also pays one-time costs
    (oneDNN's kernels, the thread pool's stacks): the first case of `loftup bench --sizes 64 32
    64 --dim 16` read 37 MB, the same case later 9. It is read on a second call, as on CUDA,
    and with two warm-up calls or more no call is added."""
    import torch.nn.functional as F

    from loftup.bench.forward_size import _bench_size, _calls

    class OneTimeCost:  # a model whose first call builds a 64 MB cache it keeps
        calls, cache = 0, None

        def __call__(self, lr, image):
            self.calls += 1
            if self.cache is None:
                self.cache = torch.ones(16 * 2**20)  # written: resident
            return F.interpolate(lr, size=image.shape[-2:], mode="bilinear")

    lr = torch.randn(1, 4, 4, 4)
    for warmup in (1, 2, 3):
        model = OneTimeCost()
        with torch.inference_mode():
            rows = _bench_size(32, lr, {"float32": model}, None, {}, 1.0, "cpu", warmup, 1)
        (row,) = [r for r in rows if r["method"] == "loftup"]
        assert row["peak_memory_bytes"] < 16e6, (warmup, row["peak_memory_bytes"])
        assert model.calls == max(warmup, 2) + 1  # and the bar counts them (3 cases):
        assert _calls(["float32"], False, False, False, warmup, 1) == 3 * model.calls


def test_the_forward_table_explains_a_fraction_of_peak_over_one():
    """An emulated precision's matrix-product rate (about 1 GFLOP/s for bfloat16 on an AVX2
    CPU) was printed as "0" and the rows beside it at 2061% of it, without a word."""
    from loftup.bench.forward import format_table

    stored = REPO / "benchmarks" / "results" / "gpu-nvidia-h200-2026-11-26-v3.json"
    report = json.loads(stored.read_text())
    forward = report["sections"]["forward"]
    row = {**forward["results"][0], "fraction_of_peak": 20.61}
    peaks = {"float32": 81.4, "bfloat16": 0.43}
    base = {**forward, "peak_gflops_per_s": peaks, "machine": report["machine"]}
    table = format_table({**base, "results": [row]})
    assert " 2061% " in table.splitlines()[1] and "# %peak over 100%" in table
    assert "matmul peak GFLOP/s: float32 81.4, bfloat16 0.43" in table
    assert "over 100%" not in format_table({**base, "results": [{**row, "fraction_of_peak": 0.5}]})


def test_ablation_variants_do_not_refold_the_weights_on_every_call(monkeypatch):
    """The model keeps one folded copy of its weights; variants that change the convolutions or
    the row padding must each keep their own, or every timed call of theirs also pays a fold
    (on the H200 about 3 ms a call, which made the 224 ablation read 2.6x instead of ~1.2x)."""
    import loftup.model
    from loftup.bench.gpu import kernel_ablation

    folds = []
    real = loftup.model.fuse

    def counted(*args, **kwargs):
        folds.append(args[1:])
        return real(*args, **kwargs)

    monkeypatch.setattr(loftup.model, "fuse", counted)
    torch.manual_seed(0)
    model = LoftUp(dim=32).eval()
    rows = kernel_ablation(
        model, (16,), dtype=torch.float32, grid=4, device="cpu", repeats=4, compile_sizes=()
    )
    assert {r["variant"] for r in rows} >= {"default", "NCHW convolutions", "unpadded rows"}
    # one fold per distinct setting (default, NCHW, unpadded, direct), not one per call
    assert len(folds) == len(set(folds)) == 4, folds


def test_deviation_in_chunks_is_the_one_pass_figure_and_keeps_a_nan():
    """The deviation of a 4096 x 4096 x 384 output is taken a chunk at a time (whole float32
    copies took about 100 GB): the same figures as in one pass, and a NaN is not lost."""
    from loftup.bench.forward import deviation

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 50, 70, generator=g)
    out = (ref + 1e-3 * torch.randn(3, 50, 70, generator=g)).half()
    d = (out.float() - ref).abs()
    got = deviation(out, ref, chunk=997)  # not a divisor of the size: a short last chunk
    assert got["max_abs_dev_vs_float32"] == d.max().item()
    assert got["mean_abs_dev_vs_float32"] == pytest.approx(d.double().mean().item(), rel=1e-12)
    out[2, 49, 69] = float("nan")  # in the last chunk, after larger deviations
    assert math.isnan(deviation(out, ref, chunk=997)["max_abs_dev_vs_float32"])


def test_deviation_of_channels_last_outputs_copies_neither():
    """Outputs are channels-last on a GPU: flattened with reshape(-1), each was copied whole
    (at 4096 x 4096 x 384, 38 GB beyond the pair). In their storage order nothing larger than
    a chunk is allocated, and the figures are the one-pass ones, whatever the pair's layouts."""
    from loftup.bench.precision import deviation

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 48, 20, 30, generator=g)
    out = ref + 1e-3 * torch.randn(2, 48, 20, 30, generator=g)
    d = (out - ref).abs()
    last = torch.channels_last
    for a, b in [
        (out.contiguous(memory_format=last), ref.contiguous(memory_format=last)),
        (out.contiguous(memory_format=last), ref),  # mixed: the pairs still match
        (out, ref.contiguous(memory_format=last)),
        (out, ref),
    ]:
        got = deviation(a, b, chunk=1000)
        assert got["max_abs_dev_vs_float32"] == d.max().item()
        assert got["mean_abs_dev_vs_float32"] == pytest.approx(d.double().mean().item(), rel=1e-12)
    a, b = out.contiguous(memory_format=last), ref.contiguous(memory_format=last)
    cpu = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=cpu, profile_memory=True) as prof:
        deviation(a, b, chunk=1000)
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert 0 < largest <= 4 * 1000 * 4, f"{largest} bytes allocated at once: a whole copy"


def test_reports_say_which_triton_and_whether_its_kernels_ran(monkeypatch):
    """A half-precision GPU figure depends on whether the Triton kernels passed their
    self-test (where they fail, PyTorch's run, 1.15-1.5x slower, after one warning that the
    JSON did not keep) and on which Triton and cuDNN settings ran: the report must say."""
    from importlib.metadata import PackageNotFoundError, version

    from loftup import kernels
    from loftup.bench.core import kernel_state, machine_info

    try:
        triton = version("triton")
    except PackageNotFoundError:
        triton = None
    assert machine_info("cpu")["triton"] == triton
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(
        kernels, "_checked", {(gpu, torch.float16): True, (gpu, torch.bfloat16): False}
    )
    assert kernel_state("cuda:0") == {"float16": True, "bfloat16": False}
    assert kernel_state("cuda:1") == {} and kernel_state("cpu") == {}
    with kernels.enabled(False):
        assert kernel_state("cuda:0") == "switched off"


def test_the_untimed_calls_made_are_recorded_and_said_in_the_help(capsys):
    """Each case makes at least 2 untimed calls (the second's peak memory is read), but the
    JSON recorded only the warmup asked for (0 or 1) and --help said "untimed calls first
    (default 1)"."""
    from loftup.bench.forward import bench_forward
    from loftup.cli import main

    for warmup, made in ((0, 2), (3, 3)):
        report = bench_forward(
            (16,), dim=32, grid=4, repeats=1, warmup=warmup, peak=False, progress=False
        )
        settings = report["settings"]
        assert settings["warmup"] == warmup and settings["untimed_calls"] == made
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    helped = " ".join(capsys.readouterr().out.split())
    assert "at least 2 are made, on the CPU and CUDA alike" in helped
