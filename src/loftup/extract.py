"""``loftup upsample`` at scale: inputs to jobs, jobs to ranks, features to files.

One process:

    loftup upsample photos/ -m loftup_dinov2s -o feats/ --size 448 --viz

Several (one GPU each, or CPU processes over gloo), same files as one process writes:

    torchrun --nproc_per_node 4 -m loftup upsample photos/ -m loftup_dinov2s -o feats/

The sorted input list is cut into batches exactly as one process would cut it, and batch i goes
to rank i % world_size: every image is computed in the same company on every run, so the bytes
of every file are the same whatever the number of processes.

An interrupted run goes on with ``--resume``: the output folder's ``upsample.json`` records
the options that change the files' bytes, a resumed run must have the same, and it skips each
batch whose outputs are all there (files are put in place whole, so one that exists is
complete); a batch with any output missing is computed again, whole, giving the same bytes.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import hashlib
import math
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .atomic import read_json_object
from .errors import LoftUpError, memory_shortfall, out_of_memory
from .io import IMAGE_SUFFIXES, ImageReadError, load_image_tensor

#: Default of ``run(stream_above=...)`` (``loftup upsample --stream-above GB``): 1 GB, an
#: 800 x 800 output of 384 float32 channels.
STREAM_ABOVE = 1e9


@dataclass
class Job:
    """One input image and the stem of its outputs (relative to the output folder)."""

    path: Path
    stem: str


@dataclass
class Report:
    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    kept: int = 0  # outputs already there (``resume``)


#: What ``loftup upsample`` leaves beside its outputs: the options that made them.
OPTIONS_NAME = "upsample.json"
#: Recorded in it but not compared by ``--resume``: they do not change the files' bytes
#: (``outputs``: the kinds of file loftup wrote in the folder, :func:`recorded_outputs`).
_INFO_ONLY = ("loftup_version", "model", "outputs")
#: Its options that name a file or folder: recorded resolved (:func:`recorded_path`).
_PATHS = ("model", "backbone_weights")


def recorded_path(value: str | os.PathLike | None) -> str | None:
    """How a path-valued option is recorded in ``upsample.json``: a local file or folder as
    its absolute path, ``~`` expanded and links followed (``./w``, ``~/w`` and ``/home/me/w``
    are one folder, and one option), as the loaders find it; anything else (a hub id, a
    released name, None) as given."""
    if value is None:
        return None
    path = Path(os.fspath(value)).expanduser()
    return str(path.resolve()) if path.exists() else os.fspath(value)


def weights_digest(module: torch.nn.Module) -> str:
    """A short SHA-256 of a module's state (names, dtypes, shapes and bytes): the same weights
    give the same digest wherever they were loaded from."""
    h = hashlib.sha256()
    for key, t in sorted(module.state_dict().items()):
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def read_record(out_dir: Path, *, resume: bool) -> dict | None:
    """``out_dir``'s ``upsample.json``, the record of the run that made its files (None when
    there is none). Refused (:class:`LoftUpError`) when that file is not a record loftup wrote
    (unreadable, or without ``loftup_version``): a user's own file of that name, which a run
    would overwrite; and with ``resume``, a folder of files with no record (nothing says what
    made them)."""
    path = out_dir / OPTIONS_NAME
    flag = "--resume: " if resume else ""
    try:
        saved = read_json_object(path)
        if saved is not None and "loftup_version" not in saved:
            raise ValueError(f"{path} is not a record of loftup upsample (no loftup_version)")
    except ValueError as e:
        raise LoftUpError(
            f"{flag}{e}, and this run would write its record there; move the file away, or "
            "choose another -o"
        ) from None
    if saved is None and resume and out_dir.is_dir() and any(out_dir.iterdir()):
        raise LoftUpError(
            f"--resume: {out_dir} holds files but no {OPTIONS_NAME}, so the options that "
            "made them are unknown; choose another -o, or empty it to compute them all again"
        )
    return saved


def check_options(out_dir: Path, options: dict, saved: dict | None, *, resume: bool) -> None:
    """Refuse a run into ``out_dir`` whose files were made with other ``options`` than its
    record ``saved`` (:func:`read_record`) says, naming each difference: the record describes
    every file in it, so a run with other options there would leave files that the record
    misdescribes (and that a later ``--resume`` would keep); another ``--format`` is allowed
    (other files)."""
    if saved is None:
        return  # nothing there yet: a resumed run of nothing is a run
    # another --format writes other files beside these; only a resume must keep to one
    skip = _INFO_ONLY if resume else (*_INFO_ONLY, "format")
    diff = [
        f"{key} {saved.get(key)!r} there, {value!r} now"
        for key, value in options.items()
        if key not in skip and _as_recorded(key, saved.get(key)) != value
    ]
    if diff:
        flag = "--resume: " if resume else ""
        fix = "use the same options" + ("" if resume else " (with --resume to skip what is done)")
        raise LoftUpError(
            f"{flag}the files in {out_dir} were made with other options ({'; '.join(diff)}); "
            f"{fix}, or another -o"
        )


def _owned(saved: dict | None) -> set[str] | None:
    """The kinds of output (formats, ``"viz"``) that the record ``saved`` says loftup wrote in
    its folder; None for a record of an earlier version, which did not say (its runs took
    every output name there as theirs)."""
    if saved is None:
        return set()
    if "outputs" not in saved:
        return None
    kinds = saved["outputs"]
    return {k for k in kinds if isinstance(k, str)} if isinstance(kinds, list) else set()


def recorded_outputs(saved: dict | None, fmt: str, viz: bool) -> list[str]:
    """What the record of a run writing ``fmt`` (and pictures with ``viz``) into the folder
    of the record ``saved`` says the folder holds: the earlier runs' kinds and this one's (an
    older record's: its format, and pictures, which those versions took as theirs)."""
    owned = _owned(saved)
    if owned is None:
        owned = {str(saved.get("format")), "viz"}
    return sorted(owned | {fmt} | ({"viz"} if viz else set()))


def check_clobbering(jobs: list[Job], out_dir: Path, fmt: str, viz: bool, saved) -> None:
    """Refuse (before any work) a run that would overwrite a file that is not its own: one of
    its inputs (``-o`` inside an input folder, where ``x.png``'s picture is ``x_viz.png``), or
    a file that no earlier loftup run wrote there (no record ``saved``, or one without that
    kind of output: a user's own ``x.npy`` beside ``x.png``). An earlier run's outputs, which
    a whole run overwrites and a resumed one keeps, are its own."""
    inputs = {job.path for job in jobs}  # resolved
    owned = _owned(saved)
    what = {fmt: "features", "viz": "picture (--viz)"}
    recorded = {fmt: f".{fmt} features", "viz": "--viz pictures"}
    for job in jobs:
        for kind, path in zip((fmt, "viz"), outputs_of(out_dir, job, fmt, viz)):
            if not os.path.lexists(path):
                continue
            if path.resolve() in inputs:
                raise LoftUpError(
                    f"{path} is an input of this run, and the {what[kind]} of {job.path} would "
                    "overwrite it; choose another -o (outside the input folders)"
                )
            # (a folder in its place cannot be replaced: that image fails, as it writes)
            if owned is not None and kind not in owned and not path.is_dir():
                why = f"its {OPTIONS_NAME} records no {recorded[kind]}"
                if saved is None:
                    why = f"no {OPTIONS_NAME} in {out_dir}"
                raise LoftUpError(
                    f"{path} is not loftup's ({why}), and the {what[kind]} of {job.path} would "
                    "overwrite it; move it away, or choose another -o"
                )


def _as_recorded(key: str, saved):
    """A recorded option as this version records it: a path an earlier version recorded as
    given (``./w``) resolved from here, which is where a re-run usually starts."""
    return recorded_path(saved) if key in _PATHS and isinstance(saved, str) else saved


def remove_unfinished(out_dir: Path) -> int:
    """Delete the temporary files (:func:`loftup.atomic.leftovers`) that a killed run left in
    ``out_dir``; returns how many. Only for a resumed run, which takes over from the run that
    made them (another run writing there now would lose its files)."""
    from .atomic import leftovers

    unfinished = leftovers(out_dir)
    for tmp in unfinished:
        tmp.unlink(missing_ok=True)
    return len(unfinished)


def write_options(out_dir: Path, options: dict) -> None:
    """``out_dir/upsample.json``, put in place whole."""
    from .atomic import write_json

    write_json(out_dir / OPTIONS_NAME, options, sort_keys=True)


def outputs_of(out_dir: Path, job: Job, fmt: str, viz: bool) -> list[Path]:
    """The files a job writes."""
    paths = [out_dir / f"{job.stem}.{fmt}"]
    if viz:
        paths.append(out_dir / f"{job.stem}_viz.png")
    return paths


def _images_under(folder: Path) -> list[Path]:
    """The image files under ``folder``, hidden ones and those in hidden folders left out (as a
    glob leaves them): macOS's ``._IMG_1.jpg`` companions and ``.ipynb_checkpoints`` copies
    are not images to compute, and the first cannot be read as one."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def collect_inputs(specs: list[str]) -> tuple[list[Job], list[tuple[str, str]]]:
    """Files, folders (searched recursively for images, hidden files and folders left out) and
    globs -> (jobs, unmatched specs).

    Jobs are sorted by path with duplicates dropped. An output stem is the file's name without
    its suffix, with the sub-folder kept for images found under a folder (a file reached through
    several inputs, ``photos photos/day1``, keeps its longest name, that of the outermost folder
    given, whatever the order of the inputs); when two inputs would
    share a stem (``a.jpg`` and ``a.png``) both keep their suffix (``a.jpg``, ``a.png``). Two
    files whose outputs would still have one name (``cam1/0001.png`` and ``cam2/0001.png``,
    given as two folders) are refused (:class:`LoftUpError`).
    """
    found: dict[Path, Path] = {}  # resolved path -> path relative to where it was found
    missing = []
    for spec in specs:
        p = Path(spec).expanduser()
        if p.is_dir():
            for f in _images_under(p):
                _name(found, f.resolve(), f.relative_to(p))
        elif p.exists():
            _name(found, p.resolve(), Path(p.name))
        else:
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(spec), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                missing.append((spec, "no such file, folder or matching glob"))
            for f in files:
                _name(found, f.resolve(), Path(f.name))
    items = sorted(found.items(), key=lambda kv: str(kv[0]))
    stems = [str(rel.with_suffix("")) for _, rel in items]
    clash = {s for s in stems if stems.count(s) > 1}
    jobs = [
        Job(path, str(rel) if stem in clash else stem) for (path, rel), stem in zip(items, stems)
    ]
    # files of one name in two inputs (cam1/0001.png, cam2/0001.png) keep it with its suffix:
    # one would overwrite the other's outputs (and a resume would take one's for both)
    first: dict[str, Job] = {}
    for job in jobs:
        other = first.setdefault(job.stem, job)
        if other is not job:
            raise LoftUpError(
                f"{other.path} and {job.path} would write outputs of one name ({job.stem}); "
                "give the folder that holds both (its sub-folders are kept in the names), or run "
                "them into separate -o folders"
            )
    return jobs, missing


def _name(found: dict[Path, Path], path: Path, rel: Path) -> None:
    """Record ``rel`` as the name of the file ``path`` in ``found``, unless it already has a
    longer one (more folders; of two as long, the first in sort order): the name of a file that
    several inputs reach does not depend on their order, and is the one that keeps it apart
    from the other files of the outermost folder (``photos/day1/x.png`` is ``day1/x`` given
    ``photos/day1 photos``, where ``photos/x.png`` is ``x``)."""
    old = found.get(path)
    if old is None or (-len(rel.parts), str(rel)) < (-len(old.parts), str(old)):
        found[path] = rel


def without_own_pictures(jobs: list[Job], out_dir: Path, saved: dict | None) -> list[Job]:
    """``jobs`` less the ``*_viz.png`` pictures an earlier run wrote into ``out_dir`` (an output
    folder inside, or equal to, an input folder would otherwise feed them back in): those of a
    folder whose record ``saved`` says it holds loftup's pictures. Any other is an input (and
    :func:`check_clobbering` refuses a run whose picture of ``x.png`` would overwrite it)."""
    owned = _owned(saved)
    if owned is not None and "viz" not in owned:
        return jobs
    out = out_dir.resolve()
    return [j for j in jobs if not (j.path.name.endswith("_viz.png") and out in j.path.parents)]


def shard(jobs: list[Job], batch_size: int, rank: int, world_size: int) -> list[list[Job]]:
    """The batches of ``jobs`` (cut as one process cuts them) that belong to ``rank``."""
    batches = [jobs[i : i + batch_size] for i in range(0, len(jobs), batch_size)]
    return batches[rank::world_size]


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
    (:func:`check_options`).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    if writers < 1:
        raise ValueError(f"writers must be >= 1, got {writers}")
    report = Report()
    mine = shard(jobs, batch_size, rank, world_size)
    if resume:
        done = [all(p.is_file() for j in b for p in outputs_of(out_dir, j, fmt, viz)) for b in mine]
        report.kept = sum(len(b) for b, d in zip(mine, done) if d)
        mine = [b for b, d in zip(mine, done) if not d]
    desc = "upsample" if world_size == 1 else f"upsample [rank {rank}]"
    bar = tqdm(
        total=sum(len(b) for b in mine), desc=desc, unit="img", position=rank, file=sys.stderr
    )
    pending: deque = deque()  # (job, future) in submission order

    def fail(job: Job, reason: str) -> None:
        report.failed.append((str(job.path), reason))
        bar.write(f"failed: {job.path}: {reason}", file=sys.stderr)

    def collect() -> None:
        job, done = pending.popleft()
        try:
            done.result()
            report.written += 1
        except OSError as e:
            fail(job, f"could not write its outputs: {e}")
        bar.update(1)

    def submit(job: Job, write, *args) -> None:  # at most 2 * writers outputs waiting
        pending.append((job, pool.submit(write, *args)))
        while len(pending) > 2 * writers:
            collect()

    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(writers) as pool:
        ahead = reader.submit(_read, mine[0]) if mine else None
        for k in range(len(mine)):
            loaded, unreadable = ahead.result()
            if k + 1 < len(mine):
                ahead = reader.submit(_read, mine[k + 1])
            for job, reason in unreadable:
                report.failed.append((str(job.path), reason))
                bar.write(f"skipped: {reason}", file=sys.stderr)
                bar.update(1)
            for group in _groups(loaded):
                images = torch.stack([img for _, img in group])
                shape = _output_shape(pipeline, images, size)
                item = max(pipeline.dtype.itemsize, save_dtype.itemsize)  # the wider dtype
                starved = False  # out of memory
                try:
                    if math.prod(shape) * item > stream_above:  # too large to hold whole
                        tasks = _streamed(
                            pipeline, images, size, group, shape, out_dir, fmt, save_dtype,
                            world_size == 1, viz,
                        )  # fmt: skip
                    else:
                        lr_feats, hr_feats = pipeline(images, size)
                        tasks = [
                            (job, (_write, out_dir, job, fmt, save_dtype, image, lr_feats[i],
                                   hr_feats[i], viz))
                            for i, (job, image) in enumerate(group)
                        ]  # fmt: skip
                except Exception as e:
                    if not out_of_memory(e):
                        raise
                    tasks = [(job, _no_memory(shape, len(group), e)) for job, _ in group]
                    starved = True
                if starved and pipeline.device.type == "cuda":
                    # out of memory: give the cache back once the error (whose frames hold
                    # what was allocated) is gone, for the next image (and any cyclic
                    # garbage that holds GPU memory with it)
                    gc.collect()
                    torch.cuda.empty_cache()
                for n, (job, task) in enumerate(tasks):
                    try:
                        if isinstance(task, str):  # its file could not be made, or no memory
                            fail(job, task)
                            bar.update(1)
                        else:
                            submit(job, *task)
                    except BaseException:  # Ctrl-C (or a writer's error) while it waited
                        _discard(tasks[n + 1 :])  # files no writer will put in place
                        raise
        while pending:
            collect()
    bar.close()
    return report


def _no_memory(shape, batch: int, e: BaseException) -> str:
    """The failure of an image whose features could not be computed for lack of memory."""
    c, h, w = shape
    fix = "a smaller --size" + (" or --batch-size 1" if batch > 1 else "")
    return f"out of memory for a {h}x{w} output ({c} channels): {memory_shortfall(e)}; try {fix}"


def _read(batch: list[Job]) -> tuple[list[tuple[Job, torch.Tensor]], list[tuple[Job, str]]]:
    """A batch's images, and the jobs whose file could not be read (with the reason)."""
    loaded, unreadable = [], []
    for job in batch:
        try:
            loaded.append((job, load_image_tensor(job.path)))
        except ImageReadError as e:
            unreadable.append((job, str(e)))
    return loaded, unreadable


def _output_shape(pipeline, images: torch.Tensor, size) -> tuple[int, int, int]:
    """(C, H, W) of one image's upsampled features."""
    from .api import output_size

    return (pipeline.upsampler.config.dim, *output_size(size, *images.shape[-2:]))


def _streamed(
    pipeline, images, size, group, shape, out_dir, fmt, save_dtype, progress, viz
) -> list:
    """Compute a group straight into memory-mapped feature files, tile by tile (``progress``:
    with a bar over the tiles, as such an image can take minutes on a CPU): for each job the
    writer's task that puts its file in place (:func:`_commit` and its arguments), or the reason
    its file could not be made. Nothing is left behind if the computation fails."""
    from .outputs import FeatureFile

    files: list = []
    try:
        for job, _ in group:
            try:
                files.append(FeatureFile(out_dir / f"{job.stem}.{fmt}", fmt, save_dtype, shape))
            except OSError as e:
                files.append(f"could not write its outputs: {e}")
        if all(isinstance(f, str) for f in files):  # nowhere to put them: nothing to compute
            return list(zip((job for job, _ in group), files))

        def put(tile, feats: torch.Tensor) -> None:
            feats = feats.to("cpu", save_dtype)
            for j, i in enumerate(range(*tile.batch.indices(len(files)))):
                if not isinstance(files[i], str):
                    files[i].features[:, tile.rows, tile.cols] = feats[j]

        lr_feats, _ = pipeline(images, size, callback=put, progress=progress)
    except BaseException:
        for f in files:
            if not isinstance(f, str):
                f.discard()
        raise
    return [
        (job, f if isinstance(f, str) else (_commit, out_dir, job, f, image, lr_feats[i], viz))
        for i, ((job, image), f) in enumerate(zip(group, files))
    ]


def _discard(tasks: list) -> None:
    """Delete the temporary files of the streamed outputs among writers' ``tasks``."""
    for _, task in tasks:
        if not isinstance(task, str) and task[0] is _commit:
            task[3].discard()


def _commit(out_dir, job, feats_file, image, lr_feats, viz: bool) -> None:
    """A streamed image's outputs: its picture drawn from the map, then its file put in place
    (a writer thread's task)."""
    from .atomic import atomic_write_bytes
    from .outputs import comparison_png

    try:
        png = None
        if viz:
            with _VIZ_LOCK:
                png = comparison_png(image, lr_feats, feats_file.features, title=job.path.name)
        feats_file.commit()
    except BaseException:
        feats_file.discard()
        raise
    if png is not None:
        atomic_write_bytes(out_dir / f"{job.stem}_viz.png", png)


#: Matplotlib and the PCA's seeded global generator serve one picture at a time.
_VIZ_LOCK = threading.Lock()


def _write(out_dir, job, fmt, save_dtype, image, lr_feats, hr_feats, viz: bool) -> None:
    """One image's outputs, each written atomically (a writer thread's task)."""
    from .atomic import atomic_write_bytes
    from .outputs import comparison_png, save_features

    save_features(out_dir / f"{job.stem}.{fmt}", hr_feats, fmt, save_dtype)
    if viz:  # the picture of what the file holds (as a streamed output's is)
        with _VIZ_LOCK:
            png = comparison_png(image, lr_feats, hr_feats.to(save_dtype), title=job.path.name)
        atomic_write_bytes(out_dir / f"{job.stem}_viz.png", png)


# -- torchrun ---------------------------------------------------------------------------------


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    return (
        int(os.environ["RANK"]),
        int(os.environ["WORLD_SIZE"]),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(device: torch.device) -> None:
    """Join torchrun's process group: nccl on GPUs (one per rank), gloo on the CPU.

    The ranks meet only at the end (the counts, then a barrier), so one whose share of images
    finished early may wait long for the others (large photos at full size): the group's
    time-out is a day, not torch's 30 (gloo) or 10 (nccl) minutes, after which the waiting
    rank failed and torchrun stopped the ones still working."""
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(days=1))


@contextlib.contextmanager
def process_group(device: torch.device, world_size: int):
    """torchrun's process group joined for the block (:func:`init_distributed`; nothing for
    one process), and left however the block ends: after an error as after success."""
    if world_size == 1:
        yield
        return
    import torch.distributed as dist

    init_distributed(device)
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def _with_the_others():
    """A collective of the ranks (a barrier, a sum) that fails because another process of the
    run has ended (gloo: "Connection closed by peer"), told in one line: the other's own error,
    which says why, is above; a traceback of this one would only hide it."""
    try:
        yield
    except RuntimeError as e:  # torch's DistBackendError is one
        why = re.sub(r"^\[[^\]]*\]\s*", "", str(e).strip()).split(". ")[0].splitlines()[0]
        raise LoftUpError(
            f"another process of this run has ended ({why[:200]}), so this one cannot finish; "
            "its error says why"
        ) from None


def barrier(world_size: int) -> None:
    """Wait until every rank is here (nothing for one process)."""
    if world_size > 1:
        import torch.distributed as dist

        with _with_the_others():
            dist.barrier()


def summed(counts: list[int], world_size: int) -> list[int]:
    """Counts summed over all ranks (failures: every rank gets the same exit status)."""
    if world_size == 1:
        return list(counts)
    import torch.distributed as dist

    t = torch.tensor(counts, dtype=torch.long)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    with _with_the_others():
        dist.all_reduce(t)
    return t.tolist()
