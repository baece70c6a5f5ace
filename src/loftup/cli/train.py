"""``loftup train``: a config and its overrides in, :func:`loftup.train.train` run, its
checkpoint said; the library's log lines printed beside the progress bars."""

from __future__ import annotations

import contextlib
import sys
from functools import partial

from ..errors import printable


def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an upsampler (stage 1 or 2); under torchrun, on several processes",
        description="Train LoftUp with the paper's two-stage recipe. Configs: a YAML path or a "
        "packaged name (stage1_sa1b, stage2_sa1b, stage1_cpu, stage2_cpu); then key=value "
        "overrides with dotted keys, e.g. data.root=/data/sa1b optim.lr=3e-4.",
    )
    p.add_argument("--stage", type=int, choices=(1, 2),
                   help="1 or 2, as the config says (default: the config's; 1 without "
                   "--config)")  # fmt: skip
    p.add_argument("--config", default=None,
                   help="YAML file or packaged config name (default: the paper's recipe for the "
                   "stage)")  # fmt: skip
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

    from ..ranks import is_main_process
    from ..train import load_config, train
    from .common import say_done
    from .outcome import said_before_a_stop

    _refuse_two_values(args)
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
        if cfg.stage == 2 and not cfg.init and not args.resume:  # no file to look for: said
            from ..train.preflight import check_init

            check_init(cfg.init)
        note = ""
        if cfg.stage == 2:
            from ..train.build import with_init_architecture

            cfg, note = _hub_init_architecture(with_init_architecture(cfg))
        text = yaml.safe_dump(as_written(cfg.to_dict()), sort_keys=False).removesuffix("\n")
        say_done(text.replace("\nmodel:\n", f"\n{note}model:\n", 1) if note else text)
        return 0
    with _log_beside_bars(logging.getLogger("loftup")):
        # the run is all this command does: under torchrun, once complete, what is left is
        # clean-up, which a SIGTERM to one rank no longer cuts short (failing the job)
        result = train(cfg, resume=args.resume, whole_command=True)
        if is_main_process():  # under torchrun: said once, by rank 0
            said_before_a_stop(partial(_complete_line, result))
            _say_result(result)
    return 0


def _say_result(result) -> None:
    from .common import say_done

    lines = [f"checkpoint: {result.checkpoint}", f"upsampler:  {result.pretrained}"]
    if result.history:
        lines.insert(0, f"{result.steps} steps, final loss {result.history[-1]['loss']:.5g}")
    say_done("\n".join(lines))


def _complete_line(result, signum: int) -> str:
    """What a stop ``signum`` after train() returned says first (as its ``result`` is said, as
    the command returns): the run is complete, ``final/`` and ``summary.json`` written
    ("terminated (SIGTERM)" alone read as a run to resume)."""
    from ..train.stop_lines import stop_line

    return stop_line(signum, result.steps, result.steps, result.checkpoint)


def _refuse_two_values(args) -> None:
    """A shorthand (--data, --out, --masks) and an override of its key with another value: the
    shorthand won silently (`--data /a data.root=/b` trained on /a), so one line names both."""
    from os.path import expanduser

    from ..errors import UsageError
    from ..train.config.loading import read_overrides

    given = read_overrides(args.overrides)  # (bad ones are said here as load_config says them)
    for flag, key in (("--data", "data.root"), ("--out", "log.out_dir"), ("--masks", "data.masks")):
        value = getattr(args, flag[2:])
        section, name = key.split(".")
        other = given.get(section, {}).get(name) if isinstance(given.get(section), dict) else None
        # a leading ~ is the home folder in both (README); any other text is compared as is
        if value is not None and other is not None and expanduser(str(other)) != expanduser(value):
            raise UsageError(
                f"{flag} {value} and the override {key}={other} disagree ({flag} is short for "
                f"{key}=...): give one of them"
            )


def _hub_init_architecture(cfg):
    """``(cfg, note)`` for --print-config of stage 2 whose ``init`` is no file or folder here:
    a hub id ``ORG/NAME[@REVISION]`` whose ``config.json`` the Hugging Face cache holds gives
    its architecture (read from the cache only: no download, offline or not; the run reads the
    cached copy first too); else ``cfg`` as it is and a YAML comment saying that its ``model``
    keys are not init's, which the run takes when it reads init ("" where init is here)."""
    import dataclasses
    from pathlib import Path

    if not cfg.init or Path(cfg.init).expanduser().exists():
        return cfg, ""
    from ..hub import hub_id

    repo = hub_id(cfg.init)  # None for a released name (no "/" in one)
    config = _cached_record(*repo) if repo is not None else None
    if config is None:
        return cfg, (
            f"# model: stage 2 trains the architecture of init {cfg.init}, taken when the run "
            "reads it (not read here: no file or folder here, nor an upsampler's config.json in "
            "the Hugging Face cache); the keys below are this config's, not necessarily init's\n"
        )
    from ..train.build import stage2_architecture
    from ..train.config import ModelConfig

    arch = stage2_architecture(cfg, config, f"init {cfg.init}")
    return dataclasses.replace(cfg, model=ModelConfig(**arch)), ""


def _cached_record(repo_id: str, revision: str | None):
    """The LoftUpConfig in hub repo ``repo_id``'s ``config.json`` as the Hugging Face cache
    holds it (no download), or None where it holds none or none readable (the run says why)."""
    import json
    from pathlib import Path

    from huggingface_hub import try_to_load_from_cache

    from ..errors import CheckpointError
    from ..hub.commits import full_commit
    from ..hub.record import CONFIG_NAME, read_record

    # a hash's start (ORG/NAME@a1b2c3d): the cache knows the commit by its whole hash
    path = try_to_load_from_cache(repo_id, CONFIG_NAME, revision=full_commit(repo_id, revision))
    if not isinstance(path, str):
        return None
    try:
        return read_record(json.loads(Path(path).read_text()), path, "")[0]
    except (OSError, ValueError, CheckpointError):
        return None


@contextlib.contextmanager
def _log_beside_bars(logger):
    """``logger``'s INFO and above on stderr as bare lines, each on a line of its own while a
    progress bar is drawn (tqdm takes the bars off, prints it and draws them again). Only
    ``logger`` (loftup's): the root logger at INFO would also print every HTTP request that
    the Hugging Face hub's client logs."""
    import logging

    from tqdm import tqdm

    class BesideBars(logging.Handler):  # tqdm before 4.63 redirected to stdout
        def emit(self, record: logging.LogRecord) -> None:
            try:
                tqdm.write(printable(self.format(record)), file=sys.stderr)  # a path's escape
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
