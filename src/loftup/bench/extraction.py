"""``loftup upsample``'s own loop timed end to end: reading, computing and writing, one after
the other or overlapped with writer threads, next to the pipeline's compute alone.

Written for CUDA; runs on the CPU too (tiny sizes), as :mod:`loftup.bench.gpu` does.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .backbones import dinov2_config
from .core import sync
from .precision import DTYPES


def extraction(
    size=448,
    *,
    count=8,
    arch="vits14",
    dtype="float16",
    writers=(1, 2, 4),
    fmt="pt",
    device="cuda",
) -> dict:
    """``loftup upsample``'s own loop (:func:`loftup.extract.run`) over ``count`` JPEG files of
    ``size`` x ``size``, random ViT-S/14 (transformers, loaded from a local folder as real
    weights are) + LoftUp in ``dtype``, features stored in ``dtype``: images per second of the
    pipeline alone (images in memory, nothing written), of reading, computing and writing one
    after the other (the loop before it overlapped them), of the overlapped loop with each
    number of writer threads, and with every output streamed into its file tile by tile (what
    ``--stream-above`` does for large ones)."""
    import shutil
    import tempfile
    from pathlib import Path

    from PIL import Image

    from ..api import load_pipeline
    from ..extract import collect_inputs, run
    from ..featurizers import get_featurizer
    from ..featurizers.hf import from_transformers
    from ..io import load_image_tensor
    from ..model import LoftUp
    from ..outputs import save_features

    (Dinov2Model,) = from_transformers("Dinov2Model")

    dt = DTYPES[dtype]
    with tempfile.TemporaryDirectory(prefix="loftup-extract-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        Dinov2Model(dinov2_config(arch)).save_pretrained(tmp / "backbone")
        featurizer = get_featurizer("dinov2_vits14", weights=tmp / "backbone")
        pipe = load_pipeline(
            LoftUp(dim=featurizer.dim), backbone=featurizer, device=device, dtype=dt
        )
        (tmp / "in").mkdir()
        g = torch.Generator().manual_seed(0)
        for i in range(count):  # smooth colour fields: JPEGs of a photo's size, not of noise
            field = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(size, size))
            pixels = (field[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp / "in" / f"im{i:03d}.jpg", quality=90)
        jobs, _ = collect_inputs([str(tmp / "in")])
        images = [load_image_tensor(j.path)[None] for j in jobs]
        for x in images[:2]:  # warm-up: cuDNN's algorithm search, Triton's compilation
            pipe(x)
        sync(device)

        def timed(fn) -> float:
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            return count / (time.perf_counter() - t0)

        def serial(out: Path) -> None:
            out.mkdir()
            for job in jobs:
                _, hr = pipe(load_image_tensor(job.path)[None])
                save_features(out / f"{job.stem}.{fmt}", hr[0], fmt, dt)

        rates = {"compute_only": timed(lambda: [pipe(x) for x in images])}
        rates["serial"] = timed(lambda: serial(tmp / "serial"))
        file_bytes = (tmp / "serial" / f"{jobs[0].stem}.{fmt}").stat().st_size
        shutil.rmtree(tmp / "serial")
        for n in writers:
            out = tmp / f"writers{n}"
            out.mkdir()
            rates[f"writers_{n}"] = timed(
                lambda out=out, n=n: run(jobs, pipe, out, fmt=fmt, save_dtype=dt, writers=n)
            )
            shutil.rmtree(out)
        out = tmp / "streamed"  # every output tile by tile into its memory-mapped file
        out.mkdir()
        rates["streamed_writers_2"] = timed(
            lambda: run(jobs, pipe, out, fmt=fmt, save_dtype=dt, writers=2, stream_above=0)
        )
    return {
        "size": size,
        "count": count,
        "backbone": arch,
        "dtype": dtype,
        "file_mb": file_bytes / 1e6,
        "images_per_s": rates,
    }
