"""``loftup demo``: the whole method end to end in the scene world, offline, on a CPU.

1. scenes: training scenes at twice the demo size and scale 2 (stage 1 reads them resized to the
   demo size, stage 2 loads them whole and crops at native resolution: 2x zoom), and held-out
   scenes at the demo size (another seed);
2. stage 1 then stage 2 with ``loftup.train`` on the shipped backbone ``scenes_vit_p8``;
3. on the held-out scenes (:mod:`.heldout`): low-res features, each upsampler's
   full-resolution features, a linear probe per upsampler fitted on half the scenes and scored
   on the other half (mIoU, pixel accuracy, boundary F-score at 2 px), for nearest, bilinear,
   bicubic, JBU, stage 1 and stage 2;
4. a report folder (:mod:`.report`): ``report.md`` (table), ``report.json`` (numbers and
   settings) and ``figure.png`` (image | labels | PCA of each upsampler's features | its
   probe's prediction).
"""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from pathlib import Path

import torch

from ..data.scene_files import check_kept, read_world, write_scenes
from ..data.scenes import SceneConfig
from ..data.world_record import check_world, read_record
from ..paths import check_folder_output
from .config import DemoConfig
from .demo_out import (  # noqa: F401  (importable)
    RECORD,
    _options,
    check_begun,
    check_no_report,
    check_out,
)
from .demo_seconds import EVALUATION, SCENES, TRAINING, PhaseSeconds
from .heldout import load_val, lowres_features, pca_panels, score_all, upsampled_features
from .report import report_markdown, write_figure

METHODS = ("nearest", "bilinear", "bicubic", "jbu", "stage1", "stage2")


def make_scenes(
    cfg: DemoConfig, *, reuse: bool = False, progress: bool = True
) -> tuple[Path, Path]:
    """The demo's training and held-out scene folders, written under ``cfg.out`` (``reuse``:
    a folder already complete, with its ``world.json``, is kept as it is; ``progress``: a bar
    while each is written)."""
    return (
        make_train_scenes(cfg, reuse=reuse, progress=progress),
        make_val_scenes(cfg, reuse=reuse, progress=progress),
    )


def make_train_scenes(cfg: DemoConfig, *, reuse: bool = False, progress: bool = True) -> Path:
    cfg.check_train_scenes()
    return _scenes(cfg, "train", cfg.train_scenes, reuse, progress)


def make_val_scenes(cfg: DemoConfig, *, reuse: bool = False, progress: bool = True) -> Path:
    return _scenes(cfg, "val", cfg.val_scenes, reuse, progress)


#: How the demo's scene folders are told apart in its errors.
_PARTS = {"train": "training", "val": "held-out"}


def _world(part: str, size: int, seed: int) -> tuple[SceneConfig, int]:
    """The scene config and seed of the demo's ``part`` scenes, for its ``--size`` and
    ``--seed``: training scenes at twice the size and scale 2, held-out ones at the size and
    the next seed."""
    if part == "train":
        return SceneConfig(height=2 * size, width=2 * size, scale=2.0), seed
    return SceneConfig(height=size, width=size), seed + 1


def _scenes(cfg, part: str, count: int, reuse: bool, progress: bool) -> Path:
    """``OUT/scenes/PART``, written, or with ``reuse`` kept where it holds this very world
    complete: one of other options is refused, naming what differs, whatever the demo's record
    says (a folder of an earlier version has none)."""
    root = Path(cfg.out) / "scenes" / part
    config, seed = _world(part, cfg.size, cfg.seed)
    recorded = _read_record(root)  # read once, for the checks below
    _check_options(root, cfg, part, count, recorded)
    # what _check_options left: values of the world the demo's options do not set
    said_as = {"count": f"--{part}-scenes", "seed": f"seed of the {_PARTS[part]} scenes"}
    said_as["size"] = f"size of the {_PARTS[part]} scenes"
    if reuse and recorded is not None and recorded[0] is not None:  # a finished world
        check_world(root, config, count, seed=seed, said_as=said_as, recorded=recorded)
        check_kept((root, recorded[0].get("images")), *_other_kept(cfg, part))
        return root
    check_folder_output(root, "--out", inside=cfg.out)  # said as typed: not OUT/scenes/PART
    return write_scenes(
        root, config, count, seed=seed, progress=progress, said_as=said_as, recorded=recorded
    )


def _read_record(root: Path):
    """The records of the scene folder ``root`` (:func:`~loftup.data.world_record.read_record`),
    None where they cannot be read (broken, not this user's to read, or a file in the way:
    check_folder_output or check_world says which)."""
    try:
        return read_record(root)
    except (ValueError, PermissionError):
        return None


def check_scene_options(cfg: DemoConfig) -> None:
    """:func:`_check_options` of both scene folders, before the demo writes its record: one
    refused after it (scenes of an earlier version, of other options) left a record of the
    options refused, so that the command with the scenes' options was refused as "an
    interrupted demo", and with --resume as "begun with other options", those refused."""
    for part, count in (("train", cfg.train_scenes), ("val", cfg.val_scenes)):
        root = Path(cfg.out) / "scenes" / part
        _check_options(root, cfg, part, count, _read_record(root))


def _other_kept(cfg, part: str) -> list:
    """The other part's kept scene folder, ``[(root, names)]`` where it holds a finished world
    (else ``[]``): checked with this part's, so both lacking files are named in one rerun."""
    root = Path(cfg.out) / "scenes" / ("val" if part == "train" else "train")
    recorded = _read_record(root)  # (unreadable: its own turn says what is wrong with it)
    if recorded is None or recorded[0] is None:
        return []
    return [(root, recorded[0].get("images"))]


def _check_options(root: Path, cfg: DemoConfig, part: str, count: int, recorded) -> None:
    """A UsageError where ``root`` holds (finished or begun) the ``part`` scenes of a demo of
    other options, naming them as the command line gives them (``--seed 0 -> 3``): the world's
    own values (the held-out scenes' seed is --seed + 1, the training scenes' size twice
    --size) read as other numbers than those typed. ``recorded``: its records, as
    :func:`~loftup.data.world_record.read_record` read them (None: they cannot be read)."""
    from ..errors import LoftUpError, UsageError

    try:
        record = recorded[0] or recorded[1]
        height, width = record["config"]["height"], record["config"]["width"]
        seed = record["seed"] - (part == "val")
        size = height // 2 if part == "train" else height
        was = {"size": size, "seed": seed, f"{part}_scenes": record["count"]}
        if height != width or not all(isinstance(v, int) for v in was.values()):
            return
        # whether it is the world of those options, and of nothing else besides
        config = _world(part, size, seed)[0]
        check_world(root, config, record["count"], seed=record["seed"], recorded=recorded)
    except (LoftUpError, ValueError, TypeError, KeyError):
        return  # no demo's world: check_world names what differs, as the world holds it
    now = {"size": cfg.size, "seed": cfg.seed, f"{part}_scenes": count}
    diff = [f"--{k.replace('_', '-')} {was[k]} -> {now[k]}" for k in was if was[k] != now[k]]
    if diff:
        raise UsageError(
            f"{root} holds the {_PARTS[part]} scenes of other options ({'; '.join(diff)}); "
            "run with those to go on with them, or choose another --out or delete it"
        )


def stage_config(
    cfg: DemoConfig, stage: int, train_root: Path, out_dir: Path, init: Path | None = None
) -> dict:
    """The ``loftup.train`` config (a dict) of the demo's stage 1 or 2, run in ``out_dir``.

    ``init``: stage 2's starting point (stage 1's checkpoint). Experiments merge their switches
    (model, mask_noise, stage2.teacher_view, backbone, data...) into this dict.
    """
    common = {
        "backbone": "scenes_vit_p8",
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "device": "cpu",
        "data": {"root": str(train_root), "masks": "sa1b", "num_workers": 0},
    }
    # ckpt_every: the whole stage (the checkpoint its end writes), and one a minute besides, so
    # that a killed run (kill -9, a node lost) goes on with --resume from at most a minute ago
    log = {"log_every": 10, "viz_every": 10**9, "tensorboard": False, "ckpt_minutes": 1.0}
    if stage == 1:
        return {
            **common,
            "stage": 1,
            "max_steps": cfg.stage1_steps,
            "optim": {"name": "nadam", "lr": cfg.stage1_lr, "clip_steps": 0},
            "stage1": {"image_size": cfg.size},
            "log": {**log, "out_dir": str(out_dir), "ckpt_every": cfg.stage1_steps},
        }
    return {
        **common,
        "stage": 2,
        "init": str(init),
        "max_steps": cfg.stage2_steps,
        "optim": {"name": "adamw", "lr": cfg.stage2_lr, "weight_decay": 0.01, "clip_steps": 0},
        "stage2": {
            "load_size": 2 * cfg.size,
            "global_sizes": [cfg.size],
            "crop_align": 8,
            "affinity_max_side": cfg.size // 4,
        },
        "log": {**log, "out_dir": str(out_dir), "ckpt_every": cfg.stage2_steps},
    }


#: How a demo whose training run a signal stopped goes on (its stop line and stopped.txt): the
#: demo's later work (stage 2, the probes, the report) is still to do, stage 1 complete or not.
GO_ON = "run the same command with --resume to go on with the demo"


def train_stages(
    cfg: DemoConfig, train_root: Path, *, resume: bool = False, progress: bool = True
) -> tuple[Path, Path]:
    """Stage 1 then stage 2; returns the two exported upsampler folders. ``resume``: each
    stage goes on from its checkpoint, when it has one (a finished stage trains no more);
    ``progress``: each stage's bar (``log.progress``; its log lines are printed either way)."""
    from ..train.loop import train

    runs = Path(cfg.out) / "runs"
    # the demo's option, no log.out_dir; its folders named as in the demo's --out, as typed
    kw = {"resume": resume, "out_option": "--out", "out_inside": cfg.out, "go_on": GO_ON}
    one = stage_config(cfg, 1, train_root, runs / "stage1")
    one["log"]["progress"] = progress
    s1 = train(one, **kw)
    two = stage_config(cfg, 2, train_root, runs / "stage2", init=s1.checkpoint)
    two["log"]["progress"] = progress
    s2 = train(two, **kw)
    return s1.pretrained, s2.pretrained


def run_demo(cfg: DemoConfig, *, resume: bool = False, progress: bool = True) -> dict:
    """Run every step (see the module note); returns the numbers written to ``report.json``.

    ``resume``: go on with the interrupted demo in ``cfg.out`` (begun with the same options):
    its complete scene folders are kept and each training stage goes on from its checkpoint.
    Without it a folder holding an interrupted demo is refused (:func:`check_out`). A second
    demo on the same ``cfg.out`` is refused, naming the process running the first, before it
    writes anything there: ``OUT/.loftup-demo.lock`` is locked for the whole demo.
    ``progress``: the progress bars (scenes, training, upsampling, probes) on stderr."""
    from ..train.distributed import DistInfo
    from ..train.lock_refusal import DEMO
    from ..train.run_lock import check_not_held, lock_run_folder

    if Path(cfg.out).is_dir():  # a demo running there: not said to be an interrupted one
        check_not_held(Path(cfg.out), "--out", DEMO)
    check_out(cfg, resume)  # nothing written where refused
    with ExitStack() as held:  # a second demo on OUT is refused before it writes there
        lock_run_folder(Path(cfg.out), DistInfo(), held, "--out", DEMO)
        check_no_report(Path(cfg.out))  # (one that ended there since the look above,
        check_begun(cfg, resume)  # or began there, killed since: not written over)
        return _run_demo(cfg, resume, progress)


def _run_demo(cfg: DemoConfig, resume: bool, progress: bool = True) -> dict:
    """:func:`run_demo`, its ``--out`` checked and locked."""
    from .. import __version__
    from ..atomic import atomic_write_bytes, write_json
    from ..baselines import get_upsampler
    from ..errors import require
    from ..eval.report import run_info
    from ..featurizers import get_featurizer
    from ..hub import load_upsampler

    cfg.check_train_scenes()
    require(
        {
            "skimage": "the scenes",
            "pycocotools": "the scenes' SA-1B masks",
            "PIL": "the scenes' images",
            "yaml": "training's run record",
            "scipy": "the boundary F-score",
            "matplotlib": "the figure",
        }
    )  # all said at once, after the options and before the scenes
    out = Path(cfg.out)
    check_scene_options(cfg)  # refused before the record of these options is written
    out.mkdir(parents=True, exist_ok=True)
    clock = PhaseSeconds(out, _options(cfg), resume)  # the record, and the runs' seconds
    with clock.phase(SCENES):
        train_root, val_root = make_scenes(cfg, reuse=resume, progress=progress)
    with clock.phase(TRAINING):
        stage1, stage2 = train_stages(cfg, train_root, resume=resume, progress=progress)
    with clock.phase(EVALUATION):
        images, labels = load_val(val_root, "--out")  # the demo's own scenes
        classes = read_world(val_root).config.num_classes
        guidance, lr_feats = lowres_features(get_featurizer("scenes_vit_p8"), images)
        upsamplers = {name: get_upsampler(name) for name in METHODS[:4]}
        upsamplers["stage1"] = load_upsampler(stage1).eval()
        upsamplers["stage2"] = load_upsampler(stage2).eval()
        hr = upsampled_features(upsamplers, lr_feats, guidance, progress=progress)
        results = score_all(hr, labels, classes, cfg, progress=progress)  # the probes: minutes
    seconds = clock.seconds  # of every run of this demo: a --resume's added to those before

    half = len(images) // 2
    preds = {name: r.pop("pred") for name, r in results.items()}
    pcas = pca_panels(lr_feats[half:], {n: f[half:] for n, f in hr.items()})
    rows = min(3, len(images) - half)
    write_figure(out / "figure.png", images[half:], labels[half:], preds, pcas, classes, rows)
    report = {
        "results": results,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "seconds_lost": clock.lost,  # some run's lost (killed outright, an older record): the least
        "config": dataclasses.asdict(cfg),
        "threads": torch.get_num_threads(),
        "version": __version__,
        # what made these numbers (commit, torch, the libraries that move a score, date), as
        # an experiment's results.json keeps it: the README's table is compared against them
        "run": run_info("cpu"),
        "upsamplers": {"stage1": str(stage1), "stage2": str(stage2)},
    }
    text = report_markdown(cfg, results, len(images), seconds, clock.lost)
    atomic_write_bytes(out / "report.md", text.encode())
    write_json(out / "report.json", report)  # last: check_out reads it as "this demo is done"
    return report
