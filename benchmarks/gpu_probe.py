# ruff: noqa: B023  (the timed lambdas run inside the loop iteration that made them)
"""Where the GPU forward spends its time, and what padding channels or compiling would buy.

One call, about a minute on an H200 (toy sizes on the CPU with ``--smoke``):

    python benchmarks/gpu_probe.py --json OUT.json [--smoke]

It times, in half precision, each step of the fast path separately (image encoding, the two
stem convolutions, the transformer decode) with the channel counts of the released models
(203 -> 404 -> 404, tokens of width 404) against the same steps with channels padded to
multiples of 8 (208 -> 408 -> 408), compiled decode, compiled whole forward, and writes the
profiler's top kernels of one eager forward.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from loftup import LoftUp  # noqa: E402
from loftup.bench.core import time_alternating  # noqa: E402
from loftup.compiled import compile_upsampler  # noqa: E402
from loftup.fastpath import decode, encode_kv, encode_region  # noqa: E402
from loftup.layers import image_minmax  # noqa: E402


def timed(cases, device, repeats):
    with torch.inference_mode():
        t = time_alternating(cases, device=device, warmup=2, repeats=repeats)
    return {k: round(v["best_s"] * 1e3, 4) for k, v in t.items()}


def unpadded(model, lr, image):
    model.align = 1
    try:
        return model(lr, image)
    finally:
        model.align = None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json", required=True)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    cuda = torch.cuda.is_available() and not a.smoke
    dev = "cuda" if cuda else "cpu"
    dt = torch.float16 if cuda else torch.bfloat16
    if cuda:
        torch.backends.cudnn.benchmark = True
    sizes = (224, 896, 2048) if cuda else (32,)
    reps = 10 if cuda else 1
    torch.manual_seed(0)
    model = LoftUp(dim=384).eval().to(dev, dt)
    fw = model.fused(dt, "direct", 1)  # unpadded rows
    fw8 = model.fused(dt, "direct", 8)  # rows mean-padded to multiples of 8 (a GPU's default)
    out = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "dtype": str(dt)}

    torch.set_grad_enabled(False)
    for size in sizes:
        t0 = time.perf_counter()
        row = {}
        lr = torch.randn(1, 384, 16, 16, device=dev, dtype=dt)
        image = torch.randn(1, 3, size, size, device=dev, dtype=dt)
        lo, hi = image_minmax(image.float())
        kvs = encode_kv(fw, lr)
        kvs8 = encode_kv(fw8, lr)
        enc = encode_region(fw, image, lo, hi, (0, 0), (size, size))  # (1, H, W, 203)
        x203 = enc.permute(0, 3, 1, 2)
        x208 = F.pad(enc, (0, 5)).permute(0, 3, 1, 2)
        w1, b1 = fw.conv1
        w1p = F.pad(w1, (0, 0, 0, 0, 0, 5, 0, 4))  # (408, 208, 3, 3)
        b1p = F.pad(b1, (0, 4))
        w2, b2 = fw.conv2
        w2p = F.pad(w2, (0, 0, 0, 0, 0, 4, 0, 4))
        b2p = F.pad(b2, (0, 4))
        y404 = F.conv2d(x203, w1, b1, padding=1)
        y408 = F.conv2d(x208, w1p, b1p, padding=1)
        n = size * size
        tokens = torch.randn(1, n, 404, device=dev, dtype=dt)
        tokens8 = torch.randn(1, n, 408, device=dev, dtype=dt)
        tok408 = torch.randn(n, 408, device=dev, dtype=dt)
        wq = fw.blocks[0].wq  # (416, 404)
        wq8 = F.pad(wq, (0, 4))
        cases = {
            "encode_region": lambda: encode_region(fw, image, lo, hi, (0, 0), (size, size)),
            "conv1 203->404 NHWC": lambda: F.conv2d(x203, w1, b1, padding=1),
            "conv1 208->408 NHWC": lambda: F.conv2d(x208, w1p, b1p, padding=1),
            "conv1 203->404 NCHW": lambda: F.conv2d(x203.contiguous(), w1, b1, padding=1),
            "conv2 404->404 NHWC": lambda: F.conv2d(y404, w2, b2, padding=1),
            "conv2 408->408 NHWC": lambda: F.conv2d(y408, w2p, b2p, padding=1),
            "encode_region padded": lambda: encode_region(fw8, image, lo, hi, (0, 0), (size, size)),
            "decode": lambda: decode(fw, tokens.clone(), kvs),
            "decode padded": lambda: decode(fw8, tokens8.clone(), kvs8),
            "gemm K=404": lambda: F.linear(tokens[0], wq),
            "gemm K=408": lambda: F.linear(tok408, wq8),
            "forward eager": lambda: model(lr, image),
            "forward eager unpadded": lambda: unpadded(model, lr, image),
        }
        row["ms"] = timed(cases, dev, reps)
        if cuda:
            try:
                cdec = torch.compile(lambda t: decode(fw8, t, kvs8), dynamic=False)
                cdec(tokens8.clone())
                row["ms"].update(
                    timed({"decode padded compiled": lambda: cdec(tokens8.clone())}, dev, reps)
                )
            except Exception as e:  # noqa: BLE001
                row["decode_compile_error"] = repr(e)[:300]
            try:
                if size > 896:
                    raise RuntimeError("skipped: compile time")
                mode = "reduce-overhead" if size <= 448 else "default"
                fn = compile_upsampler(model, device=dev, mode=mode)
                fn(lr, image)
                row["ms"].update(
                    timed({f"forward compiled ({mode})": lambda: fn(lr, image)}, dev, reps)
                )
            except Exception as e:  # noqa: BLE001
                row["forward_compile_error"] = repr(e)[:300]
        if cuda and size == 896:
            from torch.profiler import ProfilerActivity, profile

            with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    model(lr, image)
                torch.cuda.synchronize()
            row["profile"] = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
            print(row["profile"])
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out[str(size)] = row
        print(size, json.dumps(row["ms"]), flush=True)
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
