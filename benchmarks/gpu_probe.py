# ruff: noqa: B023  (the timed lambdas run inside the loop iteration that made them)
"""Where the GPU forward spends its time, and what the Triton kernels and CUDA graphs buy.

One call, about a minute on an H200 (toy sizes on the CPU with ``--smoke`` or without a CUDA
device: a 32 px output of C = 32, as the smoke suite's, in bfloat16; the same steps in seconds;
``--sizes`` given are timed there too, at C = 32, to try a size's own path without a GPU, such
as the decode timed on a chunk of 2^18 pixels above 512 px):

    python benchmarks/gpu_probe.py --json OUT.json [--smoke] [--sizes 224 448 ...]

In half precision with the released shapes (C = 384, 16 x 16 tokens) it times each step of the
fast path separately (image encoding, the two stem convolutions, the transformer decode), with
the Triton kernels of ``loftup.kernels`` and without, the whole forward both ways, the forward
replayed from a CUDA graph (small sizes), and writes the profiler's top kernels of one forward
at the largest size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from loftup import LoftUp, kernels  # noqa: E402
from loftup.atomic import write_json  # noqa: E402
from loftup.bench.core import (  # noqa: E402
    check_script_args,
    kernel_state,
    load_average,
    machine_info,
    time_alternating,
)
from loftup.compiled import graph_upsampler  # noqa: E402
from loftup.fastpath import conv3x3_relu, decode, encode_kv, encode_region  # noqa: E402
from loftup.layers import image_minmax  # noqa: E402


def timed(cases, device, repeats):
    with torch.inference_mode():
        t = time_alternating(cases, device=device, warmup=2, repeats=repeats)
    return {k: round(v["best_s"] * 1e3, 4) for k, v in t.items()}


def plain(fn):
    """``fn`` with PyTorch's kernels instead of the Triton ones."""

    def run():
        with kernels.enabled(False):
            return fn()

    return run


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json", required=True)
    p.add_argument("--smoke", action="store_true")
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="output sides in pixels (default: 224 448 896 2048 on a GPU, 32 with --smoke)",
    )
    a = p.parse_args()
    check_script_args(p, json_out=a.json)  # written after each size: said before the first
    if a.sizes and min(a.sizes) < 1:
        p.error(f"--sizes are output sides in pixels and must be at least 1, got "
                f"{' '.join(map(str, a.sizes))}")  # fmt: skip
    cuda = torch.cuda.is_available() and not a.smoke
    dev = "cuda" if cuda else "cpu"
    dt = torch.float16 if cuda else torch.bfloat16
    if cuda:
        torch.backends.cudnn.benchmark = True
    sizes = tuple(a.sizes or ((224, 448, 896, 2048) if cuda else (32,)))
    reps = 10 if cuda else 1
    dim = 384 if cuda else 32
    torch.manual_seed(0)
    model = LoftUp(dim=dim).eval().to(dev, dt)
    fw = model.fused(dt, "auto", None)
    out = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "dtype": str(dt),
        "triton": kernels.available(),
        # what ran (GPU, torch, CUDA, Triton, threads, commit, date) and with which settings
        "machine": machine_info(dev),
        "settings": {"sizes": list(sizes), "repeats": reps, "dim": dim, "grid": 16},
    }
    torch.set_grad_enabled(False)
    for size in sizes:
        t0 = time.perf_counter()
        row = {}
        lr = torch.randn(1, dim, 16, 16, device=dev, dtype=dt)
        image = torch.randn(1, 3, size, size, device=dev)  # guidance images stay float32
        lo, hi = image_minmax(image.float())
        kvs = encode_kv(fw, lr)
        enc = encode_region(fw, image, lo, hi, (0, 0), (size, size))
        x1 = conv3x3_relu(fw, enc.permute(0, 3, 1, 2), 1, (1, 1, 1, 1))
        x2 = conv3x3_relu(fw, x1, 2, (1, 1, 1, 1))
        tokens = x2.permute(0, 2, 3, 1).reshape(1, size * size, -1).to(dt).contiguous()
        chunk = min(size * size, 1 << 18)
        tok = tokens[:, :chunk]

        def enc_fn():
            return encode_region(fw, image, lo, hi, (0, 0), (size, size))

        def dec_fn():
            return decode(fw, tok.clone(), kvs)

        def backend(name, fn):
            from torch.nn.attention import SDPBackend, sdpa_kernel

            def run():
                with sdpa_kernel([getattr(SDPBackend, name)]):
                    return fn()

            return run

        cases = {
            "encode": enc_fn,
            "encode (PyTorch)": plain(enc_fn),
            "conv1": lambda: conv3x3_relu(fw, enc.permute(0, 3, 1, 2), 1, (1, 1, 1, 1)),
            "conv2": lambda: conv3x3_relu(fw, x1, 2, (1, 1, 1, 1)),
            f"decode {chunk} px": dec_fn,
            f"decode {chunk} px (PyTorch)": plain(dec_fn),
            f"clone {chunk} px": lambda: tok.clone(),
            "forward": lambda: model(lr, image),
            "forward (PyTorch kernels)": plain(lambda: model(lr, image)),
        }
        if cuda and size <= 448:
            try:
                g = graph_upsampler(model, lr, image)
                cases["forward (CUDA graph)"] = lambda: g(lr, image)
            except Exception as e:  # noqa: BLE001
                row["graph_error"] = repr(e)[:300]
        if cuda:
            for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
                cases[f"decode {chunk} px ({name})"] = backend(name, dec_fn)
        row["ms"] = timed(cases, dev, reps)
        if cuda and size == max(sizes):
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                model(lr, image)
                torch.cuda.synchronize()
            row["profile"] = prof.key_averages().table(sort_by="cuda_time_total", row_limit=20)
            print(row["profile"])
            with profile(
                activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True
            ) as prof:
                dec_fn()
                torch.cuda.synchronize()
            row["decode_profile"] = prof.key_averages(group_by_input_shape=True).table(
                sort_by="cuda_time_total",
                row_limit=25,
                max_name_column_width=40,
                max_shapes_column_width=90,
            )
            print(row["decode_profile"])
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out[str(size)] = row
        print(size, json.dumps(row["ms"]), flush=True)
        if cuda:  # whether the Triton kernels passed their self-test (on the first forward)
            out["machine"]["triton_kernels"] = kernel_state(dev)
        out["machine"]["load_average_end"] = load_average()  # as of the last size
        write_json(a.json, out)  # atomic: a run cut short keeps the last complete file


if __name__ == "__main__":
    main()
