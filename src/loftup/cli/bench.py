"""``loftup bench``: time and peak memory of LoftUp next to bilinear/bicubic, one table or a
whole suite (:mod:`loftup.bench`)."""

from __future__ import annotations

from ..errors import LoftUpError, check_threads
from .common import picked_device, say, say_lines, use_threads, write_json


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time and peak memory of LoftUp next to bilinear/bicubic")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 896], metavar="N",
                   help="square output sides to time (default: 224 448 896)")  # fmt: skip
    p.add_argument("--dim", type=int, default=384, help="feature channels C (default 384)")
    p.add_argument("--grid", type=int, default=16, help="low-res grid side h = w (default 16)")
    p.add_argument(
        "--device",
        default=None,
        help="auto, cpu, cuda or cuda:N (default: cpu; with --suite gpu or smoke, cuda if present)",
    )
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
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed calls per case before the timed ones (default 1); at least 2 "
                   "are made, on the CPU and CUDA alike: the second's peak memory is read")  # fmt: skip
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
    p.add_argument(
        "--figure",
        metavar="PNG",
        help="draw time and peak memory against the output size (of a suite: its forward "
        "sections) to this PNG (default: the --json file with .png; none with --json - or no "
        "--json)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_bench, table_defaults={d: p.get_default(d) for d in TABLE_ONLY})


#: The options of one table (their dests), which a suite sets for itself: given with --suite,
#: they are refused, not ignored (--suite cpu --sizes 16 ran the whole 15-minute suite)
TABLE_ONLY = (
    "sizes", "dtypes", "dim", "grid", "batch", "repeats", "warmup", "reference_max_size",
    "tile_size", "chunk_size", "conv", "no_peak", "tf32", "graph_max_size",
)  # fmt: skip


def _refuse_table_options(args) -> None:
    """A LoftUpError naming the table options given with ``--suite`` (each suite sets its own
    sizes, precisions and settings)."""
    given = [d for d, default in args.table_defaults.items() if getattr(args, d) != default]
    if given:
        named = ", ".join("--" + d.replace("_", "-") for d in given)
        raise LoftUpError(
            f"{named} {'sets' if len(given) == 1 else 'set'} one table, and --suite "
            f"{args.suite} sets its own; drop {'it' if len(given) == 1 else 'them'}, or leave "
            "out --suite for one table (--only picks a suite's sections)"
        )


def _cmd_bench(args) -> int:

    from ..bench import bench_forward, format_table, load_reference_class
    from ..bench.figure import FIGURE_SECTIONS
    from ..bench.forward import check_settings
    from ..bench.scale import check_stream_size

    chosen = args.device  # None: not given
    args.device = picked_device(args.device or "cpu")
    check_threads(args.threads)
    if args.only and not args.suite:
        raise LoftUpError("--only picks sections of a suite; add --suite cpu|gpu|smoke")
    if args.suite:
        _refuse_table_options(args)
    if args.stream is not None:
        check_stream_size(args.stream)  # --stream runs last: said now, not after the table
        if args.batch != 1:  # it streamed one image, the line and JSON saying nothing of it
            raise LoftUpError(
                f"--stream {args.stream} streams one image's output, and --batch {args.batch} "
                "would not apply to it: leave out --batch, or time the batch's table in a "
                "command of its own without --stream"
            )
    figure = _figure_path(args)
    if not args.suite:
        check_settings(
            args.sizes, dim=args.dim, grid=args.grid, batch=args.batch, repeats=args.repeats,
            warmup=args.warmup, tile_size=args.tile_size, chunk_size=args.chunk_size,
            dtypes=args.dtypes, tf32_rows=args.tf32,
        )  # fmt: skip
    reference = load_reference_class(args.reference) if args.reference else None
    use_threads(args.threads)
    if args.suite:
        from ..bench.suite import run_suite, summary

        report = run_suite(  # checks the sections before anything runs
            args.suite,
            device=args.device if chosen else None,  # None: the suite's own default
            reference=reference,
            stream_size=args.stream,
            # each section's figures saved as they come; stdout gets the whole report once
            on_section=_saver(args.json, figure),
            only=args.only.split(",") if args.only else None,
            progress=not args.no_progress,
        )
        say_lines(summary(report))
        if figure and not set(FIGURE_SECTIONS) & set(report["sections"]):
            say(f"no figure: {figure} draws the forward sections, and none ran")
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
            progress=not args.no_progress,
        )
        if args.stream:
            from ..bench.scale import bench_stream_random

            report["stream"] = bench_stream_random(
                args.stream, dim=args.dim, grid=args.grid, device=args.device,
                tile_size=args.tile_size, chunk_size=args.chunk_size, conv=args.conv,
                progress=not args.no_progress,
            )  # fmt: skip
        say_lines(format_table(report))
        if "stream" in report:
            from ..bench.table import format_stream

            say_lines(format_stream(report["stream"]))
    if args.json:
        write_json(args.json, report)
    if figure and not args.suite:  # a suite's is drawn as its forward sections end
        _draw(report, figure)
    return 0


def _figure_path(args) -> str | None:
    """Where the figure goes (``--figure``, else beside ``--json``: paths.figure_beside; None:
    no figure), checked before any work: a folder, an unwritable place, the JSON's own path;
    with ``--figure``, matplotlib must be installed (beside ``--json``, a run without it keeps
    its JSON)."""
    import os

    from ..figure_mark import check_replaceable
    from ..paths import check_file_output, figure_beside

    if args.figure:
        from ..errors import require

        require({"matplotlib": "loftup bench --figure"})
        check_file_output(args.figure, "--figure", example="bench.png")
        if args.json and args.json != "-" and _same(args.json, args.figure):
            raise LoftUpError(
                f"--figure {args.figure} is the --json file too, and would overwrite the "
                "numbers: give the figure a .png name"
            )
        return os.path.expanduser(args.figure)  # where it was checked, not in a ./~
    if not args.json or args.json == "-":
        return None
    path = figure_beside(args.json)  # never the JSON itself: x.png's is x.png.png
    if _draws(args):  # a user's file there is no reason to refuse a run that draws none
        from ..bench.figure import is_bench_report

        check_file_output(path, "the figure", "give --figure another path")
        by = f"the figure of --json {args.json}"
        check_replaceable(path, by, beside=args.json, own=is_bench_report)
    return path


def _draws(args) -> bool:
    """Whether a run draws its figure beside ``--json``: matplotlib is installed (else a
    warning), and a suite's ``--only`` names a section the figure draws."""
    from ..bench.figure import FIGURE_SECTIONS

    if args.suite and args.only and not set(FIGURE_SECTIONS) & set(args.only.split(",")):
        return False
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _same(a: str, b: str) -> bool:
    from pathlib import Path

    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _saver(json_out, figure):
    """``on_section`` of a suite: its JSON (not to stdout, which gets the whole report once)
    saved after each section, and its figure redrawn after each forward section."""
    from ..bench.figure import FIGURE_SECTIONS

    drawn = set()

    def save(report) -> None:
        if json_out and json_out != "-":
            write_json(json_out, report)
        ran = {k for k in FIGURE_SECTIONS if k in report["sections"]}
        if figure and ran - drawn:
            drawn.update(ran)
            _draw(report, figure)

    return save


def _draw(report: dict, path: str) -> None:
    """The figure of ``report`` (a table, or a suite's forward sections) written to ``path``
    and said; where matplotlib is missing, a warning (the numbers are written already)."""
    import sys

    from ..errors import missing_dependency

    try:
        from ..bench.figure import forward_figure, suite_figure

        if "sections" in report:
            done = suite_figure(report, path)
        else:
            done = forward_figure(report, path)
    except ImportError as e:
        missing = missing_dependency(e, "the figure")
        if missing is None:
            raise
        say(f"warning: no figure: {missing}", file=sys.stderr)
        return
    say(f"wrote {path}" if done else "no figure: the forward sections failed (no rows)")
