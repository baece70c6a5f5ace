"""Which files in an output folder are loftup's outputs: those of the kinds of output its
record (``upsample.json``) says loftup wrote there (:func:`owned_kinds`, :func:`output_in`,
:func:`owned_output_in`), the kinds its next record names (:func:`recorded_outputs`), the files
of a job (:func:`outputs_of`), the inputs that are an earlier run's pictures
(:func:`without_own_pictures`), and the refusal of a run that would overwrite a file that is
not loftup's (:func:`check_clobbering`). The record itself is :mod:`.record`'s."""

from __future__ import annotations

import os
from pathlib import Path

from .inputs import Job


def output_in(out_dir: Path, kinds: set[str], since_ns: int | None = None) -> Path | None:
    """The first file found under ``out_dir`` (its subfolders too: an output's stem may hold
    folders) of one of ``kinds`` of output (formats, ``x.pt``; ``"viz"``, ``x_viz.png``); with
    ``since_ns``, only one changed since then (its mtime in ns, an earlier one is no output
    written since). A folder that cannot be listed may hold some: it is returned. None where
    there is none (a temporary file, ``.x.pt.XXXXXXXX.tmp``, is no output)."""
    ends = tuple(f".{k}" if k != "viz" else "_viz.png" for k in kinds)
    unlisted: list[OSError] = []
    for root, _, files in os.walk(out_dir, onerror=unlisted.append):
        if unlisted:
            break
        for name in files:
            if name.endswith(ends) and _changed_since(Path(root, name), since_ns):
                return Path(root, name)
    if unlisted:
        return Path(unlisted[0].filename or out_dir)
    return None


def _changed_since(path: Path, since_ns: int | None) -> bool:
    if since_ns is None:
        return True
    try:
        return os.lstat(path).st_mtime_ns >= since_ns
    except OSError:  # (gone meanwhile: none; unreadable: may be one)
        return os.path.lexists(path)


def owned_kinds(saved: dict | None) -> set[str] | None:
    """The kinds of output (formats, ``"viz"``) that the record ``saved`` says loftup wrote in
    its folder; None for a record of an earlier version, which did not say (its runs took
    every output name there as theirs)."""
    if saved is None:
        return set()
    if "outputs" not in saved:
        return None
    kinds = saved["outputs"]
    return {k for k in kinds if isinstance(k, str)} if isinstance(kinds, list) else set()


def owned_output_in(out_dir: Path, saved: dict) -> Path | None:
    """A file in ``out_dir`` (:func:`output_in`) of a kind of output its record ``saved`` says
    loftup wrote there (``x.pt``, ``x_viz.png``); a folder that cannot be listed may hold
    some. Where the record says since when no loftup file there is older (``alone_since``: a
    run began with no record there, and each since went on from its record) and its run left
    no output (``written`` 0), one changed since: an older one is no run's (a user's own
    ``ckpt/model.pt``)."""
    owned = _kinds_or_earlier(saved)
    since = saved.get("alone_since") if saved.get("written") == 0 else None
    return output_in(out_dir, owned, since if type(since) is int else None)


def recorded_outputs(saved: dict | None, fmt: str, viz: bool) -> list[str]:
    """What the record of a run writing ``fmt`` (and pictures with ``viz``) into the folder
    of the record ``saved`` says the folder holds: the earlier runs' kinds and this one's (an
    older record's: its format, and pictures, which those versions took as theirs)."""
    owned = _kinds_or_earlier(saved)
    return sorted(owned | {fmt} | ({"viz"} if viz else set()))


def _kinds_or_earlier(saved: dict) -> set[str]:
    """The kinds of output the record ``saved`` says loftup wrote (:func:`owned_kinds`), or, of
    an earlier version's record that does not say, its format and pictures."""
    owned = owned_kinds(saved)
    return {str(saved.get("format")), "viz"} if owned is None else owned


def outputs_of(out_dir: Path, job: Job, fmt: str, viz: bool) -> list[Path]:
    """The files a job writes."""
    paths = [out_dir / f"{job.stem}.{fmt}"]
    if viz:
        paths.append(out_dir / f"{job.stem}_viz.png")
    return paths


def without_own_pictures(jobs: list[Job], out_dir: Path, saved: dict | None) -> list[Job]:
    """``jobs`` less the ``*_viz.png`` pictures an earlier run wrote into ``out_dir`` (an output
    folder inside, or equal to, an input folder would otherwise feed them back in): those of a
    folder whose record ``saved`` says it holds loftup's pictures. Any other is an input (and
    :func:`check_clobbering` refuses a run whose picture of ``x.png`` would overwrite
    it)."""
    owned = owned_kinds(saved)
    if owned is not None and "viz" not in owned:
        return jobs
    out = out_dir.resolve()
    return [j for j in jobs if not (j.path.name.endswith("_viz.png") and out in j.path.parents)]


def check_clobbering(
    jobs: list[Job], out_dir: Path, fmt: str, viz: bool, saved, said_as: dict | None = None
) -> None:
    """Refuse (before any work) a run that would overwrite a file that is not its own: one of
    its inputs (``-o`` inside an input folder, where ``x.png``'s picture is ``x_viz.png``), or
    a file that no earlier loftup run wrote there (no record ``saved``, or one without that
    kind of output: a user's own ``x.npy`` beside ``x.png``). An earlier run's outputs, which
    a whole run overwrites and a resumed one keeps, are its own."""
    from ..errors import LoftUpError
    from ..words import said
    from .record import OPTIONS_NAME  # (the record's module imports this one)

    inputs = {job.path for job in jobs}  # resolved
    owned = owned_kinds(saved)
    what = {fmt: "features", "viz": f"picture ({said('viz', said_as)})"}
    recorded = {fmt: f".{fmt} features", "viz": f"pictures ({said('viz', said_as)})"}
    for job in jobs:
        for kind, path in zip((fmt, "viz"), outputs_of(out_dir, job, fmt, viz)):
            if not os.path.lexists(path):
                continue
            if path.resolve() in inputs:
                raise LoftUpError(
                    f"{path} is an input of this run, and the {what[kind]} of {job.given} would "
                    f"overwrite it; choose another {said('out', said_as)} (outside the input "
                    "folders)"
                )
            # (a folder in its place cannot be replaced: that image fails, as it writes)
            if owned is not None and kind not in owned and not path.is_dir():
                why = f"its {OPTIONS_NAME} records no {recorded[kind]}"
                if saved is None:
                    why = f"no {OPTIONS_NAME} in {out_dir}"
                raise LoftUpError(
                    f"{path} is not loftup's ({why}), and the {what[kind]} of {job.given} would "
                    f"overwrite it; move it away, or choose another {said('out', said_as)}"
                )
