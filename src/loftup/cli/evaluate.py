"""``loftup eval TASK``: the options of each task into an :class:`loftup.eval.EvalConfig`,
then :func:`loftup.eval.evaluate`."""

from __future__ import annotations

import os
import sys

from .common import add_backbone_norm, say, say_lines, write_json


def add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate an upsampler on segmentation, depth, surface normals or DAVIS"
    )
    tasks = p.add_subparsers(dest="task", metavar="TASK")
    tasks.required = True
    helps = {
        "seg": "linear-probe semantic segmentation (cocostuff, cityscapes, ade20k, voc)",
        "depth": "linear-probe depth on NYUv2 (delta1-3, RMSE, AbsRel; also scale-invariant)",
        "normals": "linear-probe surface normals on NYUv2 (within 11.25/22.5/30 deg, RMSE)",
        "davis": "DAVIS 2017 val label propagation (J, F, J&F; their recall and decay)",
    }
    defaults = {"seg": "cocostuff", "depth": "nyuv2", "normals": "nyuv2", "davis": "davis2017"}
    for task, text in helps.items():
        t = tasks.add_parser(task, help=text, description=text)
        names = "cocostuff, cityscapes, ade20k or voc" if task == "seg" else "the task's only one"
        t.add_argument("--dataset", default=defaults[task],
                       help=f"{names} (default {defaults[task]})")  # fmt: skip
        t.add_argument("--root", required=True, help="the dataset's folder (see README)")
        t.add_argument(
            "--backbone", default="dinov2_vits14", help="featurizer (default dinov2_vits14)"
        )
        t.add_argument("--backbone-weights", default=None, help="hub id or local folder")
        add_backbone_norm(t, "imagenet")
        t.add_argument(
            "--upsampler",
            required=True,
            metavar="SOURCE",
            help="nearest | bilinear | bicubic | jbu | highres | released name | path | hub id "
            "ORG/NAME",
        )
        t.add_argument("--size", type=int, default=224, help="input side (default 224)")
        t.add_argument(
            "--limit", type=int, default=None, metavar="N", help="first N per split (default: all)"
        )
        t.add_argument(
            "--cache-dir",
            default=None,
            help="feature cache (default ~/.cache/loftup/features, or $LOFTUP_CACHE/features)",
        )
        t.add_argument("--no-cache", action="store_true", help="do not cache backbone features")
        t.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default: cpu)")
        t.add_argument(
            "--batch-size",
            type=int,
            default=8,
            help="images whose features are computed at once (default 8; lower it to fit memory"
            + ("" if task == "davis" else ": the probe's batch is --probe-batch-size")
            + ")",
        )
        t.add_argument(
            "--workers", type=int, default=0, help="DataLoader workers (default 0: in this process)"
        )
        t.add_argument("--seed", type=int, default=0, help="probe seed (default 0)")
        t.add_argument(
            "--highres-factor", type=int, default=None, help="input scale for highres (default 2)"
        )
        t.add_argument("--json", metavar="OUT", help="write the results as JSON ('-' for stdout)")
        t.add_argument(
            "--figure",
            metavar="PNG",
            help="figure path (default: the --json file with .png, else "
            "eval_TASK_DATASET_BACKBONE_UPSAMPLER.png in the current folder)",
        )
        t.add_argument("--no-progress", action="store_true", help="hide progress bars")
        if task != "davis":
            t.add_argument(
                "--probe-batch-size",
                type=int,
                default=None,
                metavar="N",
                help="images per probe training step (default 8, the protocol's)",
            )
            t.add_argument("--epochs", type=int, default=None, help="probe epochs (default 10)")
            t.add_argument(
                "--lr",
                type=float,
                default=None,
                help="probe learning rate (default: the protocol's, "
                f"{'1e-4' if task == 'seg' else '5e-4'})",
            )
        else:
            t.add_argument("--max-frames", type=int, default=None, metavar="N",
                           help="first N frames of each video (default: all)")  # fmt: skip
            t.add_argument("--topk", type=int, default=5,
                           help="neighbours a pixel takes labels from (default 5)")  # fmt: skip
            t.add_argument(
                "--context", type=int, default=7, help="previous frames used (default 7)"
            )
            t.add_argument("--temperature", type=float, default=0.1,
                           help="softmax temperature of the affinities (default 0.1)")  # fmt: skip
            t.add_argument(
                "--radius",
                type=int,
                default=12,
                help="neighbourhood in feature cells (default 12; 0: no limit)",
            )
            t.add_argument("--feature-scale", type=float, default=0.5,
                           help="feature map side / frame side (default 0.5)")  # fmt: skip
            t.add_argument(
                "--save-masks",
                metavar="DIR",
                help="write masks in DAVIS format (DIR: outside --root; new, empty, or an "
                "earlier run's, which is replaced whole)",
            )
        t.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    from ..eval import EvalConfig, PropagationConfig, evaluate
    from ..eval.features import default_cache_dir
    from ..eval.report import summary

    davis = args.task == "davis"
    cfg = EvalConfig(
        task=args.task,
        dataset=args.dataset,
        root=args.root,
        backbone=args.backbone,
        upsampler=args.upsampler,
        backbone_weights=args.backbone_weights,
        backbone_norm=args.backbone_norm,
        size=args.size,
        limit=args.limit,
        max_frames=args.max_frames if davis else None,
        cache_dir=None if args.no_cache else (args.cache_dir or str(default_cache_dir())),
        device=args.device,
        batch_size=args.batch_size,
        probe_batch_size=None if davis else args.probe_batch_size,
        epochs=None if davis else args.epochs,
        lr=None if davis else args.lr,
        workers=args.workers,
        seed=args.seed,
        highres_factor=2 if args.highres_factor is None else args.highres_factor,
        json=args.json,
        figure=args.figure,
        save_masks=args.save_masks if davis else None,
        progress=not args.no_progress,
    )
    if davis:
        cfg.propagation = PropagationConfig(
            feature_scale=args.feature_scale,
            n_last_frames=args.context,
            topk=args.topk,
            temperature=args.temperature,
            radius=args.radius,
        )
    cfg.check()  # a value out of range is the one line said, before this warning
    if args.highres_factor is not None and args.upsampler != "highres":
        say(
            f"warning: --highres-factor scales the input of --upsampler highres only; it does "
            f"nothing for {args.upsampler}",
            file=sys.stderr,
        )
    results = evaluate(cfg, report=lambda r: say_lines(summary(r)))  # before any file
    say(f"figure: {results['figure']}")
    if args.json == "-":  # evaluate wrote the file of any other --json
        write_json("-", results)
    elif args.json:
        say(f"wrote {os.path.expanduser(args.json)}")
    return 0
