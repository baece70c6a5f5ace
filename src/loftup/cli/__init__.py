"""The ``loftup`` command line: parse arguments, call the library, print.

Every command is a function of the parsed arguments that returns an exit status; ``main(argv)``
is what tests call in-process, ``run()`` is the console script. Errors meant for the user
(:class:`loftup.LoftUpError`) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
import threading
import warnings

from ..errors import LoftUpError, Terminated, check_threads, terminate

# -- info -------------------------------------------------------------------------------------


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="list the released checkpoints and which are cached")
    p.add_argument(
        "--json", metavar="OUT", help="also write the list as JSON to OUT ('-' for stdout)"
    )
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from .. import __version__
    from ..hub import RELEASED, cached_path

    rows = []
    for c in RELEASED.values():
        path = cached_path(c.name)
        rows.append(
            {
                "name": c.name,
                "backbone": c.backbone,
                "dim": c.dim,
                "grid": f"{c.grid}x{c.grid}",
                "hub": f"{c.repo_id}/{c.filename}",
                "cached": path is not None,
                "path": str(path) if path else None,
            }
        )
    print(f"loftup {__version__}: released upsamplers (grid = low-res grid at 224 px)")
    print(f"{'name':<20} {'backbone':<19} {'C':>4} {'grid':>6}  {'cached':<7} hub file")
    for r in rows:
        print(
            f"{r['name']:<20} {r['backbone']:<19} {r['dim']:>4} {r['grid']:>6}  "
            f"{'yes' if r['cached'] else 'no':<7} {r['hub']}"
        )
    if args.json:
        _write_json(args.json, rows)
    return 0


# -- download ---------------------------------------------------------------------------------


def _add_download(sub) -> None:
    p = sub.add_parser("download", help="fill the Hugging Face cache for offline use")
    p.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="released upsampler names (their backbones come too), backbone names, SAM for "
        "training's masks (sam_vit_base, sam_vit_large, sam_vit_huge or a hub id ORG/NAME), or "
        "'all'",
    )
    p.add_argument(
        "--no-backbone", action="store_true", help="upsamplers only, not their backbones"
    )
    p.set_defaults(func=_cmd_download)


def _cmd_download(args) -> int:
    from ..data.sam import SAM_WEIGHTS, resolve_sam
    from ..errors import UnknownNameError, UsageError
    from ..featurizers import FEATURIZERS, hf, resolve
    from ..hub import ALIASES, RELEASED, download

    names = list(RELEASED) if args.names == ["all"] else args.names
    for name in names:
        if name.startswith((".", "/", "~")) or name.count("/") > 1:  # hub ids are ORG/NAME
            raise UsageError(
                f"{name!r} is a local path: it needs no download (pass it where the weights are "
                "asked for); download takes released upsamplers, backbones and SAM hub ids ORG/NAME"
            )
        if name in SAM_WEIGHTS or "/" in name:  # SAM, for training's data.masks=sam
            print(f"{name}: {resolve_sam(name, downloading=True)}")
            continue
        try:
            resolve(name)
        except UnknownNameError:
            if ALIASES.get(name, name) not in RELEASED:
                raise UnknownNameError(
                    f"unknown name {name!r}: neither a released upsampler "
                    f"({', '.join(RELEASED)}), a backbone ({', '.join(sorted(FEATURIZERS))}) nor "
                    f"SAM ({', '.join(SAM_WEIGHTS)} or a hub id ORG/NAME)"
                ) from None
        if ALIASES.get(name, name) in RELEASED:
            ckpt = RELEASED[ALIASES.get(name, name)]
            print(f"{ckpt.name}: {download(ckpt.name)}")
            if args.no_backbone:
                continue
            name = ckpt.backbone
        print(f"{name}: {hf.download(name)}")
    return 0


# -- bench ------------------------------------------------------------------------------------


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time and peak memory of LoftUp next to bilinear/bicubic")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 896], metavar="N",
                   help="square output sides to time (default: 224 448 896)")  # fmt: skip
    p.add_argument("--dim", type=int, default=384, help="feature channels C (default 384)")
    p.add_argument("--grid", type=int, default=16, help="low-res grid side h = w (default 16)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default: cpu)")
    p.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32"],
        metavar="DTYPE",
        choices=["float32", "bfloat16", "float16"],
        help="precisions to time (default: float32)",
    )
    p.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument("--repeats", type=int, default=2, help="timed calls per case (default 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--reference",
        metavar="PY",
        help="a stand-in of the paper's implementation to time alongside, e.g. "
        "benchmarks/reference_impl.py",
    )
    p.add_argument("--reference-max-size", type=int, default=448, metavar="N",
                   help="time the reference up to this side (default 448)")  # fmt: skip
    p.add_argument("--tile-size", type=int, default=None, metavar="N",
                   help="output tile side (default: per device)")  # fmt: skip
    p.add_argument("--chunk-size", type=int, default=None, metavar="N",
                   help="pixels decoded at once (default: per device)")  # fmt: skip
    p.add_argument(
        "--conv",
        default="auto",
        choices=["auto", "winograd", "direct", "direct_nchw"],
        help="stem convolutions (default: auto, the fastest for the device and precision)",
    )
    p.add_argument("--no-peak", action="store_true", help="skip measuring the matmul peak")
    p.add_argument(
        "--tf32",
        action="store_true",
        help="also time float32 with TF32 matrix products, ours and the reference (GPU)",
    )
    p.add_argument(
        "--graph-max-size",
        type=int,
        default=0,
        metavar="N",
        help="on a GPU, also time half precision replayed from a CUDA graph up to size N "
        "(default 0: none)",
    )
    p.add_argument(
        "--stream",
        type=int,
        default=None,
        metavar="N",
        help="also stream an N x N output to a memory-mapped .npy (time, memory)",
    )
    p.add_argument(
        "--suite",
        choices=["cpu", "gpu", "smoke"],
        help="run a whole suite (see loftup.bench.suite) instead of one table",
    )
    p.add_argument(
        "--only",
        metavar="A,B",
        help="with --suite: run just these sections (comma-separated; see loftup.bench.suite)",
    )
    p.add_argument("--json", metavar="OUT", help="write the figures as JSON ('-' for stdout)")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args) -> int:
    import torch

    from ..bench import bench_forward, format_table, load_reference_class
    from ..bench.forward import check_settings
    from ..bench.scale import check_stream_size

    args.device = _picked_device(args.device)
    check_threads(args.threads)
    if args.only and not args.suite:
        raise LoftUpError("--only picks sections of a suite; add --suite cpu|gpu|smoke")
    if args.stream is not None:
        check_stream_size(args.stream)  # --stream runs last: said now, not after the table
    if not args.suite:
        check_settings(
            args.sizes, dim=args.dim, grid=args.grid, batch=args.batch, repeats=args.repeats,
            warmup=args.warmup, tile_size=args.tile_size, chunk_size=args.chunk_size,
            dtypes=args.dtypes,
        )  # fmt: skip
    reference = load_reference_class(args.reference) if args.reference else None
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.suite:
        from ..bench.suite import run_suite, summary

        report = run_suite(  # checks the sections before anything runs
            args.suite,
            device=None if args.device == "cpu" and args.suite != "cpu" else args.device,
            reference=reference,
            stream_size=args.stream,
            # each section's figures saved as they come; stdout gets the whole report once
            on_section=(lambda r: _write_json(args.json, r))
            if args.json and args.json != "-"
            else None,
            only=args.only.split(",") if args.only else None,
        )
        print(summary(report))
    else:
        from ..bench.core import timing_mode

        timing_mode(args.device)  # as the suites: cuDNN's benchmark mode on a GPU
        report = bench_forward(
            args.sizes,
            dim=args.dim,
            grid=args.grid,
            device=args.device,
            dtypes=tuple(args.dtypes),
            batch=args.batch,
            repeats=args.repeats,
            warmup=args.warmup,
            reference=reference,
            reference_max_size=args.reference_max_size,
            tile_size=args.tile_size,
            chunk_size=args.chunk_size,
            conv=args.conv,
            peak=not args.no_peak,
            tf32_rows=args.tf32,
            graph_max_size=args.graph_max_size,
        )
        if args.stream:
            from ..bench.scale import bench_stream
            from ..model import LoftUp

            model = LoftUp(dim=args.dim).eval().to(args.device)
            model.tile_size = args.tile_size
            report["stream"] = bench_stream(model, args.stream, grid=args.grid, device=args.device)
        print(format_table(report))
        if "stream" in report:
            st = report["stream"]
            print(
                f"stream {st['size']}x{st['size']}: {st['seconds']:.1f} s, "
                f"{st['file_bytes'] / 1e9:.1f} GB file, peak own memory "
                f"{st['peak_anon_memory_bytes'] / 1e9:.2f} GB"
            )
    if args.json:
        _write_json(args.json, report)
    return 0


# -- upsample ---------------------------------------------------------------------------------


def _add_upsample(sub) -> None:
    p = sub.add_parser(
        "upsample",
        help="images in, high-resolution features out",
        description="Backbone features of each image, upsampled by LoftUp, one file per image. "
        "Under torchrun the inputs are shared out across the processes.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUTS", help="image files, folders or globs")
    p.add_argument(
        "-m",
        "--model",
        default="loftup_dinov2s",
        help="released name, file or folder (default: loftup_dinov2s)",
    )
    p.add_argument("-o", "--out", required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument(
        "--size",
        type=_parse_size,
        default=None,
        metavar="N|HxW",
        help="output size: N for shorter side N, or HxW (default: each image's own size)",
    )
    p.add_argument("--format", choices=["pt", "npy", "safetensors"], default="pt",
                   help="file format (default: pt)")  # fmt: skip
    p.add_argument("--viz", action="store_true", help="also write input | low-res | upsampled PNGs")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument(
        "--dtype",
        type=_precision,
        default="float32",
        metavar="{float32,bfloat16,float16}",
        help="precision of the backbone and the upsampler (default: float32, the paper's "
        "numbers; half precision is the GPU's fast path; on a CPU bfloat16 is a little faster)",
    )
    p.add_argument(
        "--save-dtype",
        type=_precision,
        default=None,
        metavar="{float32,bfloat16,float16}",
        help="precision of the stored features (default: --dtype's; float32 for bfloat16 "
        "in .npy, which has no bfloat16)",
    )
    p.add_argument("--batch-size", type=int, default=1, metavar="N",
                   help="images of one size computed together (default 1)")  # fmt: skip
    p.add_argument(
        "--writers",
        type=int,
        default=2,
        metavar="N",
        help="threads writing the files while the next images are computed (default: 2)",
    )
    p.add_argument(
        "--stream-above",
        type=float,
        default=1.0,
        metavar="GB",
        help="an image whose features take more than GB (default: 1) is written tile by tile "
        "into its file through a memory map, never held whole: any size in the memory of a "
        "tile, the same bytes (0: every image)",
    )
    p.add_argument("--backbone", metavar="NAME", help="backbone, when MODEL does not record it")
    p.add_argument(
        "--backbone-weights", metavar="PATH", help="backbone hub id or local Hugging Face folder"
    )
    p.add_argument(
        "--backbone-size",
        type=int,
        default=224,
        metavar="N",
        help="shorter side of the image the backbone sees (default: 224)",
    )
    _add_backbone_norm(p, None)
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=None,
        metavar="N",
        help="read input images of up to N pixels (0: any; default: Pillow's guard against "
        "decompression bombs, about 179 million)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on with an interrupted run: skip the images whose outputs OUT_DIR already "
        "holds (the options that change the files must be those recorded in its upsample.json)",
    )
    p.set_defaults(func=_cmd_upsample)


def _add_backbone_norm(p, default: str | None) -> None:
    from ..norms import INPUT_NORMS

    p.add_argument(
        "--backbone-norm",
        choices=list(INPUT_NORMS),
        default=default,
        help="what a backbone trained with other constants than ImageNet's (CLIP, SigLIP) is "
        "given: the ImageNet-normalised image as it is, as the paper's code gives it, so the "
        "features the released upsamplers were trained on (imagenet), or its own normalisation "
        "(own); the same for DINOv2 and DINOv3 (default: "
        + (default or "what the upsampler records, else imagenet")
        + ")",
    )


def _check_writable(folder, flag: str) -> None:
    """A LoftUpError unless files can be made in ``folder``, or in the folder that would hold it
    (it is made if missing): said before any model loads, naming the folder, not the hidden
    temporary file the first write would have failed on."""
    from pathlib import Path

    target = where = Path(folder).absolute()
    while not where.exists() and where.parent != where:
        where = where.parent
    if where.is_dir() and not os.access(where, os.W_OK | os.X_OK):
        what = f"{flag} {folder}" + ("" if where == target else f" ({where})")
        raise LoftUpError(f"{what} is not writable here; choose a folder you can write to")


def _precision(text: str) -> str:
    """A precision's name, aliases (fp16, bf16, half, fp32) accepted -> its canonical name."""
    from ..api import as_dtype

    try:
        return str(as_dtype(text)).removeprefix("torch.")
    except LoftUpError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parse_size(text: str):
    try:
        if "x" in text.lower():
            h, w = (int(v) for v in text.lower().split("x"))
            if h > 0 and w > 0:
                return (h, w)
        elif int(text) > 0:
            return int(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected N or HxW with positive integers, got {text!r}")


def _cmd_upsample(args) -> int:
    from pathlib import Path

    import torch

    from .. import __version__
    from ..api import check_backbone_size, load_pipeline, resolve_device
    from ..extract import (
        barrier,
        check_clobbering,
        check_options,
        collect_inputs,
        dist_env,
        process_group,
        read_record,
        recorded_outputs,
        recorded_path,
        remove_unfinished,
        run,
        summed,
        weights_digest,
        without_own_pictures,
        write_options,
    )

    if args.batch_size < 1:
        raise LoftUpError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.writers < 1:
        raise LoftUpError(f"--writers must be >= 1, got {args.writers}")
    if args.max_image_pixels is not None:
        if args.max_image_pixels < 0:
            raise LoftUpError(
                f"--max-image-pixels must be >= 0 (0: any), got {args.max_image_pixels}"
            )
        from ..io import set_max_image_pixels

        set_max_image_pixels(args.max_image_pixels or None)
    check_backbone_size(args.backbone_size, "--backbone-size")  # before inputs and models
    if not args.stream_above >= 0:  # also NaN
        raise LoftUpError(f"--stream-above must be >= 0 (gigabytes), got {args.stream_above}")
    save_dtype = args.save_dtype or args.dtype
    if args.format == "npy" and save_dtype == "bfloat16":
        if args.save_dtype is not None:
            raise LoftUpError(
                "--format npy cannot store bfloat16 (NumPy has no such type); use "
                "--save-dtype float16 or float32, or --format pt or safetensors"
            )
        save_dtype = "float32"
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # before the models load (a download, perhaps)
        raise LoftUpError(f"-o {out} is a file; the output is a folder (made if missing)")
    _check_writable(out, "-o")
    if args.viz:  # before any image is computed
        from ..errors import require

        require({"matplotlib": "--viz (its PNGs)"})
    rank, world, local_rank = dist_env()
    device = resolve_device(args.device, local_rank if world > 1 else None)
    if world > 1 and device.type == "cuda":
        torch.cuda.set_device(device)
    # left on every way out: a rank that fails leaves it at once, and the others, waiting for
    # it in a collective, end with one line (extract._with_the_others), not a traceback
    with process_group(device, world):
        jobs, missing = collect_inputs(args.inputs)
        saved = read_record(out, resume=args.resume)  # the earlier run's, if any (or refused)
        jobs = without_own_pictures(jobs, out, saved)
        if not jobs:
            why = "; ".join(f"{spec}: {reason}" for spec, reason in missing)
            where = " ".join(args.inputs)
            raise LoftUpError(f"no images found in {where}" + (f" ({why})" if why else ""))
        check_clobbering(jobs, out, args.format, args.viz, saved)  # no input, no file not ours
        for spec, reason in missing if rank == 0 else []:
            print(f"skipped {spec}: {reason}", file=sys.stderr)
        pipeline = load_pipeline(
            args.model,
            backbone=args.backbone,
            backbone_weights=args.backbone_weights,
            backbone_size=args.backbone_size,
            backbone_norm=args.backbone_norm,
            device=device,
            dtype=args.dtype,
        )
        options = {  # what made the files (--resume compares all but the info-only ones)
            "loftup_version": __version__,
            "model": recorded_path(args.model),  # local paths resolved: ./w and /abs/w are one
            "upsampler_sha256": weights_digest(pipeline.upsampler),
            "backbone": pipeline.featurizer.name,
            "backbone_weights": recorded_path(args.backbone_weights),
            "backbone_size": args.backbone_size,
            # only where it changes the features (CLIP, SigLIP): a record without it (DINOv2, or
            # before the choice existed) then still matches
            "backbone_norm": pipeline.featurizer.input_norm_key(),
            "size": list(args.size) if isinstance(args.size, tuple) else args.size,
            "format": args.format,
            "dtype": args.dtype,
            "save_dtype": save_dtype,
            "batch_size": args.batch_size,
            "outputs": recorded_outputs(saved, args.format, args.viz),  # what the folder holds
        }
        check_options(out, options, saved, resume=args.resume)
        if args.resume and rank == 0:  # what a killed run was writing (before any rank writes)
            removed = remove_unfinished(out)
            if removed:
                print(
                    f"removed {removed} unfinished file(s) of the interrupted run", file=sys.stderr
                )
        barrier(world)  # every rank has read the options file before it is rewritten
        out.mkdir(parents=True, exist_ok=True)
        if rank == 0:
            write_options(out, options)
        report = run(
            jobs,
            pipeline,
            out,
            size=args.size,
            fmt=args.format,
            viz=args.viz,
            batch_size=args.batch_size,
            rank=rank,
            world_size=world,
            save_dtype=getattr(torch, save_dtype),
            writers=args.writers,
            stream_above=args.stream_above * 1e9,
            resume=args.resume,
        )
        failed, kept = summed([len(report.failed), report.kept], world)
        failed += len(missing)
        barrier(world)  # no rank tears gloo down while another is still in a collective
    if rank == 0:
        done = len(jobs) - failed + len(missing) - kept
        there = f" ({kept} already there)" if args.resume else ""
        tail = f"; {failed} input(s) failed" if failed else ""
        print(f"wrote {save_dtype} features of {done} image(s) to {out}{there}{tail}")
    return 1 if failed else 0


# -- train ------------------------------------------------------------------------------------


def _add_train(sub) -> None:
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

    overrides = list(args.overrides)
    shorthands = {"data.root": args.data, "data.masks": args.masks, "log.out_dir": args.out}
    for key, value in shorthands.items():
        if value is not None:  # a path as written, quoted: not YAML (2024, yes, 'a #2')
            overrides.append(f"{key}={json.dumps(value, ensure_ascii=False)}")
    cfg = load_config(args.config, overrides, stage=args.stage)
    if args.print_config and cfg.stage == 2:
        from ..train.build import with_init_architecture

        cfg = with_init_architecture(cfg)
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    with _log_beside_bars(logging.getLogger("loftup")):
        result = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") != "0":  # under torchrun: said once, by rank 0
        return 0
    if result.history:
        print(f"{result.steps} steps, final loss {result.history[-1]['loss']:.5g}")
    print(f"checkpoint: {result.checkpoint}\nupsampler:  {result.pretrained}")
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


# -- eval -------------------------------------------------------------------------------------


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate an upsampler on segmentation, depth, surface normals or DAVIS"
    )
    tasks = p.add_subparsers(dest="task", metavar="TASK")
    tasks.required = True
    helps = {
        "seg": "linear-probe semantic segmentation (cocostuff, cityscapes, ade20k, voc)",
        "depth": "linear-probe depth on NYUv2 (delta1, RMSE, AbsRel)",
        "normals": "linear-probe surface normals on NYUv2 (within 11.25/22.5/30 deg, RMSE)",
        "davis": "DAVIS 2017 val label propagation (J, F, J&F)",
    }
    defaults = {"seg": "cocostuff", "depth": "nyuv2", "normals": "nyuv2", "davis": "davis2017"}
    for task, text in helps.items():
        t = tasks.add_parser(task, help=text, description=text)
        t.add_argument("--dataset", default=defaults[task], help=f"(default {defaults[task]})")
        t.add_argument("--root", required=True, help="the dataset's folder (see README)")
        t.add_argument(
            "--backbone", default="dinov2_vits14", help="featurizer (default dinov2_vits14)"
        )
        t.add_argument("--backbone-weights", default=None, help="hub id or local folder")
        _add_backbone_norm(t, "imagenet")
        t.add_argument(
            "--upsampler",
            required=True,
            metavar="SOURCE",
            help="nearest | bilinear | bicubic | jbu | highres | released name | path",
        )
        t.add_argument("--size", type=int, default=224, help="input side (default 224)")
        t.add_argument("--limit", type=int, default=None, metavar="N", help="first N per split")
        t.add_argument(
            "--cache-dir",
            default=None,
            help="feature cache (default ~/.cache/loftup/features, or $LOFTUP_CACHE/features)",
        )
        t.add_argument("--no-cache", action="store_true", help="do not cache backbone features")
        t.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default: cpu)")
        t.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
        t.add_argument(
            "--workers", type=int, default=0, help="DataLoader workers (default 0: in this process)"
        )
        t.add_argument("--seed", type=int, default=0, help="probe seed (default 0)")
        t.add_argument(
            "--highres-factor", type=int, default=2, help="input scale for highres (default 2)"
        )
        t.add_argument("--json", metavar="OUT", help="write the results as JSON ('-' for stdout)")
        t.add_argument("--figure", metavar="PNG", help="figure path (default: next to --json)")
        t.add_argument("--no-progress", action="store_true", help="hide progress bars")
        if task != "davis":
            t.add_argument("--epochs", type=int, default=None, help="probe epochs (default 10)")
            t.add_argument("--lr", type=float, default=None, help="probe learning rate")
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
                "--radius", type=int, default=12, help="neighbourhood in feature cells (default 12)"
            )
            t.add_argument("--feature-scale", type=float, default=0.5,
                           help="feature map side / frame side (default 0.5)")  # fmt: skip
            t.add_argument("--save-masks", metavar="DIR", help="write masks in DAVIS format")
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
        epochs=None if davis else args.epochs,
        lr=None if davis else args.lr,
        workers=args.workers,
        seed=args.seed,
        highres_factor=args.highres_factor,
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
    results = evaluate(cfg, report=lambda r: print(summary(r)))  # before any file
    print(f"figure: {results['figure']}")
    if args.json == "-":  # evaluate wrote the file of any other --json
        _write_json("-", results)
    elif args.json:
        print(f"wrote {args.json}")
    return 0


# -- demo -------------------------------------------------------------------------------------


def _add_demo(sub) -> None:
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

    import torch

    from ..world.demo import DemoConfig, run_demo

    check_threads(args.threads)
    cfg = DemoConfig(**{f.name: getattr(args, f.name) for f in fields(DemoConfig)})  # checked
    if args.threads:
        torch.set_num_threads(args.threads)
    run_demo(cfg, resume=args.resume)  # checks the folder and the packages before any work
    print((Path(cfg.out) / "report.md").read_text())
    print(f"wrote {cfg.out}/report.md, report.json and figure.png")
    return 0


# -- experiment -------------------------------------------------------------------------------


def _add_experiment(sub) -> None:
    from ..experiments import EXPERIMENTS

    p = sub.add_parser(
        "experiment",
        help="answer one of the paper's open questions, with the spread over seeds",
        description="Train and probe the variants of one question in the offline world (or on "
        "your data and backbone) and write report.md, results.json and PNG figures. See "
        "docs/experiments.md.",
    )
    p.add_argument("name", choices=EXPERIMENTS, metavar="NAME", help=", ".join(EXPERIMENTS))
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (every output, minutes)")
    p.add_argument("--out", default=None, help="report folder (default experiments/NAME)")
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
    p.add_argument("--eval-count", type=int, default=None, help="held-out images (half fit)")
    p.add_argument("--max-side", type=int, default=None, help="grid: largest output side (128)")
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
    results = run_experiment(settings, json_path=None if args.json == "-" else args.json)
    out = Path(results["settings"]["out"])
    print((out / "report.md").read_text())
    print(f"wrote {out}/report.md, results.json and {', '.join(results['figures'])}")
    if args.json == "-":
        _write_json("-", results)
    return 0


# -- world ------------------------------------------------------------------------------------


def _add_world(sub) -> None:
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
    s.add_argument("--size", type=_size, default=(128, 128), metavar="N|HxW",
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
    b.add_argument("--out", required=True, help="folder for model.safetensors and config.json")
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
    q.add_argument("--size", type=_size, default=(128, 128), metavar="N|HxW",
                   help="scene size (default 128)")  # fmt: skip
    q.add_argument("--json", metavar="OUT", help="also write the numbers as JSON ('-' for stdout)")
    q.set_defaults(func=_cmd_world_probe)


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"expected N or HxW with sides >= 8, got {text!r}")
    return (parts[0], parts[-1])


def _cmd_world_scenes(args) -> int:
    from ..data.scene_files import write_scenes
    from ..data.scenes import SceneConfig

    config = SceneConfig(  # every option checked (then write_scenes's) before a file is written
        height=args.size[0],
        width=args.size[1],
        num_classes=args.classes,
        scale=args.scale,
        texture_scale=tuple(args.texture_scale),
        texture_contrast=tuple(args.texture_contrast),
    )
    out = write_scenes(
        args.out, config, args.count, seed=args.seed, start=args.start, quality=args.quality
    )
    print(f"wrote {args.count} scenes to {out} (classes: {', '.join(config.class_names)})")
    return 0


def _picked_device(device: str) -> str:
    """``--device`` as torch names it: ``auto`` becomes the device it picks (CUDA when
    available); the value was checked by :func:`_main` before the command ran."""
    from ..api import resolve_device

    return str(resolve_device(device)) if device == "auto" else device


def _cmd_world_backbone(args) -> int:
    import torch

    from ..world.backbone import BackboneRecipe, train_backbone

    check_threads(args.threads)
    recipe = BackboneRecipe(  # checks its values before anything is generated
        steps=args.steps, batch_size=args.batch_size, scenes=args.scenes, seed=args.seed
    )
    if os.path.exists(args.out) and not os.path.isdir(args.out):  # not after the training
        raise LoftUpError(f"--out {args.out} is a file; the output is a folder (made if missing)")
    from ..eval.pipeline import check_folder_output

    check_folder_output(args.out, "--out")  # under a file, or in a folder that takes no files
    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = train_backbone(recipe, args.out, device=_picked_device(args.device))
    print(json.dumps(metrics, indent=2))
    print(f"wrote {args.out}")
    return 0


def _cmd_world_probe(args) -> int:
    from ..data.scenes import SceneConfig
    from ..featurizers.scenes_vit import load_backbone
    from ..world.probe import measure_backbone

    model = load_backbone(args.weights).eval()
    config = SceneConfig(height=args.size[0], width=args.size[1])
    report = measure_backbone(model, config, seed=args.seed, count=args.count)
    for key, value in report.items():
        print(f"{key:<34} {value:.4f}" if isinstance(value, float) else f"{key:<34} {value}")
    if args.json:
        _write_json(args.json, report)
    return 0


# -- plumbing ---------------------------------------------------------------------------------

COMMANDS = [
    _add_info,
    _add_download,
    _add_bench,
    _add_upsample,
    _add_train,
    _add_eval,
    _add_demo,
    _add_experiment,
    _add_world,
]


def _not_yet(name: str):
    def cmd(args) -> int:
        print(f"error: `loftup {name}` is not available in this version", file=sys.stderr)
        return 2

    return cmd


#: The real stdout while a command given ``--json -`` runs (:func:`_stdout_for_json`).
_JSON_STDOUT: list = []


@contextlib.contextmanager
def _stdout_for_json(json_out):
    """With ``--json -`` stdout holds the JSON alone (``| python -c 'json.load(sys.stdin)'``):
    everything else the command prints (tables, reports, "wrote" lines, a library's own
    prints) goes to stderr meanwhile, and :func:`_write_json` writes to the real stdout."""
    if json_out != "-":
        yield
        return
    _JSON_STDOUT.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _JSON_STDOUT.pop()


def _write_json(path: str, obj) -> None:
    """``obj`` as strict JSON to the file ``path`` (said on a line), or to stdout for ``-``."""
    from ..atomic import json_text, write_json

    if path == "-":
        out = _JSON_STDOUT[-1] if _JSON_STDOUT else sys.stdout
        out.write(json_text(obj) + "\n")  # strict, as the files are: NaN is null
        out.flush()
        return
    write_json(path, obj)
    print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="loftup",
        description="Sharp, pixel-resolution features from vision foundation models with LoftUp: "
        "upsample, train, evaluate, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"loftup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


#: Errors of the file system that the user's paths or disk cause, and the user can fix: a file
#: where a folder goes (or the reverse), no permission, a read-only or full disk, a path whose
#: folder does not exist and cannot be made (``-o /proc/x``; ENOENT: the line names the path,
#: so one that is a bug of ours, a package file gone missing say, is still found from it).
_USER_OS_ERRORS = {
    errno.ENOENT,
    errno.EEXIST,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
}


#: What to lower when a command runs out of memory.
_MEMORY_FIX = {
    "train": "a smaller batch_size, stage1.image_size or stage2.load_size (a run that wrote a "
    "checkpoint goes on from it with --resume)",
    "upsample": "a smaller --size, --backbone-size or --batch-size",
    "eval": "a smaller --batch-size",
    "bench": "smaller --sizes or --batch",
    "experiment": "--quick, or a smaller --batch-size",
    "demo": "a smaller --size or --batch-size",
    "world": "a smaller --size (scenes, probe), --count (probe) or --batch-size (backbone)",
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # KEY=VALUE overrides after options (`experiment NAME --out X optim.lr=1e-3`): argparse
        # gives a command's positionals one stretch of the line (after NAME, or before the
        # first option); what follows is an override too, in the order written
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
    # a warning is one line, as errors are (not the source path and line of whoever warned),
    # on a line of its own when a progress bar is on screen
    showwarning, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return _main(args)
    finally:
        warnings.showwarning = showwarning
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print ``message`` as ``warning: ...`` on one line. Through tqdm, which takes the bars
    that are drawn off the line, writes it and draws them again below it (Python's own
    printing would append it to the bar's line, and the bar's next update would overwrite it)."""
    from tqdm import tqdm

    try:
        tqdm.write(f"warning: {' '.join(str(message).split())}", file=file or sys.stderr)
    except (OSError, ValueError):  # a closed stderr: lost, as Python's own printing loses it
        pass


def _main(args) -> int:
    try:
        if isinstance(getattr(args, "device", None), str):  # one this machine has, before any work
            from ..api import resolve_device

            resolve_device(args.device)
        json_out = getattr(args, "json", None)
        if isinstance(json_out, str) and json_out != "-":  # said now, not after the work is done
            if os.path.isdir(json_out):
                raise LoftUpError(
                    f"--json {json_out} is a folder; give a file, e.g. {json_out}/out.json"
                )
            from ..eval.pipeline import check_file_output

            check_file_output(json_out, "--json")  # under a file, or in a read-only folder
        with _stdout_for_json(json_out):
            return int(args.func(args) or 0)
    except LoftUpError as e:
        _say(f"error: {e}")
        return 2
    except BrokenPipeError:
        # whoever read stdout stopped (`loftup info --json - | head`): end quietly, as the
        # shell's tools do (status 128 + SIGPIPE), and let nothing flush there on the way out
        _drop_stdout()
        return 141
    except OSError as e:
        if e.errno not in _USER_OS_ERRORS:
            raise
        # a path the user gave that cannot be written (or read): its name and why, no traceback
        where = f"{e.filename}: " if e.filename else ""
        _say(f"error: {where}{e.strerror or e}")
        return 2
    except Terminated:
        _say("terminated (SIGTERM)")
        return 143
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as e:
        from ..errors import memory_shortfall, missing_dependency, out_of_memory

        missing = missing_dependency(e)
        if missing:
            _say(f"error: {missing}")
            return 2
        if not out_of_memory(e):
            raise
        fix = _MEMORY_FIX.get(args.command, "smaller inputs")
        _say(f"error: out of memory in loftup {args.command}: {memory_shortfall(e)}; try {fix}")
        return 2


def _drop_stdout() -> None:
    """Point stdout at the null device: the text still buffered for a closed pipe would fail
    again, with a traceback, when Python flushes it at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture): nothing to do
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _say(line: str) -> None:
    """``line`` on stderr, on a line of its own: the progress bars a failed command left open
    are closed first (else the error lands on the end of the bar's line). Under torchrun it
    starts with the process's rank: each says what ended it (one rank's error may be the cause
    of the others'), and the reader can tell which said what."""
    from tqdm import tqdm

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in os.environ:
        line = f"[rank {os.environ['RANK']}] {line}"

    for bar in list(getattr(tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot be closed must not hide the error
            pass
    print(line, file=sys.stderr)


def run() -> None:
    sys.exit(main())
