"""``loftup experiment NAME``: one of the paper's open questions answered in the offline world
(:func:`loftup.experiments.run_experiment`)."""

from __future__ import annotations

from .common import write_json


def add_experiment(sub) -> None:
    from ..experiments import EXPERIMENTS
    from ..experiments.settings import QUICK

    p = sub.add_parser(
        "experiment",
        help="answer one of the paper's open questions, with the spread over seeds",
        description="Train and probe the variants of one question in the offline world (or on "
        "your data and backbone) and write report.md, results.json and PNG figures. See "
        "docs/experiments.md.",
    )
    p.add_argument("name", choices=EXPERIMENTS, metavar="NAME", help=", ".join(EXPERIMENTS))
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    quick = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items())
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run that writes every output, in a minute or a few: options "
                   f"not given take {quick} (--stage2-steps and --max-side where the "
                   "experiment has them; without --quick, the defaults said here)")  # fmt: skip
    p.add_argument(
        "--out",
        default=None,
        help="report folder (default experiments/NAME, or experiments/NAME-quick with --quick)",
    )
    p.add_argument("--json", metavar="OUT", help="also copy results.json here ('-' for stdout)")
    p.add_argument("--stage1-steps", type=int, default=None, help="default: the experiment's")
    p.add_argument("--stage2-steps", type=int, default=None, help="default: the experiment's")
    for flag, kind, what in (
        ("--size", int, "image size (multiple of 8)"),
        ("--train-scenes", int, "offline training scenes"),
        ("--val-scenes", int, "offline held-out scenes"),
        ("--batch-size", int, "training batch"),
        ("--stage1-lr", float, "stage-1 learning rate"),
        ("--stage2-lr", float, "stage-2 learning rate"),
        ("--probe-epochs", int, "linear-probe epochs"),
        ("--probe-lr", float, "linear-probe learning rate"),
    ):
        p.add_argument(flag, type=kind, default=None, help=f"{what} (default: the demo's)")
    p.add_argument("--backbone", default="scenes_vit_p8", help="featurizer (default scenes_vit_p8)")
    p.add_argument("--backbone-weights", default=None, help="its weights (path or hub id)")
    p.add_argument("--data", default=None, help="training images (SA-1B layout or images)")
    p.add_argument("--masks", default="sa1b", choices=["sa1b", "superpixels", "sam"],
                   help="stage-1 masks (default: sa1b, the dataset's own)")  # fmt: skip
    p.add_argument("--eval-root", default=None, help="held-out scenes folder or dataset root")
    p.add_argument("--eval-dataset", default=None, help="seg dataset name for --eval-root")
    p.add_argument("--eval-count", type=int, default=None,
                   help="held-out images, half fit the probes (default: --val-scenes; grid: 16 "
                   "at most; scenes in --eval-root: all)")  # fmt: skip
    p.add_argument(
        "--max-side", type=int, default=None, help="grid: largest output side scored (default 128)"
    )
    p.add_argument("--kinds", nargs="+", default=None, dest="noise_kinds",
                   help="mask-noise: kinds to train (default: all)")  # fmt: skip
    p.add_argument("--levels", nargs="+", type=float, default=None, dest="noise_levels",
                   help="mask-noise: levels above 0 (default: 0.25 0.5 1)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    # a default: argparse counts a '*' positional without one as required, and `loftup
    # experiment` alone said 'the following arguments are required: NAME, KEY=VALUE'
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="training config entries")  # fmt: skip
    p.set_defaults(func=_cmd_experiment)


def _cmd_experiment(args) -> int:
    import os
    from pathlib import Path

    from ..experiments import ExperimentSettings, run_experiment

    keys = ("seeds", "quick", "out", "stage1_steps", "stage2_steps", "size", "train_scenes",
            "val_scenes", "batch_size", "stage1_lr", "stage2_lr", "probe_epochs", "probe_lr",
            "backbone", "backbone_weights", "data", "masks", "eval_root", "eval_dataset",
            "eval_count", "max_side", "noise_kinds", "noise_levels", "overrides",
            "threads")  # fmt: skip
    settings = ExperimentSettings(
        args.name, progress=not args.no_progress, **{k: getattr(args, k) for k in keys}
    )
    from .common import say_done

    results = run_experiment(settings, json_path=None if args.json == "-" else args.json)
    out = Path(results["settings"]["out"])
    wrote = f"wrote {out}/report.md, results.json and {', '.join(results['figures'])}"
    if args.json and args.json != "-":  # the copy asked for is said too, as it was written
        wrote += f"; a copy of results.json in {os.path.expanduser(args.json)}"
    say_done((out / "report.md").read_text() + "\n" + wrote)  # a gone terminal: lost, status 0
    if args.json == "-":
        write_json("-", results)
    return 0
