"""``loftup demo``'s folder (``--out``) before any work: what it holds checked against this
demo (:func:`check_out`: a report never overwritten, an interrupted demo gone on with only under
``--resume`` and with the options it began with, recorded in :data:`RECORD`; each file a
resume of its training runs reads, read as it will be (a checkpoint's tensors not held in
memory, read once for their checksums: its training loads it), each checkpoint of the kind of
run its stage trains, and each stage's folder as its training checks it, its lock not held by
another run), nothing written."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..escaping import printable
from ..paths import check_folder_output
from .config import DemoConfig

#: The demo's options, written to ``OUT`` before anything else: ``--resume`` goes on only with
#: the options a demo began with.
RECORD = "demo.json"


def _options(cfg: DemoConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "out"}


def check_out(cfg: DemoConfig, resume: bool = False) -> None:
    """A :class:`UsageError` unless ``cfg.out`` may take this demo (nothing is written):
    a folder with a report is never overwritten; one holding an interrupted demo (its options
    record or a training checkpoint) is gone on with only when ``resume`` is set, and only
    with the options it began with; one of an earlier version, with training runs and no
    record of their options, is not gone on with (its complete scene folders are, where their
    ``world.json`` says these options, :func:`make_scenes`)."""
    from ..train.earlier import check_resume
    from ..train.resuming import check_resumable

    out = Path(cfg.out)
    check_folder_output(str(out), "--out")  # a file, under one, or in a folder taking no files
    check_no_report(out)
    check_begun(cfg, resume)
    for stage in (1, 2):  # before stage 1 trains (on), each stage's folder as it will check it
        _check_stage_folder(cfg, stage)
    if not resume:
        return
    # before stage 1 trains on, each stage's run: each file its resume reads, read as it will
    # read it, then its checkpoint's run, of the kind of the stage's (none: it starts afresh)
    for stage in (1, 2):
        run = out / "runs" / f"stage{stage}"
        ckpt = check_resume(run, "--out")
        if ckpt is not None:
            check_resumable(ckpt, _stage_config(cfg, stage), run / "checkpoint.pt", "--out")
        del ckpt  # (its tensors not held in memory: unmapped before the next stage's is read)


def check_begun(cfg: DemoConfig, resume: bool) -> None:
    """A :class:`UsageError` where ``cfg.out`` holds an interrupted demo (its options record,
    or a training checkpoint) and ``resume`` is not set, or one begun with other options, or
    by an earlier version of loftup; :func:`check_out`'s look, made again by the demo once it
    holds the lock of its --out (a demo begun there meanwhile, killed since, was written over)."""
    from ..atomic import read_json_object
    from ..errors import UsageError
    from ..train.checkpoint import has_checkpoint

    out = Path(cfg.out)
    checkpoint_files = [out / "runs" / stage / "checkpoint.pt" for stage in ("stage1", "stage2")]
    # a checkpoint that is a link to nothing refused (stage 2 was trained afresh over it)
    begun = (out / RECORD).is_file() or any(has_checkpoint(c, "--out") for c in checkpoint_files)
    if begun and not resume:
        raise UsageError(
            f"{out} holds an interrupted demo; run the same command with --resume to go on, "
            "or choose another --out"
        )
    try:
        saved = read_json_object(out / RECORD, another="--out") if resume else None
    except ValueError as e:
        raise UsageError(f"--resume: {printable(str(e))}; choose another --out") from None
    if resume and saved is None and (out / "runs").is_dir():
        raise UsageError(
            f"--resume: {out} holds a demo begun by an earlier version of loftup, which did not "
            f"record its options ({RECORD}): its training cannot be checked against these; "
            "choose another --out, or delete it to run the demo afresh"
        )
    if saved is not None:
        wanted = _options(cfg)
        diff = [k for k in wanted if saved.get(k) != wanted[k]]
        if diff:
            was = " ".join(f"--{k.replace('_', '-')} {saved.get(k)}" for k in diff)
            raise UsageError(
                f"{out} holds a demo begun with other options ({was}); resume it with those, "
                "or choose another --out"
            )


def _check_stage_folder(cfg: DemoConfig, stage: int) -> None:
    """What the training of the demo's ``stage`` refuses of its folder before it trains,
    refused here, writing nothing (a file made to see that files can be made is removed): a
    file, a link to nothing or a folder taking no files in its place (or its ``viz/``), and
    its lock held by another run (looked at, not taken)."""
    from ..errors import UsageError
    from ..train.preflight import check_out_dir
    from ..train.run_folder import subfolder_problem
    from ..train.run_lock import check_not_held

    run = Path(cfg.out) / "runs" / f"stage{stage}"
    check_out_dir(str(run), "--out", inside=cfg.out)
    problem = subfolder_problem(_stage_config(cfg, stage), run, "--out", inside=cfg.out)
    if problem is not None:
        raise UsageError(problem)
    if run.is_dir():
        check_not_held(run, "--out")


#: The files the demo writes into ``OUT`` after its :data:`RECORD` (``report.json`` last).
OUTPUTS = ("report.md", "figure.png", "report.json")


def check_no_report(out: Path) -> None:
    """A :class:`UsageError` where ``out`` holds a report (a demo's, or an experiment's, whose
    report.md a demo would overwrite), or a file of a demo's output name that no demo wrote
    (there is no :data:`RECORD`, which a demo writes before any of them): a user's own
    report.md or figure.png was overwritten without a word."""
    from ..errors import UsageError

    if (out / "report.json").exists():
        raise UsageError(f"{out} already holds a demo report; choose another --out")
    if (out / "results.json").exists():  # its report.md would be overwritten
        raise UsageError(f"{out} holds the report of a `loftup experiment`; choose another --out")
    record = out / RECORD
    if os.path.islink(record) and not record.exists():  # no demo's record: none it began
        raise UsageError(
            f"{record} is a link to {os.readlink(record)}, which is not there, so no demo's "
            f"record; remove the link, or choose another --out"
        )
    if record.is_file():  # a demo's own outputs (as check_begun sees it): it says whether to go on
        return
    for name in OUTPUTS:  # a link (to nothing, too) or a folder of that name as well
        if os.path.lexists(out / name):
            raise UsageError(
                f"{out / name} is not a demo's (there is no {RECORD} in {out}), and the demo "
                f"would overwrite it; choose another --out, or move {name} away"
            )


def _stage_config(cfg: DemoConfig, stage: int):
    """The TrainConfig of the demo's ``stage`` (1 or 2), as :func:`.demo.train_stages` trains
    it: a checkpoint of another kind of run (another batch_size, backbone...) is refused up
    front, where stage 1 was resumed before stage 2's was refused."""
    from ..train import load_config
    from .demo import stage_config

    out = Path(cfg.out)
    runs, init = out / "runs", out / "runs" / "stage1" / "checkpoint.pt"
    return load_config(
        stage_config(cfg, stage, out / "scenes" / "train", runs / f"stage{stage}", init)
    )
