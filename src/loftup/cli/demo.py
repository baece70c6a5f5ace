"""``loftup demo``: the whole method end to end, offline, on the CPU
(:func:`loftup.world.demo.run_demo`)."""

from __future__ import annotations

from ..errors import check_threads
from ..escaping import printable


def add_demo(sub) -> None:
    from dataclasses import fields

    from ..world.config import DemoConfig

    p = sub.add_parser("demo", help="the whole method end to end, offline, on the CPU")
    p.add_argument("--out", default="loftup_demo", help="report folder (default: loftup_demo)")
    what = {
        "size": "image side of scenes and training (multiple of 8)",
        "train_scenes": "training scenes",
        "val_scenes": "held-out scenes (half fit the probes)",
        "stage1_steps": "stage-1 training steps",
        "stage2_steps": "stage-2 training steps",
        "batch_size": "training batch",
        "stage1_lr": "stage-1 learning rate (NAdam)",
        "stage2_lr": "stage-2 learning rate (AdamW)",
        "probe_epochs": "linear-probe epochs",
        "probe_lr": "linear-probe learning rate",
        "seed": "seed of scenes, training and probes",
    }
    for f in fields(DemoConfig):
        if f.name != "out":
            flag = "--" + f.name.replace("_", "-")
            p.add_argument(flag, type=type(f.default), default=f.default, dest=f.name,
                           help=f"{what[f.name]} (default {f.default})")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on with an interrupted demo in --out (the same options): its scenes are kept "
        "and each training stage goes on from its checkpoint",
    )
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from dataclasses import fields
    from pathlib import Path

    from ..world.demo import DemoConfig, run_demo
    from .common import refuse_empty_folder, use_threads

    check_threads(args.threads)
    refuse_empty_folder(args.out, "--out")
    cfg = DemoConfig(**{f.name: getattr(args, f.name) for f in fields(DemoConfig)})  # checked
    use_threads(args.threads)
    if args.resume:
        cfg.check_train_scenes()  # options that cannot run: said alone, not after the warning
        _say_if_nothing_to_resume(cfg)
    # checks the folder and the packages before any work
    run_demo(cfg, resume=args.resume, progress=not args.no_progress)
    from .common import say_done

    wrote = f"wrote {cfg.out}/report.md, report.json and figure.png"
    say_done((Path(cfg.out) / "report.md").read_text() + "\n" + wrote)  # a gone terminal: lost
    return 0


def _say_if_nothing_to_resume(cfg) -> None:
    """A one-line warning where ``--resume`` finds no demo begun in ``--out`` (a mistyped
    folder): the demo starts afresh there, which took minutes to notice. The folder's own
    refusals are said first, as the demo says them. A begun demo is left to the demo's own
    check (its training checkpoints read once, not here too)."""
    import os
    import warnings
    from pathlib import Path

    from ..world.demo import RECORD, check_out

    out = Path(cfg.out)
    # os.path: one this user may not look into is no begun demo here: check_out says why
    if any(os.path.exists(p) for p in (out / RECORD, out / "runs", out / "scenes")):
        return
    check_out(cfg, resume=True)
    said = f"--resume: {out} holds no demo to go on with; starting one afresh"
    warnings.warn(printable(said), stacklevel=2)
