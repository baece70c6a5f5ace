"""The loop of ``loftup upsample``: this rank's batches read ahead, upsampled, and handed to
writer threads (:func:`run`), with each image that fails reported by name."""

from __future__ import annotations

import gc
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..bars import bar_settings
from ..checks import ImageSizeError, backbone_input, output_size
from ..errors import memory_shortfall, out_of_memory, printable
from ..io import ImageReadError, load_image_tensor
from ..paths import name_max
from ..stops import check as check_stop
from .inputs import Job
from .no_room import write_failure
from .output_files import outputs_of
from .resumed import resumed_batches
from .torchrun import shard
from .write import compute_streamed, streamed_files, unwritable, write_outputs

#: Default of ``run(stream_above=...)`` (``loftup upsample --stream-above GB``): 1 GB, an
#: 800 x 800 output of 384 float32 channels.
STREAM_ABOVE = 1e9


@dataclass
class Report:
    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    kept: int = 0  # outputs already there (``resume``)


def _groups(images: list[tuple[Job, torch.Tensor]]) -> list[list[tuple[Job, torch.Tensor]]]:
    """Consecutive images of one batch grouped by size (only equal sizes run together)."""
    groups: dict[tuple[int, int], list] = {}
    for item in images:
        groups.setdefault(tuple(item[1].shape[-2:]), []).append(item)
    return list(groups.values())


def run(
    jobs: list[Job],
    pipeline,
    out_dir: Path,
    *,
    size=None,
    fmt: str = "pt",
    viz: bool = False,
    batch_size: int = 1,
    rank: int = 0,
    world_size: int = 1,
    save_dtype: torch.dtype = torch.float32,
    writers: int = 2,
    stream_above: float = STREAM_ABOVE,
    resume: bool = False,
    said_as: dict | None = None,
    progress: bool = True,
) -> Report:
    """Upsample this rank's share of ``jobs``; write ``OUT/stem.fmt`` (features stored as
    ``save_dtype``) and, with ``viz``, ``stem_viz.png``.

    The next batch's images are read and the finished ones written by ``writers`` threads while
    the pipeline computes (a 448 x 448 x 384 float32 file is 308 MB, which takes longer to write
    than a GPU takes to compute it); at most ``2 * writers`` outputs wait to be written. A file
    that cannot be written is reported by name like an unreadable input; the bytes of every file
    are the same whatever ``writers`` is.

    Images whose features would take more than ``stream_above`` bytes (in the computing or the
    stored dtype, whichever is wider) are written tile by tile into their files through memory
    maps (:class:`loftup.outputs.FeatureFile`) instead of being held whole: the memory of a tile
    whatever the size (a 12-megapixel photo's 384-channel features are 18 GB in float32), and
    the same bytes (0: every image so).

    ``resume``: skip this rank's batches whose outputs are all there (counted in
    ``Report.kept``); the caller checks that they were made with the same options
    (:func:`check_options`). ``said_as``: how an image's errors call the options
    (``{"backbone_size": "--backbone-size"}``), by default by their names. ``progress``: a bar
    over the images on stderr and, over a streamed image's tiles, one more (one process); the
    failures are said without it too.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    if writers < 1:
        raise ValueError(f"writers must be >= 1, got {writers}")
    report = Report()
    mine = shard(jobs, batch_size, rank, world_size)
    if resume:
        mine, report.kept = resumed_batches(mine, out_dir, fmt, viz, rank, world_size, said_as)
    too_long = _names_too_long(mine, out_dir, fmt, viz)  # said before any work, not after it
    mine = [[j for j in b if id(j) not in too_long] for b in mine]
    mine = [b for b in mine if b]
    desc = "upsample" if world_size == 1 else f"upsample [rank {rank}]"
    bar = tqdm(  # in a log: on the one line, every 5 s (position=rank moved the cursor there)
        total=sum(len(b) for b in mine),
        desc=desc,
        unit="img",
        **bar_settings(position=rank, shown=progress),
    )
    pending: deque = deque()  # (job, its features file's bytes, future) in submission order

    def fail(job: Job, reason: str) -> None:
        report.failed.append((str(job.given), reason))
        bar.write(printable(f"failed: {job.given}: {reason}"), file=sys.stderr)  # a name's escape

    def collect() -> None:
        job, nbytes, done = pending.popleft()
        try:
            done.result()
            report.written += 1
        except OSError as e:  # no room for it: said with its size and the room there
            fail(job, write_failure(e, out_dir, nbytes, fmt, save_dtype, said_as))
        bar.update(1)

    def submit(job: Job, nbytes: int, write, *args) -> None:  # at most 2 * writers waiting
        pending.append((job, nbytes, pool.submit(write, *args)))
        while len(pending) > 2 * writers:
            collect()

    for job, reason in too_long.values():
        fail(job, reason)
    # streamed outputs' files, each listed before it is made, discarded on the way out where
    # no writer put it in place (after the pool, which runs the tasks queued first)
    with (
        streamed_files() as streamed,
        ThreadPoolExecutor(1) as reader,
        ThreadPoolExecutor(writers) as pool,
    ):
        ahead = reader.submit(_read, mine[0]) if mine else None
        for k in range(len(mine)):
            check_stop()  # one a finaliser swallowed (a bar's, a generator's): loftup.stops
            loaded, unreadable = ahead.result()
            if k + 1 < len(mine):
                ahead = reader.submit(_read, mine[k + 1])
            for job, reason in unreadable:
                report.failed.append((str(job.given), reason))
                bar.write(printable(f"skipped: {reason}"), file=sys.stderr)  # a name's escape
                bar.update(1)
            for group in _groups(loaded):
                images = torch.stack([img for _, img in group])
                try:  # a size one image cannot be run with costs that image, not the run
                    shape = _output_shape(pipeline, images, size, said_as)
                except ImageSizeError as e:
                    for job, _ in group:
                        fail(job, str(e))
                        bar.update(1)
                    continue
                item = max(pipeline.dtype.itemsize, save_dtype.itemsize)  # the wider dtype
                starved = False  # out of memory
                try:
                    if math.prod(shape) * item > stream_above:  # too large to hold whole
                        tasks = compute_streamed(
                            pipeline, images, size, group, shape, out_dir, fmt, save_dtype,
                            progress and world_size == 1, viz, streamed, said_as,
                        )  # fmt: skip
                    else:
                        lr_feats, hr_feats = pipeline(images, size)
                        tasks = [
                            (job, unwritable(hr_feats[i], save_dtype, pipeline.dtype, said_as)
                             or (write_outputs, out_dir, job, fmt, save_dtype, image, lr_feats[i],
                                 hr_feats[i], viz))
                            for i, (job, image) in enumerate(group)
                        ]  # fmt: skip
                except ImageSizeError as e:  # held whole: over the pixels one may hold
                    tasks = [(job, str(e)) for job, _ in group]
                except Exception as e:
                    if not out_of_memory(e):
                        raise
                    tasks = [(job, _no_memory(shape, len(group), e, said_as)) for job, _ in group]
                    starved = True
                if starved and pipeline.device.type == "cuda":
                    # out of memory: give the cache back once the error (whose frames hold
                    # what was allocated) is gone, for the next image (and any cyclic
                    # garbage that holds GPU memory with it)
                    gc.collect()
                    torch.cuda.empty_cache()
                check_stop()  # (before the hand-over: the files are discarded)
                for job, task in tasks:  # (a file not handed over: discarded by streamed_files)
                    if isinstance(task, str):  # no file, no memory, or features it cannot hold
                        fail(job, task)
                        bar.update(1)
                    else:
                        submit(job, math.prod(shape) * save_dtype.itemsize, *task)
        while pending:
            collect()
    bar.close()
    return report


def _names_too_long(batches, out_dir: Path, fmt: str, viz: bool) -> dict:
    """The jobs of ``batches`` whose output name is longer than the file system allows in
    ``out_dir`` (255 bytes on most), with the reason, as ``{id(job): (job, reason)}``: it failed
    only once its features had been computed. (A temporary file's name is the output's cut to 200 bytes and
    14 more, :func:`loftup.atomic.temp_beside`: it fits whenever the output's does.)"""
    limit = name_max(out_dir)
    found = {}
    for job in (j for b in batches for j in b):
        for path in outputs_of(out_dir, job, fmt, viz):
            size = len(os.fsencode(path.name))
            if size > limit:  # its temporary file's fits whenever it does
                why = (
                    f"its output's name, {path.name}, is {size} bytes, over the {limit} this "
                    f"file system allows; rename the input ({job.stem}) shorter"
                )
                found[id(job)] = (job, why)
                break
    return found


def _no_memory(shape, batch: int, e: BaseException, said_as: dict | None = None) -> str:
    """The failure of an image whose features could not be computed for lack of memory, the
    fix naming the options as ``said_as`` calls them."""
    from ..words import said, said_with

    c, h, w = shape
    fix = f"a smaller {said('size', said_as)}"
    fix += f" or {said_with('batch_size', 1, said_as)}" if batch > 1 else ""
    return f"out of memory for a {h}x{w} output ({c} channels): {memory_shortfall(e)}; try {fix}"


def _read(batch: list[Job]) -> tuple[list[tuple[Job, torch.Tensor]], list[tuple[Job, str]]]:
    """A batch's images, and the jobs whose file could not be read (with the reason): damaged,
    or too large for the memory left (the run goes on with the others)."""
    loaded, unreadable = [], []
    for job in batch:
        try:
            loaded.append((job, load_image_tensor(job.given)))  # its errors name it so
        except ImageReadError as e:
            unreadable.append((job, str(e)))
        except Exception as e:  # a huge image the host has no room to decode: that image's
            if not out_of_memory(e):  # failure, as one it has no room to compute
                raise
            why = f"cannot read image {job.given}: out of memory ({memory_shortfall(e)})"
            unreadable.append((job, f"{why}; downscale it first, or free memory"))
    return loaded, unreadable


def _output_shape(
    pipeline, images: torch.Tensor, size, said_as: dict | None = None
) -> tuple[int, int, int]:
    """(C, H, W) of one image's upsampled features, or the :class:`ImageSizeError` of a size
    the pipeline would refuse (checked before any file of it is made; its options named as
    ``said_as`` calls them)."""
    from ..words import said

    height, width = images.shape[-2:]
    patch = pipeline.featurizer.patch_size
    backbone_input(height, width, patch, pipeline.backbone_size, said("backbone_size", said_as))
    return (pipeline.upsampler.config.dim, *output_size(size, height, width))
