"""The scene world's costs and its backbone's class information, in one run.

    PYTHONPATH=src python benchmarks/world.py --json world.json [--threads 1]

Prints and saves: scene generation time per image (generate + JPEG + SA-1B JSON + label PNG),
``scenes_vit_p8`` forward time at 128 px (batch 1 and 8), and the probes of
:mod:`loftup.world.probe` on fresh scenes in three views of the world: 128 px scenes (what the
backbone was trained on), 256 px scenes at scale 2 seen natively (what stage 2's zoomed crops
show), and the same 256 px scenes resized to 128 px (stage 2's global view).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
import torch.nn.functional as F

from loftup.atomic import write_json
from loftup.bench import machine_info
from loftup.bench.core import check_script_args, load_average
from loftup.data.scene_files import write_scenes
from loftup.data.scenes import SceneConfig
from loftup.featurizers import get_featurizer
from loftup.world.probe import features_of, probe_report, scene_batch


def time_generation(count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_scenes(tmp, SceneConfig(), count, seed=0, progress=False)
        return (time.perf_counter() - t) / count


def time_forward(model, batch: int, size: int = 128, repeats: int = 5) -> float:
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        model(x)
        t = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return (time.perf_counter() - t) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=64, help="fresh scenes per probe")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args()
    check_script_args(p, json_out=args.json, threads=args.threads)
    if args.count < 2:
        p.error(f"--count must be at least 2 (half the scenes fit a probe, half score it), got "
                f"{args.count}")  # fmt: skip
    if args.threads:
        torch.set_num_threads(args.threads)
    model = get_featurizer("scenes_vit_p8")
    out = {
        "machine": machine_info("cpu"),  # CPU, torch, threads, commit, date
        "count": args.count,
        "threads": torch.get_num_threads(),
        "generation_s_per_image_128": time_generation(50),
        "forward_s_batch1_128": time_forward(model, 1),
        "forward_s_batch8_128": time_forward(model, 8),
    }
    base = SceneConfig()
    images, labels = scene_batch(base, 1, range(args.count))
    out["probe_128"] = probe_report(features_of(model, images), labels, base.num_classes)

    big = SceneConfig(height=256, width=256, scale=2.0)
    images, labels = scene_batch(big, 1, range(args.count))
    out["probe_256_scale2_native"] = probe_report(
        features_of(model, images), labels, big.num_classes
    )
    small = F.interpolate(images, size=(128, 128), mode="bilinear", antialias=True)
    lab = labels[:, ::2, ::2].contiguous()
    out["probe_256_scale2_resized_128"] = probe_report(
        features_of(model, small), lab, big.num_classes
    )
    out["machine"]["load_average_end"] = load_average()  # machine_info read the start
    print(json.dumps(out, indent=2))
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
