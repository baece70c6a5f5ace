"""Time per training step of the released recipe, and its target's share of it (stage 1: the
mask-bicubic target; stage 2: the teacher's regions and their mask adjustment).

Stage 1 as published: DINOv2 ViT-S/14 (random weights of the real architecture, transformers),
224 px, the full LoftUp, 4 jitters, SA-1B-layout images with 150 masks each (the cap). Stage 2 at
a reduced setting (global view 224 only; the recipe also draws 336, 448 and 518). Prints a table
and writes JSON::

    python benchmarks/train_step.py --batch 8 --steps 2 --json train_step.json
    python benchmarks/train_step.py --device cuda --batch 8 --steps 10 --stage2

Synthetic data (written to a temporary folder): the time of a step does not depend on what the
pixels show, only on the sizes and the number of masks.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def write_images(root: Path, n: int, masks: int, height: int = 480, width: int = 640) -> Path:
    """SA-1B layout: JPEG + JSON with ``masks`` COCO RLE ellipses of varied sizes per image."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:height, :width]
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
            root / f"sa_{i}.jpg"
        )
        anns = []
        for k in range(masks):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry, rx = rng.uniform(0.02, 0.4, 2) * height
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            anns.append({"id": k, "segmentation": rle, "area": int(m.sum())})
        (root / f"sa_{i}.json").write_text(json.dumps({"image": {}, "annotations": anns}))
    return root


def random_dinov2_small(folder: Path) -> Path:
    """DINOv2 ViT-S/14's architecture with random weights, saved for ``backbone_weights``."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14,
        image_size=518, mlp_ratio=4, layerscale_value=1.0,
    )  # fmt: skip
    Dinov2Model(config).save_pretrained(folder)
    return folder


def measure(stage: int, args, data: Path, weights: Path, work: Path, init: str | None) -> dict:
    from loftup.train import load_config, train

    steps = args.warmup + args.steps
    overrides = [
        f"data.root={data}", f"backbone_weights={weights}", f"batch_size={args.batch}",
        f"max_steps={steps}", f"device={args.device}", f"log.out_dir={work / f's{stage}'}",
        "log.viz_every=0", "log.tensorboard=false", f"log.ckpt_every={steps}",
        f"data.num_workers={args.workers}",
    ]  # fmt: skip
    if stage == 2:
        overrides += [f"init={init}", "stage2.global_sizes=[224]"]
    cfg = load_config(f"stage{stage}_sa1b", overrides)
    result = train(cfg)
    rows = result.history[args.warmup :]
    step = float(np.median([r["seconds"] for r in rows]))
    target = float(np.median([r["target_seconds"] for r in rows]))
    data_wait = float(np.median([r["data_seconds"] for r in rows]))
    return {
        "stage": stage,
        "batch": args.batch,
        "steps_timed": len(rows),
        "seconds_per_step": step,
        "target_seconds": target,
        "target_share": target / step,
        "data_wait_seconds": data_wait,
        "checkpoint": str(result.checkpoint),
    }


def main(argv=None) -> int:
    import torch

    from loftup.atomic import write_json
    from loftup.bench import machine_info
    from loftup.bench.core import check_script_args, load_average

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=2, help="timed steps (after the warm-up)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--masks", type=int, default=150)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--stage2", action="store_true", help="also time stage 2 (global view 224)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    check_script_args(p, json_out=args.json, threads=args.threads)
    for flag, value, least, what in (
        ("--steps", args.steps, 1, "timed steps, after the warm-up"),
        ("--batch", args.batch, 1, "images per step"),
        ("--warmup", args.warmup, 0, "untimed steps first"),
        ("--workers", args.workers, 0, "data loader processes; 0: none"),
        ("--masks", args.masks, 0, "SAM masks per image"),
    ):
        if value < least:
            p.error(f"{flag} ({what}) must be at least {least}, got {value}")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n = args.batch * (args.warmup + args.steps)
        data = write_images(work / "sa1b", n, args.masks)
        weights = random_dinov2_small(work / "dinov2_vits14_random")
        rows = [measure(1, args, data, weights, work, None)]
        if args.stage2:
            rows.append(measure(2, args, data, weights, work, rows[0]["checkpoint"]))
    report = {
        "machine": machine_info(args.device, load_start),
        "masks_per_image": args.masks,
        "rows": rows,
    }
    # the target's time: stage 1's mask-bicubic, stage 2's teacher regions
    print(f"{'stage':>5} {'batch':>5} {'s/step':>8} {'target s':>15} {'share':>6}")
    for r in rows:
        print(
            f"{r['stage']:>5} {r['batch']:>5} {r['seconds_per_step']:>8.2f} "
            f"{r['target_seconds']:>15.3f} {100 * r['target_share']:>5.1f}%"
        )
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
