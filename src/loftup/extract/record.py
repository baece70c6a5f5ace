"""The record of ``loftup upsample``'s output folder (``upsample.json``, the options that made
its files): read, compared, written and marked finished; ``--resume`` refuses to mix files
made with other options. Which files are loftup's own, what the files of a job are, and the
refusal of a run that would overwrite a file that is not loftup's, are :mod:`.output_files`'
(its names are importable from here too).
Errors call the folder and going on as ``said_as`` says (:func:`loftup.words.said`: ``-o`` and
``--resume`` from the command line, ``out`` and ``resume=True`` from Python)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..atomic import read_json_object
from ..errors import LoftUpError, PathPermissionError
from ..words import said, said_value
from .output_files import (  # noqa: F401  (importable from here, as before)
    check_clobbering,
    outputs_of,
    owned_kinds,
    owned_output_in,
    recorded_outputs,
    without_own_pictures,
)
from .writers import mark_finished  # noqa: F401  (importable from here, as before)

#: What ``loftup upsample`` leaves beside its outputs: the options that made them.
OPTIONS_NAME = "upsample.json"
#: Recorded in it but not compared by ``--resume``: they do not change the files' bytes
#: (``outputs``: the kinds of file loftup wrote in the folder, :func:`recorded_outputs`;
#: ``run``: the id of the run that wrote it; ``running``: those writing under it,
#: :func:`.writers.running_entries`; ``finished`` and ``written``: that the runs writing under it have
#: all ended, and how many images' files the last left, :func:`.writers.mark_finished`;
#: ``alone_since``: it began with no record there, :func:`.output_files.owned_output_in`;
#: ``digests_of``: the precision its weights' digests are of, :data:`DIGESTS_OF`).
_INFO_ONLY = (
    *("loftup_version", "model", "outputs", "run", "running", "finished", "written"),
    *("alone_since", "digests_of"),
)
#: ``upsample.json``'s ``digests_of``: its ``upsampler_sha256`` and ``backbone_sha256`` are
#: of the weights in float32 (:func:`weights_digest`). A record without it, by a loftup before
#: it, holds the digests of the weights as they ran, converted to its ``dtype`` (the
#: upsampler) and ``backbone_dtype`` (a Featurizer passed in): :func:`.run_models.as_compared`.
DIGESTS_OF = "float32"
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
    """A short SHA-256 of a module's state, its floating-point tensors in float32 (names,
    shapes and values): the same weights give the same digest wherever they were loaded from
    and in whichever precision they are held (bfloat16 and float16 widen to float32 exactly),
    the digest of the weights themselves: ``upsample.json``'s ``upsampler_sha256`` and
    ``backbone_sha256``, taken before a run converts them to its ``dtype``, and an evaluation's
    record. The first 16 hex digits of :func:`loftup.hub.record.weights_digest` in float32
    (save_pretrained's record holds that of the weights as saved, whole)."""
    from ..hub.record import weights_digest as state_digest

    return state_digest(module.state_dict(), torch.float32)[:16]


def read_record(out_dir: Path, *, resume: bool, said_as: dict | None = None) -> dict | None:
    """``out_dir``'s ``upsample.json``, the record of the run that made its files (None when
    there is none). Refused (:class:`LoftUpError`) when that file is not a record loftup wrote
    (unreadable, or without ``loftup_version``): a user's own file of that name, which a run
    would overwrite; and with ``resume``, a folder of files with no record (nothing says what
    made them; hidden files are none of them)."""
    path = out_dir / OPTIONS_NAME
    flag, out = (f"{said('resume', said_as)}: " if resume else ""), said("out", said_as)
    try:
        saved = read_json_object(path, another=out)  # unreadable: chmod, or another -o
        if saved is not None and "loftup_version" not in saved:
            raise ValueError(f"{path} is not a record of loftup upsample (no loftup_version)")
    except PathPermissionError as e:  # said as the option it follows from, as below
        raise type(e)(f"{flag}{e}") from None
    except ValueError as e:
        if not os.path.lexists(path):  # a name the file system cannot hold: no file to move
            raise LoftUpError(f"{flag}{e}; choose another {out}") from None
        raise LoftUpError(
            f"{flag}{e}, and this run would write its record there; move the file away, or "
            f"choose another {out}"
        ) from None
    # hidden files are no outputs: macOS's .DS_Store in a folder made in the Finder, or the
    # temporary file of a run killed while it wrote its record, which this run removes (read
    # whole: a generator left open is closed where dropped, a stop in it lost: loftup.stops)
    if (
        saved is None
        and resume
        and out_dir.is_dir()
        and [p for p in out_dir.iterdir() if not p.name.startswith(".")]
    ):
        raise LoftUpError(
            f"{flag}{out_dir} holds files but no {OPTIONS_NAME}, so the options that made "
            f"them are unknown; choose another {out}, or empty it to compute them all again"
        )
    return saved


def check_options(
    out_dir: Path,
    options: dict,
    saved: dict | None,
    *,
    resume: bool,
    said_as: dict | None = None,
    racing: bool = False,
) -> None:
    """Refuse a run into ``out_dir`` whose files were made with other ``options`` than its
    record ``saved`` (:func:`read_record`) says, naming each difference: the record describes
    every file in it, so a run with other options there would leave files that the record
    misdescribes (and that a later ``--resume`` would keep); another ``--format`` is allowed,
    resumed or not: its files are others, and the record's other options describe them too."""
    if saved is None:
        return  # nothing there yet: a resumed run of nothing is a run
    diff = _differences(options, saved, said_as)
    if diff:
        flag, out = (f"{said('resume', said_as)}: " if resume else ""), said("out", said_as)
        again = f" (with {said('resume', said_as)} to skip what is done)"
        fix = "use the same options" + ("" if resume else again)
        running = ""
        if not racing:  # (racing: another run began writing while this one loaded: it runs)
            found = owned_output_in(out_dir, saved)  # a walk of the folder
            if saved.get("finished") is not True and found is None:
                running = (  # a run on its first image, one killed, or an earlier loftup's
                    "; its record does not say its run finished (a run may be writing there "
                    "now, was killed, or was written by an earlier loftup), and no output is "
                    f"there now: if no run is writing there, remove {out_dir / OPTIONS_NAME}"
                )
            elif found is not None and saved.get("finished") is True and saved.get("written") == 0:
                running = f"; its run left no output there, but {found} is taken for one"
        raise LoftUpError(
            f"{flag}the files in {out_dir} were made with other options ({'; '.join(diff)}); "
            f"{fix}, or another {out}{running}"
        )


def _differences(options: dict, saved: dict, said_as: dict | None = None) -> list[str]:
    """Each option of ``options`` that the record ``saved`` says otherwise, said as its caller
    gives it (``size 100000 there, 16 now``; ``--size 100000 there, 16 now`` where ``said_as``
    names it; ``upsampler_sha256`` as "-m's weights" on the command line, as the key from
    Python); another format is none: its files are others. The ``backbone_dtype`` of a
    backbone that ran in the run's ``dtype`` both times is not named beside it (a run in
    another dtype is told its precision alone)."""
    skip = (*_INFO_ONLY, "format")
    if all(_recorded(d, "backbone_dtype") == _recorded(d, "dtype") for d in (options, saved)):
        skip = (*skip, "backbone_dtype")  # it differs where dtype does, which is named
    elif saved.get("backbone_dtype") is None and str(saved.get("model")).endswith(" passed in"):
        skip = (*skip, "backbone_dtype")  # a record before it, of a LoftUp passed in: its
        # backbone by name ran in its dtype or in float32 (dtype None), which it does not say
    return [
        f"{said(key, said_as)} {said_value(key, saved.get(key), said_as)} there, "
        f"{said_value(key, value, said_as)} now"
        for key, value in options.items()
        if key not in skip and _recorded(saved, key) != value
    ]


def _recorded(record: dict, key: str):
    """``record``'s ``key`` as this version records it (:func:`_as_recorded`); a
    ``backbone_dtype`` of None (a backbone loaded by name, recorded so before it was recorded
    for every run) as the record's ``dtype``, which it ran in where ``model`` was loaded by
    name too (:func:`_differences` does not compare it where a LoftUp was passed in)."""
    if key == "backbone_dtype" and record.get(key) is None:
        key = "dtype"
    return _as_recorded(key, record.get(key))


def stale_record(
    out_dir: Path, options: dict, saved: dict | None, said_as: dict | None = None
) -> str | None:
    """Where the record ``saved`` of ``out_dir`` is of other ``options``, says its run finished
    (:func:`.writers.mark_finished`) and describes no file there (no file of a kind of output it
    records: its run wrote none, every image failing, or they were deleted since), the
    differences, said as :func:`check_options` says them; else None. Such a record is
    replaced, not a reason to refuse every later run with other options. One whose run has
    not finished is not: that run may be on its first image still (it writes its record
    before any output), and would go on writing under the record of this one."""
    if saved is None or saved.get("finished") is not True:
        return None
    diff = _differences(options, saved, said_as)
    if not diff or owned_output_in(out_dir, saved) is not None:
        return None
    return "; ".join(diff)


def _as_recorded(key: str, saved):
    """A recorded option as this version records it: a path an earlier version recorded as
    given (``./w``) resolved from here, which is where a re-run usually starts; a precision
    by its name (``upsample_folder(dtype="half")`` recorded "half", now "float16")."""
    if key in _PATHS and isinstance(saved, str):
        return recorded_path(saved)
    if key in ("dtype", "save_dtype") and isinstance(saved, str):
        from ..checks import as_dtype
        from ..errors import UsageError

        try:
            return str(as_dtype(saved)).removeprefix("torch.")
        except UsageError:  # no precision at all: differs from any
            return saved
    return saved


def remove_unfinished(out_dir: Path, outputs: list[Path] | None = None) -> int:
    """Delete the temporary files (:func:`loftup.atomic.leftovers`) that a killed run left in
    ``out_dir``; returns how many. All of them for a resumed run, which takes over from the
    run that made them (another run writing there now would lose its files); for a whole run,
    those of its own ``outputs`` alone, which it writes again (a killed run's reserved a
    streamed output's full size, and nothing else would ever remove them), not those of a
    run of another format writing there now."""
    unfinished = unfinished_files(out_dir, outputs)
    for tmp in unfinished:
        tmp.unlink(missing_ok=True)
    return len(unfinished)


def unfinished_files(out_dir: Path, outputs: list[Path] | None = None) -> list[Path]:
    """The temporary files :func:`remove_unfinished` removes."""
    from ..atomic import leftovers

    unfinished = leftovers(out_dir)
    if outputs is not None:
        own = {(p.parent, os.fsdecode(os.fsencode(p.name)[:200])) for p in outputs}
        # .NAME.XXXXXXXX.tmp (atomic.temp_beside: NAME cut to 200 bytes)
        unfinished = [t for t in unfinished if (t.parent, t.name[1:-13]) in own]
    return unfinished


def write_options(out_dir: Path, options: dict) -> None:
    """``out_dir/upsample.json``, put in place whole."""
    from ..atomic import write_json

    write_json(out_dir / OPTIONS_NAME, options, sort_keys=True)
