"""When the runs of an experiment began, to tell a stage-2 folder from before ``init.json``
that began before its stage-1 run was trained again or on (:func:`_begun_before`)."""

from __future__ import annotations

from pathlib import Path

#: Seconds by which the stage-1 checkpoint must be newer than the stage-2 one for a stage-2
#: folder without run.json times to be refused: a copy made without keeping the files' times
#: (``cp -r``) writes them all within moments, in any order.
_COPY_SLACK = 600


def _begun_before(out: Path, stage1: Path) -> bool:
    """Whether the stage-2 run in ``out`` first began before the stage-1 run in ``stage1``
    last started (its first start or a resume), both read from their ``run.json``: one
    clock, whatever the files' times (a copy that did not keep them) or the reader's time
    zone. A start without an offset (written before loftup wrote one) is read in the other
    record's offset. With no such times, the files' times, only where unambiguous: the
    stage-1 checkpoint written well after the stage-2 run's last checkpoint."""
    first, latest = _starts(out)[:1], _starts(stage1)[-1:]
    if first and latest:
        zone = next((t.tzinfo for t in (*first, *latest) if t.tzinfo), None)
        first, latest = (t.replace(tzinfo=t.tzinfo or zone) for t in (*first, *latest))
        return latest > first
    try:
        one, two = ((f / "checkpoint.pt").stat().st_mtime for f in (stage1, out))
    except OSError:
        return False
    return one > two + _COPY_SLACK


def _starts(out: Path) -> list:
    """The starts the ``run.json`` of ``out`` records (``started``, then each resume's), as
    datetimes in the order written; those that cannot be read left out (a run.json that this
    user may not read raises read_json_object's PathPermissionError, with the fix)."""
    import datetime

    from ..atomic import read_json_object

    try:
        record = read_json_object(out / "run.json", another="--out") or {}
    except ValueError:  # damaged: no times (the files' are looked at)
        record = {}
    resumes = record.get("resumes") if isinstance(record.get("resumes"), list) else []
    times = []
    for value in [
        record.get("started"),
        *(r.get("started") for r in resumes if isinstance(r, dict)),
    ]:
        try:
            times.append(datetime.datetime.fromisoformat(value))
        except (TypeError, ValueError):
            pass
    return times
