"""``loftup upsample``: images in, high-resolution features out, one file per image. The
options are checked here, before any model loads; the run is
:func:`loftup.extract.upsample_folder`'s."""

from __future__ import annotations

from ..errors import LoftUpError
from .common import add_backbone_norm, parse_size, precision, say

#: How upsample_folder's errors, an image's and the options', call its arguments: as the
#: options that give them (from Python they are called by their names, :mod:`loftup.words`).
SAID_AS = {
    "model": "-m",
    "upsampler_sha256": "-m's weights",  # a record-only key: the weights -m names
    "backbone": "--backbone",
    "backbone_weights": "--backbone-weights",
    "backbone_norm": "--backbone-norm",
    "backbone_size": "--backbone-size",
    "size": "--size",
    "viz": "--viz",
    "device": "--device",
    "stream_above": "--stream-above",
    "batch_size": "--batch-size",
    "writers": "--writers",
    "fmt": "--format",
    "save_dtype": "--save-dtype",
    "dtype": "--dtype",
    "out": "-o",
    "resume": "--resume",
}


def add_upsample(sub) -> None:
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
        help="released name, file or folder, or hub id ORG/NAME[@REVISION] of a save_pretrained "
        "upsampler (default: loftup_dinov2s)",
    )
    p.add_argument("-o", "--out", required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument(
        "--size",
        type=parse_size,
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
        type=precision,
        default="float32",
        metavar="{float32,bfloat16,float16}",
        help="precision of the backbone and the upsampler (default: float32, the paper's "
        "numbers; half precision is the GPU's fast path; on a CPU with AVX-512 BF16 or AMX "
        "bfloat16 is a little faster, without them it is emulated, several times slower)",
    )
    p.add_argument(
        "--save-dtype",
        type=precision,
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
    add_backbone_norm(p, None)
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=None,
        metavar="N",
        help="read input images of up to N pixels (0: any; default: Pillow's guard against "
        "decompression bombs, about 179 million)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on with an interrupted run: skip the batches whose outputs OUT_DIR already "
        "holds, all of them (the options that change the files must be those recorded in its "
        "upsample.json; refused while a run it lists is still writing there, on this host)",
    )
    p.set_defaults(func=_cmd_upsample)


def _cmd_upsample(args) -> int:
    from ..api import check_backbone_size
    from ..extract import upsample_folder
    from ..extract.folder import check_run_options

    _, save_dtype = check_run_options(
        args.format, args.dtype, args.save_dtype, args.size, args.batch_size, args.writers, SAID_AS
    )
    if args.max_image_pixels is not None:
        if args.max_image_pixels < 0:
            raise LoftUpError(
                f"--max-image-pixels must be >= 0 (0: any), got {args.max_image_pixels}"
            )
        from ..io import max_image_pixels
        from .common import for_the_command

        for_the_command(max_image_pixels(args.max_image_pixels or None))  # till it ends
    check_backbone_size(args.backbone_size, "--backbone-size")  # before inputs and models
    if not args.stream_above >= 0:  # also NaN
        raise LoftUpError(f"--stream-above must be >= 0 (gigabytes), got {args.stream_above}")
    # checked by upsample_folder before any input is read or model loads; as given, since
    # Path("") is "." and an empty -o ("$OUT" unset) wrote into the current folder
    out = args.out
    if args.viz:  # before any image is computed
        from ..errors import require

        require({"matplotlib": "--viz (its PNGs)"})
    report = upsample_folder(
        args.inputs,
        out,
        model=args.model,
        backbone=args.backbone,
        backbone_weights=args.backbone_weights,
        backbone_size=args.backbone_size,
        backbone_norm=args.backbone_norm,
        device=args.device,
        dtype=args.dtype,
        save_dtype=save_dtype,
        size=args.size,
        fmt=args.format,
        viz=args.viz,
        batch_size=args.batch_size,
        writers=args.writers,
        stream_above=args.stream_above * 1e9,
        resume=args.resume,
        said_as=SAID_AS,
        progress=not args.no_progress,
    )
    if report.rank == 0:
        there = f" ({report.kept} already there)" if args.resume else ""
        tail = f"; {report.failed} input(s) failed" if report.failed else ""
        say(f"wrote {save_dtype} features of {report.done} image(s) to {out}{there}{tail}")
    return 1 if report.failed else 0
