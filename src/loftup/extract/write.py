"""Writing one image's outputs (a writer thread's task): its features file and, with
``--viz``, its picture, each put in place whole; or, for an image too large to hold, its
features computed tile by tile straight into memory-mapped files (:func:`compute_streamed`)."""

from __future__ import annotations

import contextlib
import math
import threading

import torch


def unwritable(
    feats: torch.Tensor, save_dtype: torch.dtype, dtype: torch.dtype, said_as: dict | None = None
) -> str | None:
    """Why the features ``feats`` (computed in ``dtype``) cannot be stored as ``save_dtype``:
    NaN or infinite values, or values beyond its range (float16 stores above 65504 as
    infinities); None when they can. The fix names the options as ``said_as`` calls them."""
    from ..words import said_with

    lo, hi = (float(v) for v in torch.aminmax(feats))
    top = torch.finfo(save_dtype).max
    if -top <= lo <= hi <= top:  # NaN fails too
        return None
    if math.isfinite(lo) and math.isfinite(hi):
        name = str(save_dtype).removeprefix("torch.")
        why = f"values as large as {max(-lo, hi):.3g}, beyond what {name} holds ({top:.5g})"
        fix = f"store them with {said_with('save_dtype', 'float32', said_as)}"
    else:
        why = "NaN or infinite values"
        fix = (  # bfloat16 has float32's range
            f"float16 overflowed: compute with {said_with('dtype', 'bfloat16', said_as, 'float32')}"
            if dtype == torch.float16
            else "is the backbone or the upsampler sound in this precision?"
        )
    return f"its features hold {why}, so none were written; {fix}"


def compute_streamed(
    pipeline,
    images,
    size,
    group,
    shape,
    out_dir,
    fmt,
    save_dtype,
    progress,
    viz,
    owner,
    said_as=None,
) -> list:
    """Compute a group straight into memory-mapped feature files, tile by tile (``progress``:
    with a bar over the tiles, as such an image can take minutes on a CPU): for each job the
    writer's task that puts its file in place (:func:`commit_streamed` and its arguments), or the reason
    its file could not be made. Nothing is left behind if the computation fails. Each file is
    appended to ``owner`` (:func:`streamed_files`) before it is made, and those finished
    (committed or discarded) are dropped from it."""
    from ..feature_file import FeatureFile
    from .no_room import write_failure

    owner[:] = [f for f in owner if not f.done]
    first = len(owner)  # this group's files: owner[first:]
    files: list = []
    try:
        for job, _ in group:
            try:
                path = out_dir / f"{job.stem}.{fmt}"
                files.append(FeatureFile(path, fmt, save_dtype, shape, owner=owner))
            except OSError as e:  # no room for it, said with its size: known before computing
                nbytes = math.prod(shape) * save_dtype.itemsize
                files.append(
                    write_failure(e, out_dir, nbytes, fmt, save_dtype, said_as, streamed=True)
                )
        if all(isinstance(f, str) for f in files):  # nowhere to put them: nothing to compute
            return list(zip((job for job, _ in group), files))

        reasons: list[str | None] = [None] * len(files)  # why a file cannot be written

        def put(tile, feats: torch.Tensor) -> None:
            for j, i in enumerate(range(*tile.batch.indices(len(files)))):
                if not isinstance(files[i], str) and reasons[i] is None:
                    reasons[i] = unwritable(feats[j], save_dtype, pipeline.dtype, said_as)
                    if reasons[i] is None:
                        files[i].features[:, tile.rows, tile.cols] = feats[j].to("cpu", save_dtype)

        lr_feats, _ = pipeline(images, size, callback=put, progress=progress)
        for i, reason in enumerate(reasons):
            if reason is not None:
                files[i].discard()
                files[i] = reason
    except BaseException:  # those already returned too (an interruption as one returns)
        for f in owner[first:]:
            f.discard()
        raise
    return [
        (
            job,
            f
            if isinstance(f, str)
            else (commit_streamed, out_dir, job, f, image, lr_feats[i], viz),
        )
        for i, ((job, image), f) in enumerate(zip(group, files))
    ]


@contextlib.contextmanager
def streamed_files():
    """A list for :func:`compute_streamed`'s ``owner``. A block ended by an exception (a
    SIGTERM or Ctrl-C anywhere, even as a file is made or handed to a writer) discards its
    files that no writer put in place: enter it before the writers' pool, which then ends
    first (its queued tasks done)."""
    files: list = []
    try:
        yield files
    except BaseException:
        for f in files:
            f.discard()
        raise


def commit_streamed(out_dir, job, feats_file, image, lr_feats, viz: bool) -> None:
    """A streamed image's outputs: its picture drawn from the map, then its file put in place
    (a writer thread's task)."""
    from ..atomic import atomic_write_bytes
    from ..outputs import comparison_png

    try:
        png = None
        if viz:
            with _VIZ_LOCK:
                png = comparison_png(image, lr_feats, feats_file.features, title=job.given.name)
        feats_file.commit()
    except BaseException:
        feats_file.discard()
        raise
    if png is not None:
        atomic_write_bytes(out_dir / f"{job.stem}_viz.png", png)


#: Matplotlib and the PCA's seeded global generator serve one picture at a time.
_VIZ_LOCK = threading.Lock()


def write_outputs(out_dir, job, fmt, save_dtype, image, lr_feats, hr_feats, viz: bool) -> None:
    """One image's outputs, each written atomically (a writer thread's task)."""
    from ..atomic import atomic_write_bytes
    from ..outputs import comparison_png, save_features

    save_features(out_dir / f"{job.stem}.{fmt}", hr_feats, fmt, save_dtype)
    if viz:  # the picture of what the file holds (as a streamed output's is)
        with _VIZ_LOCK:
            png = comparison_png(image, lr_feats, hr_feats.to(save_dtype), title=job.given.name)
        atomic_write_bytes(out_dir / f"{job.stem}_viz.png", png)
