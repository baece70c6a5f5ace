"""One ``loftup upsample`` run over a folder: inputs collected, the folder's record
(``upsample.json``) checked and, with ``resume``, gone on from, the pipeline loaded, and the
files written by this process's share (:func:`~loftup.extract.run`), under torchrun by every
process together.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LoftUpError, printable
from .run_models import _backbone_record, _check_model, _recorded_model, read_models
from .run_options import (
    _modules,
    _own_dtype,
    _plain_ints,
    _run_device,
    check_run_options,
    input_specs,
)


@dataclass
class FolderReport:
    """What :func:`upsample_folder` did: this process's ``rank`` (0 says the totals),
    ``done`` images written now, ``kept`` already there (resumed) and ``failed`` inputs
    (unreadable, or whose file could not be written), over every process."""

    rank: int
    done: int
    kept: int
    failed: int


def upsample_folder(
    inputs: str | os.PathLike | list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    model: str | os.PathLike | torch.nn.Module = "loftup_dinov2s",
    backbone: str | None = None,
    backbone_weights: str | None = None,
    backbone_size: int = 224,
    backbone_norm: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    save_dtype: str | None = None,
    size=None,
    fmt: str = "pt",
    viz: bool = False,
    batch_size: int = 1,
    writers: int = 2,
    stream_above: float = 1e9,
    resume: bool = False,
    said_as: dict | None = None,
    progress: bool = True,
) -> FolderReport:
    """Upsample the images of ``inputs`` (files, folders or globs) into ``out``, one file each.

    Arguments:
      inputs, out: what to read (a path or glob, or a list of them) and the folder to write
        (made if missing; a :class:`~loftup.errors.UsageError` naming it before any work if it
        cannot be: a file, under one, or a folder that takes no new files).
      model, backbone, backbone_weights, backbone_size, backbone_norm, device, dtype: the
        pipeline (:func:`loftup.api.load_pipeline`; ``model`` a name, a path or a LoftUp,
        ``backbone`` a name or a Featurizer); under torchrun each process takes the GPU of its
        local rank. ``device`` None: where a LoftUp passed in is, else the auto device (CUDA
        when available); ``dtype`` None: a LoftUp's own, else float32 (what ``upsample.json``
        records is the one used). A LoftUp or Featurizer passed in is changed in place as
        :func:`~loftup.load_pipeline` changes it: put in eval mode, and moved or converted
        only where ``device`` or ``dtype`` is given; not before the folder's record is
        checked (a run it refuses changes neither).
      save_dtype: precision of the stored features (default: ``dtype``'s, float32 for
        bfloat16 in ``.npy``, which has no bfloat16).
      size, fmt, viz, batch_size, writers, stream_above (bytes), progress: as
        :func:`loftup.extract.run`.
      resume: go on with an interrupted run in ``out``, whose recorded options must match.
      said_as: how errors call the arguments (``{"backbone_size": "--backbone-size", "out":
        "-o", "resume": "--resume"}``: a command line's options); by default by their names
        (``out``, ``resume=True``: :mod:`loftup.words`).
    """
    from .. import __version__
    from ..api import load_pipeline  # (read now: a test may replace it)
    from ..paths import check_folder_output
    from ..words import said
    from . import (  # the package's names, read now (a test may replace loftup.extract.run)
        barrier,
        check_clobbering,
        collect_inputs,
        dist_env,
        mark_finished,
        process_group,
        read_record,
        recorded_path,
        run,
        summed,
        without_own_pictures,
    )
    from .record import DIGESTS_OF
    from .settle import _settled, begin_record, settled_again
    from .torchrun import judged_by_rank_0
    from .writers import check_not_writing, this_run, unlisted_if_interrupted

    # NumPy's integers as Python's (they passed the checks, then upsample.json's writing
    # failed with a TypeError after the models had loaded)
    size, backbone_size, batch_size, writers = (
        _plain_ints(v) for v in (size, backbone_size, batch_size, writers)
    )
    _check_model(model, said_as)  # a LoftUp failed after the pipeline had loaded (and moved it)
    # a LoftUp passed in keeps its precision unless dtype is given (it was made float32 in
    # place by the default): the dtype recorded is the one it runs in
    given_dtype = dtype
    if dtype is None:
        dtype = _own_dtype(model)
    # before anything is read, loaded or written: a bad one left an upsample.json recording it,
    # which refused the corrected run as one of other options
    dtype, save_dtype = check_run_options(
        fmt, dtype, save_dtype, size, batch_size, writers, said_as
    )
    inputs = input_specs(inputs, said_as)
    given, out = out, Path(out).expanduser()
    rank, world, local_rank = dist_env()
    device = _run_device(device, model, backbone, local_rank if world > 1 else None)
    if world > 1 and device.type == "cuda":
        torch.cuda.set_device(device)
    # left on every way out: a rank that fails leaves it at once, and the others, waiting for
    # it in a collective, end with one line (extract.torchrun._with_the_others), not a traceback
    with (
        process_group(device, world),
        this_run() as run_id,
        unlisted_if_interrupted(rank, said_as) as listed,
    ):
        # a file, under one, a link to nothing, or read-only: said before anything is read or
        # loaded, as the command line's -o, not as the traceback of the first write
        check_folder_output(given, said("out", said_as))
        jobs, missing = collect_inputs(inputs, said_as)
        read = saved = read_record(out, resume=resume, said_as=said_as)  # earlier run's, or refused
        jobs = without_own_pictures(jobs, out, saved)
        if not jobs:
            why = "; ".join(f"{spec}: {reason}" for spec, reason in missing)
            where = " ".join(inputs)
            raise LoftUpError(f"no images found in {where}" + (f" ({why})" if why else ""))
        check_clobbering(jobs, out, fmt, viz, saved, said_as)  # no input, no file not ours
        for spec, reason in missing if rank == 0 else []:
            print(printable(f"skipped {spec}: {reason}"), file=sys.stderr)  # a name's escape
        # read, not converted: a refused run left what was passed in converted (in place, lossily)
        load_dtype = None if given_dtype is None and _modules(model, backbone) else dtype
        upsampler, featurizer, digest, backbone_digest = read_models(
            model,
            backbone,
            backbone_weights,
            backbone_size,
            backbone_norm,
            device,
            load_dtype,
            said_as,
        )
        options = {  # what made the files (--resume compares all but the info-only ones)
            "loftup_version": __version__,
            "model": _recorded_model(model),  # local paths resolved: ./w and /abs/w are one
            "upsampler_sha256": digest,
            "digests_of": DIGESTS_OF,  # (an earlier loftup's digests: of the weights as they ran)
            "backbone": featurizer.name,
            "backbone_weights": recorded_path(backbone_weights),
            "backbone_size": backbone_size,
            # only where it changes the features (CLIP, SigLIP): a record without it (DINOv2, or
            # before the choice existed) then still matches
            "backbone_norm": featurizer.input_norm_key(),
            # the precision the backbone runs in, and a Featurizer passed in's weights (a resume
            # with another one mixed two backbones' features under one record)
            **_backbone_record(backbone_digest, featurizer, load_dtype),
            "size": list(size) if isinstance(size, tuple) else size,
            "format": fmt,
            "dtype": dtype,
            "save_dtype": save_dtype,
            "batch_size": batch_size,
            "outputs": None,  # what the folder holds (_settled)
        }
        weights = (upsampler, featurizer if backbone_digest else None)
        settle = dict(jobs=jobs, fmt=fmt, viz=viz, resume=resume, said_as=said_as, weights=weights)
        check_not_writing(out, saved, resume, said_as, rank, world)  # a --resume takes its files
        saved, stale = _settled(out, options, saved, **settle)
        # as a run that wrote its record while this one read its models is refused: before
        # load_pipeline converts what was passed in (in place), on every rank
        read, saved, stale = settled_again(out, options, read, saved, stale, settle, rank, world)
        # now moved and converted (a Featurizer built by name stays float32 where dtype is None)
        pipeline = load_pipeline(
            upsampler,
            backbone=featurizer,
            backbone_size=backbone_size,
            device=device,
            dtype=load_dtype,
        )
        barrier(world)  # every rank has read the options file before it is rewritten
        out.mkdir(parents=True, exist_ok=True)
        # only rank 0 writes and marks the record (the id is its); what it meets there (a
        # record another run wrote meanwhile, no room left) said by every rank, which wait for
        # it: no rank writes an output before the record that lets --resume go on
        alone = judged_by_rank_0(
            lambda: begin_record(out, options, run_id, read, saved, stale, settle), rank, world
        )
        listed(out, options)  # an error or Ctrl-C from here on takes the run out of its record
        report = run(
            jobs,
            pipeline,
            out,
            size=size,
            fmt=fmt,
            viz=viz,
            batch_size=batch_size,
            rank=rank,
            world_size=world,
            save_dtype=getattr(torch, save_dtype),
            writers=writers,
            stream_above=stream_above,
            resume=resume,
            said_as=said_as,
            progress=progress,
        )
        failed, kept = summed([len(report.failed), report.kept], world)
        # ended: a later run may replace a record of no output; the last of those writing
        # under the record marks it (one killed leaves it unfinished: it may be writing still)
        if rank == 0:
            mark_finished(out, options, len(jobs) - failed, alone, said_as)
        failed += len(missing)
        barrier(world)  # no rank tears gloo down while another is still in a collective
    done = len(jobs) - failed + len(missing) - kept
    return FolderReport(rank=rank, done=done, kept=kept, failed=failed)
