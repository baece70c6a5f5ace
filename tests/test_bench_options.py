"""``loftup bench``'s options: what is refused with a suite, a time budget, the device, cuDNN's
mode, threads, and a streamed output's line."""

from __future__ import annotations

import json
import re

import pytest
import torch

from bench_helpers import TINY_BENCH
from loftup import LoftUp
from loftup.cli import main
from processes import cli_script, run_scripts


def test_bench_only_without_suite_or_with_unknown_section_is_one_line(tmp_path):
    done = run_scripts(  # one process for both
        {
            "no suite": cli_script(["bench", "--only", "parity"]),
            "unknown": cli_script(["bench", "--suite", "smoke", "--only", "forward,nope"]),
        }
    )
    r = done["no suite"]
    assert r.returncode == 2 and "--only picks sections of a suite" in r.stderr
    r = done["unknown"]
    assert r.returncode == 2 and "no section 'nope'" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_tables_options_with_a_suite_are_refused_not_ignored(capsys):
    """--suite cpu --sizes 16 ran the whole suite at its own sizes (15 minutes), the option
    dropped without a word: each table option given with a suite is named, before anything
    runs; the suite's own options (--threads, --only, --json) are taken."""
    from loftup.cli import main

    assert main(["bench", "--suite", "cpu", "--sizes", "16"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --sizes sets one table, and --suite cpu sets its own; drop it, or leave out "
        "--suite for one table (--only picks a suite's sections)\n"
    )
    assert main(["bench", "--suite", "smoke", "--dim", "8", "--tf32", "--only", "parity"]) == 2
    assert "error: --dim, --tf32 set one table, and --suite smoke" in capsys.readouterr().err
    # a suite option's error is still its own: the table check passed
    assert main(["bench", "--suite", "cpu", "--threads", "1", "--only", "nope"]) == 2
    assert "no section 'nope'" in capsys.readouterr().err


def test_time_budget_cuts_the_rounds_but_keeps_a_minimum():
    import time

    from loftup.bench.core import time_alternating

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.03)

    fns = {"a": slow, "b": lambda: None}
    full = time_alternating(fns, warmup=0, repeats=6)
    assert len(full["a"]["times_s"]) == 6
    calls.clear()
    cut = time_alternating(fns, warmup=0, repeats=50, budget_s=0.05, min_repeats=3)
    assert len(cut["a"]["times_s"]) == len(cut["b"]["times_s"]) == len(calls)
    assert 3 <= len(calls) <= 5  # the minimum, plus the round that passed the budget


def test_plain_bench_times_in_the_suites_cudnn_mode(monkeypatch):
    """`loftup bench --device cuda` ran with cuDNN's benchmark mode off while the suites (and
    the README's tables) turn it on: its convolutions' figures did not compare."""
    import loftup.bench
    import loftup.cli

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # restored afterwards
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # one GPU, as far as the
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # device check can tell
    seen = {}

    class Timed(Exception):
        pass

    def bench_forward(*args, device, **kwargs):  # the timing itself needs a GPU: not run here
        seen["mode"], seen["device"] = torch.backends.cudnn.benchmark, device
        raise Timed

    monkeypatch.setattr(loftup.bench, "bench_forward", bench_forward)
    with pytest.raises(Timed):
        main(["bench", "--device", "cuda", "--sizes", "24", "--no-peak"])
    assert seen == {"mode": True, "device": "cuda"}
    torch.backends.cudnn.benchmark = False
    with pytest.raises(Timed):  # on the CPU the flag is left alone
        main(["bench", "--device", "cpu", "--sizes", "24", "--no-peak"])
    assert seen == {"mode": False, "device": "cpu"}


def test_bench_stream_adds_its_line_and_figures_to_the_table(tmp_path, capsys):
    """`loftup bench --stream N` streams an N x N output of a model of --dim channels, in tiles
    of --tile-size, after the table: one line printed, its figures under "stream"."""
    out = tmp_path / "bench.json"
    argv = ["bench", "--sizes", "16", "--dim", "32", "--grid", "4", "--repeats", "1", "--no-peak"]
    assert main([*argv, "--tile-size", "16", "--stream", "24", "--json", str(out)]) == 0
    st = json.loads(out.read_text())["stream"]
    assert st["size"] == 24 and st["layout"] == "nhwc" and st["seconds"] > 0
    assert 24 * 24 * 32 * 4 < st["file_bytes"] < 24 * 24 * 32 * 4 + 1024  # float32 and a header
    assert re.search(
        r"^stream 24x24: \d+\.\d s, 0\.0 GB file, peak own memory ", capsys.readouterr().out, re.M
    )


def test_a_stream_with_a_batch_is_refused_before_the_table(tmp_path, capsys):
    """`loftup bench --batch 4 --stream N` streamed one image (batch 1) while its line and JSON
    said nothing of the batch, which the table beside it did use: refused in one line, before
    the table is timed."""
    out = tmp_path / "bench.json"
    assert main([*TINY_BENCH, "--batch", "2", "--stream", "24", "--json", str(out)]) == 2
    io = capsys.readouterr()
    assert "--stream 24 streams one image's output, and --batch 2 would not apply" in io.err
    assert "leave out --batch" in io.err and len(io.err.strip().splitlines()) == 1
    assert io.out == "" and not out.exists()  # nothing timed, nothing written


def test_bench_stream_streams_with_the_model_s_convolutions(tmp_path):
    """`loftup bench --conv direct --stream N` reported the table's settings (conv "direct")
    while the stream ran with the device's default (Winograd here): its figures were of other
    convolutions than the report said. The streamed file is now the model's own output."""
    import numpy as np

    from loftup.bench.scale import _inputs, bench_stream

    torch.manual_seed(0)
    model = LoftUp(dim=32).eval()
    model.tile_size, model.chunk_size, model.conv = 16, 64, "direct"
    path = tmp_path / "f.npy"
    bench_stream(model, 24, grid=4, path=path, layout="nchw", keep=True)
    lr, image = _inputs(model, 24, 4, "cpu")
    with torch.inference_mode():
        assert torch.equal(torch.from_numpy(np.load(path)), model(lr, image))


def test_a_stream_size_the_suite_would_not_use_is_refused(capsys):
    """`--suite cpu --only stream` without --stream wrote a report with no section, and
    `--stream N` with the gpu or smoke suite was dropped without a word: both are refused,
    in one line, before anything runs."""
    assert main(["bench", "--suite", "cpu", "--only", "stream"]) == 2
    err = capsys.readouterr().err
    assert "section 'stream' streams an N x N output" in err and "--stream N" in err
    assert main(["bench", "--suite", "smoke", "--only", "parity", "--stream", "64"]) == 2
    err = capsys.readouterr().err
    assert "is a section of suite 'cpu' only; suite 'smoke'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_suite_runs_on_the_device_asked_for(monkeypatch, capsys):
    """`--suite smoke --device cpu` on a machine with a GPU ran on the GPU: the CLI took "cpu",
    its default, to mean "not given". Asked for, the CPU is used; not given, the suite's own
    default (CUDA where present) still is."""
    import loftup.bench.suite

    seen = []

    class Ran(Exception):
        pass

    def timing_mode(device):  # the first step on the suite's device: what ran where, no more
        seen.append(device)
        raise Ran

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU, as far as the
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # suite's default can tell
    monkeypatch.setattr(loftup.bench.suite, "timing_mode", timing_mode)
    for device in (["--device", "cpu"], []):
        with pytest.raises(Ran):
            main(["bench", "--suite", "smoke", "--only", "parity", *device])
    assert seen == ["cpu", "cuda"]


def test_a_stream_s_host_memory_is_the_host_s_and_a_gpu_s_is_said_apart(tmp_path):
    """On a GPU, `--stream`'s "peak own memory" (``peak_anon_memory_bytes``, the process's own
    host memory on the CPU) read the GPU's allocations instead: the host's is now read on any
    device, and a GPU's peak is a figure of its own (None on the CPU)."""
    from loftup.bench.scale import bench_stream
    from loftup.bench.table import format_stream

    torch.manual_seed(0)
    model = LoftUp(dim=32).eval()
    model.tile_size = 16
    st = bench_stream(model, 32, grid=4, path=tmp_path / "cpu.npy", progress=False)
    assert st["peak_device_bytes"] is None and st["peak_anon_memory_bytes"] >= 0
    assert "GPU" not in format_stream(st)
    if not torch.cuda.is_available():
        return
    st = bench_stream(model.cuda(), 64, grid=4, device="cuda", path=tmp_path / "gpu.npy")
    assert st["peak_device_bytes"] > 0 and ", peak GPU memory " in format_stream(st)


def test_bench_threads_are_the_commands_not_the_callers(tmp_path):
    """``main(["bench", ..., "--threads", "N"])`` in Python left torch at N threads after it."""
    before = torch.get_num_threads()
    threads = 1 if before != 1 else 2
    assert main([*TINY_BENCH, "--threads", str(threads), "--json", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["machine"]["torch_threads"] == threads
    assert torch.get_num_threads() == before
