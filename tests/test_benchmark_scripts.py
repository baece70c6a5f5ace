"""The scripts in benchmarks/ that a lent GPU's few minutes rely on run, here at toy sizes, and
write their JSON: a script broken since its last GPU run would cost that device time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from loftup import kernels
from processes import REPO, src_env


def _script(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**src_env(), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(REPO / "benchmarks" / name), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _in_process(name: str, *args: str, monkeypatch) -> None:
    """The script ``benchmarks/NAME`` run with ``args`` in this process, as its command line
    runs it, without the seconds a fresh process takes to import torch; what it sets for the
    process put back: the random generators (seeded), grad mode, threads, cuDNN's benchmark
    mode, the kernels' self-test verdicts and sys.path."""
    monkeypatch.setattr(sys, "argv", [name, *args])
    monkeypatch.setattr(sys, "path", list(sys.path))  # gpu_probe.py puts src/ first
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(kernels, "_checked", dict(kernels._checked))
    threads, grad = torch.get_num_threads(), torch.is_grad_enabled()
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            _load(name).main()
    finally:
        torch.set_num_threads(threads)
        torch.set_grad_enabled(grad)


def _process_state() -> dict:
    """What a script run by :func:`_in_process` may not leave changed: the CPU's random state
    and seed, grad mode, threads, cuDNN's benchmark mode and the kernels' verdicts."""
    import hashlib

    return {
        "random state": hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()[:16],
        "seed": torch.initial_seed(),
        "grad": torch.is_grad_enabled(),
        "threads": torch.get_num_threads(),
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "kernel verdicts": dict(kernels._checked),
    }


def test_gpu_probe_smoke_times_each_step_of_the_forward(tmp_path, monkeypatch):
    """... and leaves this process as it was: its seed (0) stayed for the tests after it (and
    the kernels' verdicts its fused forward may make are put back too)."""
    out = tmp_path / "probe.json"
    torch.manual_seed(7)
    before = _process_state()
    with monkeypatch.context() as patched:
        _in_process("gpu_probe.py", "--smoke", "--json", str(out), monkeypatch=patched)
    assert _process_state() == before
    report = json.loads(out.read_text())
    assert report["device"] in ("cpu", "cuda")
    # the figures say what they were measured on and how, as loftup bench's do
    assert report["machine"]["torch"] == torch.__version__ and report["machine"]["torch_threads"]
    assert report["settings"]["sizes"] == [32] and report["settings"]["repeats"] == 1
    if hasattr(os, "getloadavg"):  # how busy the machine was, at the start and the end
        assert len(report["machine"]["load_average_start"]) == 3
        assert len(report["machine"]["load_average_end"]) == 3
    (size,) = [k for k in report if k.isdigit()]  # one toy size
    steps = report[size]["ms"]  # milliseconds per step
    assert {"encode", "conv1", "conv2", "forward", "forward (PyTorch kernels)"} <= set(steps)
    assert all(ms > 0 for ms in steps.values())


def test_gpu_probe_smoke_times_the_sizes_it_is_given(tmp_path, monkeypatch):
    """--sizes was dropped under --smoke (and without CUDA) for the toy 32 px: the report
    said sizes [32] whatever was asked; a size's own path (the decode's chunk) untried."""
    out = tmp_path / "probe.json"
    args = ("--smoke", "--sizes", "16", "24", "--json", str(out))
    _in_process("gpu_probe.py", *args, monkeypatch=monkeypatch)
    report = json.loads(out.read_text())
    assert report["settings"]["sizes"] == [16, 24]
    assert sorted(k for k in report if k.isdigit()) == ["16", "24"]
    assert "decode 576 px" in report["24"]["ms"]  # 24 x 24 pixels, in one chunk


def test_world_costs_and_class_information(tmp_path, monkeypatch):
    out = tmp_path / "world.json"
    torch.manual_seed(7)
    before = _process_state()
    with monkeypatch.context() as patched:
        _in_process("world.py", "--count", "2", "--json", str(out), monkeypatch=patched)
    assert _process_state() == before
    report = json.loads(out.read_text())
    assert report["machine"]["torch"] == torch.__version__ and report["count"] == 2
    assert report["generation_s_per_image_128"] > 0 and report["forward_s_batch8_128"] > 0
    probe = report["probe_128"]
    assert probe["scenes"] == 2 and 0 <= probe["patch_accuracy"] <= 1


@pytest.mark.slow
def test_train_step_times_a_step_and_its_target(tmp_path):
    out = tmp_path / "step.json"
    args = ["--device", "cpu", "--batch", "1", "--steps", "1", "--warmup", "0", "--masks", "4"]
    _script("train_step.py", *args, "--json", str(out))
    (row,) = json.loads(out.read_text())["rows"]
    assert row["stage"] == 1 and row["steps_timed"] == 1
    assert 0 < row["target_seconds"] < row["seconds_per_step"]


def _load(name: str):
    """The script ``benchmarks/NAME`` as a module, to call its ``main`` in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"bench_script_{name[:-3]}", REPO / "benchmarks" / name
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name, args, said",
    [
        # the probes fit on half the scenes: one scene crashed in L-BFGS with an IndexError
        ("world.py", ["--count", "1"], "--count must be at least 2"),
        # --json a folder: a traceback after the whole run, its numbers lost
        ("world.py", ["--json", "{tmp}"], "is a folder; give a file name"),
        ("world.py", ["--threads", "-1"], "--threads must be at least 1"),
        ("train_step.py", ["--json", "{tmp}/file/x.json"], "cannot be written"),
        ("gpu_probe.py", ["--json", "{tmp}"], "is a folder; give a file name"),
        # a median over no timed steps: NaN seconds per step, after the minutes of setup (no
        # warm-up nor images here, so that a regression fails in seconds, not in a training run)
        ("train_step.py", ["--steps", "0", "--warmup", "0"], "--steps (timed steps, after the"),
        ("train_step.py", ["--batch", "0", "--warmup", "0"], "--batch (images per step) must"),
        ("train_step.py", ["--masks", "-1", "--warmup", "0"], "--masks (SAM masks per image) m"),
        # a side of 0 or below reached the model (checked on the CPU too, which times 32 px)
        (
            "gpu_probe.py",
            ["--json", "{tmp}/p.json", "--sizes", "224", "0"],
            "at least 1, got 224 0",
        ),
        ("gpu_probe.py", ["--json", "{tmp}/p.json", "--sizes"], "expected at least one argument"),
    ],
)
def test_scripts_refuse_bad_arguments_in_one_line_before_any_work(
    name, args, said, tmp_path, monkeypatch, capsys
):
    (tmp_path / "file").write_text("")
    argv = [a.format(tmp=tmp_path) for a in args]
    monkeypatch.setattr(sys, "argv", [name, *argv])
    module = _load(name)
    with pytest.raises(SystemExit) as stop:
        module.main(argv) if name == "train_step.py" else module.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith(f"{name}: error:")]
    assert said in line and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]  # nothing was written
