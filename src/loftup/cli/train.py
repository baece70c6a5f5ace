"""``loftup train``: a config and its overrides in, :func:`loftup.train.train` run, its
checkpoint said; the library's log lines printed beside the progress bars."""

from __future__ import annotations

import contextlib
import os
import sys


def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an upsampler (stage 1 or 2); under torchrun, on several processes",
        description="Train LoftUp with the paper's two-stage recipe. Configs: a YAML path or a "
        "packaged name (stage1_sa1b, stage2_sa1b, stage1_cpu, stage2_cpu); then key=value "
        "overrides with dotted keys, e.g. data.root=/data/sa1b optim.lr=3e-4.",
    )
    p.add_argument("--stage", type=int, choices=(1, 2), help="1 or 2 (must match the config)")
    p.add_argument("--config", default=None, help="YAML file or packaged config name")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint.pt")
    p.add_argument("--data", metavar="ROOT", help="shorthand for data.root=ROOT")
    p.add_argument("--masks", choices=("sa1b", "sam", "superpixels"), help="data.masks")
    p.add_argument("--out", metavar="DIR", help="shorthand for log.out_dir=DIR")
    p.add_argument("--print-config", action="store_true", help="print the resolved config, exit")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    import logging

    import yaml

    from ..train import load_config, train
    from .common import say_done

    overrides = list(args.overrides)
    if args.masks is not None:
        overrides.append(f"data.masks={args.masks}")
    # --data and --out are paths as the shell gave them: not YAML (2024, yes, 'a #2') and not
    # expanded again (a $ or ~ left in one is the folder's own name)
    shorthands = {"data.root": args.data, "log.out_dir": args.out}
    paths = {key: value for key, value in shorthands.items() if value is not None}
    cfg = load_config(args.config, overrides, stage=args.stage, paths=paths)
    if args.print_config:
        # the config's own checks, as the run makes them first (not the files it names: a
        # config may be printed on a machine without the data or the init checkpoint)
        from ..train.config import check_backbone_fit, validate
        from ..train.config.paths import as_written

        validate(cfg)
        check_backbone_fit(cfg)
        if cfg.stage == 2:
            from ..train.build import with_init_architecture

            cfg = with_init_architecture(cfg)
        say_done(yaml.safe_dump(as_written(cfg.to_dict()), sort_keys=False).removesuffix("\n"))
        return 0
    with _log_beside_bars(logging.getLogger("loftup")):
        result = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") != "0":  # under torchrun: said once, by rank 0
        return 0
    lines = [f"checkpoint: {result.checkpoint}", f"upsampler:  {result.pretrained}"]
    if result.history:
        lines.insert(0, f"{result.steps} steps, final loss {result.history[-1]['loss']:.5g}")
    say_done("\n".join(lines))
    return 0


@contextlib.contextmanager
def _log_beside_bars(logger):
    """``logger``'s INFO and above on stderr as bare lines, each on a line of its own while a
    progress bar is drawn (tqdm takes the bars off, prints it and draws them again). Only
    ``logger`` (loftup's): the root logger at INFO would also print every HTTP request that
    the Hugging Face hub's client logs."""
    import logging

    from tqdm import tqdm

    class BesideBars(logging.Handler):  # tqdm 4.60 (our lower bound) redirects to stdout
        def emit(self, record: logging.LogRecord) -> None:
            try:
                tqdm.write(self.format(record), file=sys.stderr)
            except Exception:  # noqa: BLE001 - logging's contract: report, never raise
                self.handleError(record)

    handler = BesideBars()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
