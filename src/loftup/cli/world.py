"""``loftup world scenes|backbone|probe``: the synthetic scene world, its small backbone and
the probe of a backbone's features."""

from __future__ import annotations

import json

from ..errors import check_threads
from .common import (
    picked_device,
    refuse_empty_folder,
    say,
    scene_size,
    use_threads,
    write_json,
)


def add_world(sub) -> None:
    p = sub.add_parser("world", help="the synthetic scene world: scenes, its backbone, probes")
    world = p.add_subparsers(dest="world_command", metavar="WHAT")
    world.required = True

    s = world.add_parser("scenes", help="write scenes in the SA-1B layout plus label PNGs")
    s.add_argument("--out", required=True, help="folder to write (see README for its layout)")
    s.add_argument("--count", type=int, default=100, help="number of scenes (default 100)")
    s.add_argument(
        "--seed", type=int, default=0, help="world seed, another gives other scenes (default 0)"
    )
    s.add_argument("--start", type=int, default=0, help="index of the first scene (default 0)")
    s.add_argument("--size", type=scene_size, default=(128, 128), metavar="N|HxW",
                   help="scene size (default 128)")  # fmt: skip
    s.add_argument("--classes", type=int, default=8, help="texture classes, 2-12 (default 8)")
    s.add_argument(
        "--scale", type=float, default=1.0, help="pixel scale of textures and lines (default 1)"
    )
    s.add_argument(
        "--texture-scale",
        type=float,
        nargs=2,
        default=(1.0, 1.0),
        metavar=("MIN", "MAX"),
        help="range of each region's texture scale (default: 1 1)",
    )
    s.add_argument(
        "--texture-contrast",
        type=float,
        nargs=2,
        default=(0.12, 0.25),
        metavar=("MIN", "MAX"),
        help="RGB distance between a region's two texture colours (default: 0.12 0.25)",
    )
    s.add_argument(
        "--quality", type=int, default=95, help="JPEG quality, 4:4:4 chroma (default 95)"
    )
    s.set_defaults(func=_cmd_world_scenes)

    b = world.add_parser("backbone", help="train the small backbone scenes_vit_p8")
    b.add_argument(
        "--out", required=True, help="folder for model.safetensors, config.json and metrics.json"
    )
    b.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    b.add_argument("--batch-size", type=int, default=32, help="scenes per step (default 32)")
    b.add_argument(
        "--scenes", type=int, default=3000, help="training scenes in the pool (default 3000)"
    )
    b.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    b.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default: cpu)")
    b.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    b.set_defaults(func=_cmd_world_backbone)

    q = world.add_parser("probe", help="class information of a backbone's features, by region")
    q.add_argument(
        "--weights", default=None, help="folder from `world backbone` (default: shipped)"
    )
    q.add_argument(
        "--count", type=int, default=64, help="fresh scenes, half fit, half score (default 64)"
    )
    q.add_argument("--seed", type=int, default=1, help="seed of the fresh scenes (default 1)")
    q.add_argument("--size", type=scene_size, default=(128, 128), metavar="N|HxW",
                   help="scene size (default 128)")  # fmt: skip
    q.add_argument("--json", metavar="OUT", help="also write the numbers as JSON ('-' for stdout)")
    q.set_defaults(func=_cmd_world_probe)
    for command in (s, b, q):
        command.add_argument("--no-progress", action="store_true", help="hide the progress bar")


#: The options of ``world scenes`` by the names of the values they set, for its errors.
SCENE_OPTIONS = {
    "count": "--count",
    "seed": "--seed",
    "start": "--start",
    "quality": "--quality",
    "size": "--size",
    "num_classes": "--classes",
    "scale": "--scale",
    "texture_scale": "--texture-scale",
    "texture_contrast": "--texture-contrast",
}


def _cmd_world_scenes(args) -> int:
    from ..data.scene_files import write_scenes
    from ..data.scenes import SceneConfig

    refuse_empty_folder(args.out, "--out")
    config = SceneConfig(  # every option checked (then write_scenes's) before a file is written
        height=args.size[0],
        width=args.size[1],
        num_classes=args.classes,
        scale=args.scale,
        texture_scale=tuple(args.texture_scale),
        texture_contrast=tuple(args.texture_contrast),
        said_as=SCENE_OPTIONS,
    )
    out = write_scenes(
        args.out,
        config,
        args.count,
        seed=args.seed,
        start=args.start,
        quality=args.quality,
        progress=not args.no_progress,
        said_as=SCENE_OPTIONS,
    )
    say(f"wrote {args.count} scenes to {out} (classes: {', '.join(config.class_names)})")
    return 0


def _cmd_world_backbone(args) -> int:

    from ..world.backbone import BackboneRecipe, train_backbone

    check_threads(args.threads)
    refuse_empty_folder(args.out, "--out")
    recipe = BackboneRecipe(  # checks its values before anything is generated
        steps=args.steps,
        batch_size=args.batch_size,
        scenes=args.scenes,
        seed=args.seed,
        said_as={
            name: f"--{name.replace('_', '-')}"
            for name in ("steps", "batch_size", "scenes", "seed")
        },
    )
    use_threads(args.threads)
    # train_backbone checks --out (a file, under one, or unwritable) before any step trains
    metrics = train_backbone(
        recipe, args.out, device=picked_device(args.device), progress=not args.no_progress
    )
    print(json.dumps(metrics, indent=2))
    say(f"wrote {args.out}")
    return 0


def _cmd_world_probe(args) -> int:
    from ..data.scenes import SceneConfig
    from ..featurizers.scenes_vit import load_backbone
    from ..world.probe import measure_backbone

    model = load_backbone(args.weights).eval()
    config = SceneConfig(height=args.size[0], width=args.size[1], said_as=SCENE_OPTIONS)
    report = measure_backbone(
        model,
        config,
        seed=args.seed,
        count=args.count,
        said_as=SCENE_OPTIONS,
        progress=not args.no_progress,
    )
    # which backbone the numbers are of: the JSON of a --weights folder read as the shipped one's
    report["weights"] = args.weights or "scenes_vit_p8 (shipped)"
    for key, value in report.items():
        say(f"{key:<34} {value:.4f}" if isinstance(value, float) else f"{key:<34} {value}")
    if args.json:
        write_json(args.json, report)
    return 0
