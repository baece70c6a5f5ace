"""The record an :func:`~loftup.extract.upsample_folder` run goes on from, settled before the
models it was passed are converted (:func:`_settled`): every refusal of its options said
while nothing is changed."""

from __future__ import annotations

from pathlib import Path

from .run_models import as_compared


def _settled(
    out: Path, options: dict, saved, *, jobs, fmt, viz, resume: bool, said_as, weights, racing=False
):
    """The record ``saved`` of ``out`` that a run of ``options`` over ``jobs`` goes on from,
    and the differences of one it replaces (:func:`~loftup.extract.stale_record`: None then,
    as the record; a file there at an output's name is then not loftup's); ``options["outputs"]``
    set to what the folder then holds. Refused where its files were made with other options
    (:func:`~loftup.extract.check_options`; an earlier loftup's digests compared as it took
    them, of ``weights``, the upsampler and a Featurizer passed in or None: :func:`as_compared`)."""
    from . import check_clobbering, check_options, recorded_outputs, stale_record
    from .writers import check_not_writing

    if racing:  # (rank 0's look; the first, every rank's: upsample_folder)
        check_not_writing(out, saved, resume, said_as)  # a --resume would take its files
    options["outputs"] = recorded_outputs(saved, fmt, viz)
    compared = as_compared(options, saved, *weights)  # (outputs are not compared)
    stale = stale_record(out, compared, saved, said_as)
    if stale is not None:  # (none to check against then)
        saved, options["outputs"] = None, recorded_outputs(None, fmt, viz)
        check_clobbering(jobs, out, fmt, viz, None, said_as)  # a user's file it vouched for
    check_options(out, compared, saved, resume=resume, said_as=said_as, racing=racing)
    return saved, stale


def _mtime(path: Path) -> int | None:
    """``path``'s mtime in ns; None where it cannot be read."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
