"""The record an :func:`~loftup.extract.upsample_folder` run goes on from, settled before the
models it was passed are converted (:func:`_settled`): every refusal of its options said
while nothing is changed; and the record written as the run begins (:func:`begin_record`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import LoftUpError
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


def settled_racing(out: Path, options: dict, now: dict | None, settle: dict):
    """:func:`_settled` of the record ``now`` that another run wrote in ``out`` while this one
    loaded its models (``settle``: _settled's other arguments), its refusal said so: checked
    against as this run's first look was, not overwritten unseen (two runs of other options
    both wrote their files under one record; another ``--format``'s kind of output left out of
    it, its files then called not loftup's)."""
    try:
        return _settled(out, options, now, **settle, racing=True)
    except LoftUpError as e:
        raise LoftUpError(
            f"another run began writing in {out} while this one loaded its models: {e}"
        ) from None


def settled_again(out: Path, options: dict, read, saved, stale, settle: dict, rank, world):
    """(the record as read now, the record gone on from, the differences of one replaced),
    after rank 0's second look at ``out``'s record, under its lock, once the models are read
    and before :func:`loftup.api.load_pipeline` converts those passed in: one that another run
    wrote since ``read`` is settled (:func:`settled_racing`; a refusal came after the
    conversion, which changed the caller's LoftUp in place for a run that did nothing), and a
    refusal said by every rank (:func:`.torchrun.judged_by_rank_0`). ``saved`` and ``stale``
    as they were where nothing changed."""
    from . import read_record
    from .record_lock import record_lock
    from .torchrun import judged_by_rank_0

    def look():
        if not out.is_dir():  # (no folder: no record to look at, nor lock to take)
            return None
        with record_lock(out):
            now = read_record(out, resume=settle["resume"], said_as=settle["said_as"])
            return None if now == read else (now, *settled_racing(out, options, now, settle))

    raced = judged_by_rank_0(look, rank, world)
    return (read, saved, stale) if raced is None else raced


def begin_record(out: Path, options: dict, run_id: str, read, saved, stale, settle: dict):
    """Rank 0's start of the run ``run_id`` in ``out``'s record, under its lock: a record that
    another run wrote while this one loaded its models settled (:func:`settled_racing`: not
    overwritten unseen), what a killed run was writing removed (or kept where a run listed may
    be writing it: :func:`.writers.keeps_unfinished`), and the record written, listing this run
    as writing (``options["run"]`` its id). Returns its ``alone_since`` (None where unknown)."""
    import sys

    from ..errors import printable
    from . import OPTIONS_NAME, outputs_of, read_record, remove_unfinished, write_options
    from .record_lock import record_lock
    from .writers import entry, keeps_unfinished, running_entries, warn_elsewhere

    resume, said_as = settle["resume"], settle["said_as"]
    options["run"] = run_id  # what mark_finished knows its own record by
    with record_lock(out):  # not while another run marks its record (reads, rewrites)
        # another run's record, written while this one loaded its models, checked against as
        # this run's first look was: not overwritten unseen (two runs of other options both
        # wrote their files under one record; another --format's kind of output left out of
        # it, its files then called not loftup's)
        now = read_record(out, resume=resume, said_as=said_as)
        if now != read:  # (written while load_pipeline converted: refused after it)
            saved, stale = settled_racing(out, options, now, settle)
        # what a killed run was writing (before any rank writes)
        jobs, fmt, viz = settle["jobs"], settle["fmt"], settle["viz"]
        own = [out / OPTIONS_NAME, *(p for j in jobs for p in outputs_of(out, j, fmt, viz))]
        if resume:  # (one writing on this host was refused: _settled)
            warn_elsewhere(out, saved)
        # all, or its own; none where a run listed may be writing them (not --resume's)
        kept = not resume and keeps_unfinished(out, saved, own, said_as)
        removed = 0 if kept else remove_unfinished(out, None if resume else own)
        options["running"] = running_entries(saved, resume, entry(run_id))
        # since when every loftup file there is no older (as the record it goes on from), in
        # the record from the start: a run that goes on from it keeps it whichever run ends
        # last (a run joining, or a --resume over a killed one's)
        alone = None if saved is None else saved.get("alone_since")
        if type(alone) is int:
            options["alone_since"] = alone
        write_options(out, options)
        if saved is None and (alone := _mtime(out / OPTIONS_NAME)) is not None:
            write_options(out, {**options, "alone_since": alone})
    if stale is not None:  # a run that ended writing nothing there (every image failed)
        print(printable(f"replacing {out / OPTIONS_NAME}: its run, of other options "
                        f"({stale}), finished leaving no output there"), file=sys.stderr)  # fmt: skip
    if removed:
        print(f"removed {removed} unfinished file(s) of the interrupted run", file=sys.stderr)
    return alone if type(alone) is int else None
