"""The seconds ``loftup demo`` spends on each phase (scenes, training, evaluation) over every run
of it (:class:`PhaseSeconds`): kept in its record, ``demo.json``, as each phase ends or is
stopped, so that a demo gone on with ``--resume`` reports the seconds of the runs before it too
(its report counted the resumed process's alone: a 400 s training stopped and finished in 60 s
was said to take 60 s)."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

from ..atomic import read_json_object, write_json
from .demo_out import RECORD

#: The phases whose seconds a record holds (another key, an edited record's, is not added up),
#: by the names :meth:`PhaseSeconds.phase` is given (it refuses another: one renamed in the
#: demo alone was left out of a resume's seconds, and said lost).
SCENES, TRAINING, EVALUATION = PHASES = ("scenes", "training", "evaluation")


class PhaseSeconds:
    """The demo's record in ``out`` (its ``options``, and ``seconds``: {phase: seconds spent
    on it in all}), written as this is made and again as each :meth:`phase` ends, an error or
    a stop (SIGTERM, Ctrl-C) too; ``resume``: the seconds the record holds are gone on from
    (a demo killed outright, ``kill -9``, lost those of the phase it was in)."""

    def __init__(self, out: Path, options: dict, resume: bool) -> None:
        self._record, self._options = Path(out) / RECORD, options
        self.seconds: dict[str, float] = {}
        #: whether a run before lost seconds: killed outright in a phase (its ``running`` left
        #: in the record), said by the report ("at least N s"), kept for the resumes after
        self.lost = False
        if resume:
            self.seconds, self.lost = _kept(self._record)
        self._save()

    @contextlib.contextmanager
    def phase(self, name: str):
        """The block is the phase ``name``: its seconds are added to those of the runs before,
        and recorded as it ends, however it ends (the record says it ``running`` meanwhile:
        a run killed outright is known to have lost them). ``name``: one of :data:`PHASES`."""
        if name not in PHASES:
            raise ValueError(f"no demo phase {name!r}: one of {', '.join(PHASES)}")
        self._save(running=name)
        start = time.perf_counter()
        try:
            yield
        except BaseException:  # stopped: recorded where it can be, the stop going on
            self._add(name, start)
            with contextlib.suppress(OSError):
                self._save()
            raise
        self._add(name, start)
        self._save()

    def _add(self, name: str, start: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def _save(self, running: str | None = None) -> None:
        marks = {"running": running} if running else {}
        if self.lost:
            marks["seconds_lost"] = True
        write_json(self._record, {**self._options, "seconds": self.seconds, **marks})


def _kept(record: Path) -> tuple[dict[str, float], bool]:
    """The seconds per phase that the demo's ``record`` holds (the runs before a resume), each
    a finite number of at least 0 (an edited one otherwise is left out, and said lost), and
    whether a run lost some (killed in a phase, or said so by the record, or a record with no
    seconds: one of an earlier version, which kept none, or no record beside scenes: one of an
    earlier version still, which wrote none); none where nothing is there or the record cannot
    be read (refused before, by :func:`.demo_out.check_begun`)."""
    try:
        saved = read_json_object(record)
    except (ValueError, OSError):
        return {}, False
    if saved is None:  # no run before, or one of an earlier version that kept no record: its
        return {}, (record.parent / "scenes").exists()  # scenes, gone on with, took seconds
    seconds = saved.get("seconds")
    lost = "running" in saved or saved.get("seconds_lost") is True
    if not isinstance(seconds, dict):
        return {}, True
    kept = {k: _seconds(v) for k, v in seconds.items() if k in PHASES}
    kept = {k: v for k, v in kept.items() if v is not None}
    return kept, lost or len(kept) != len(seconds)


def _seconds(value) -> float | None:
    """``value`` as seconds: a finite number of at least 0, else None (an integer too large
    for a float, ``1`` and 400 zeros, raised OverflowError: a traceback, not said lost)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
