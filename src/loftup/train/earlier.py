"""What a resumed run keeps of its folder, read before the run changes anything there: the
earlier ``run.json`` (its starts) and the ``metrics.csv`` rows before the checkpoint's step
(:func:`read_earlier`). Read where the folder was first changed (``summary.json`` deleted,
``config.yaml`` and ``run.json`` written), one of them that this user may not read refused a
resume that had already changed the folder, the models and data built for nothing.

:func:`check_resume` reads them (and the checkpoint) as a resume will: the up-front check of
``loftup demo --resume``, which trains one run after another (a refusal in the second run came
after the first was trained on); ``loftup experiment``'s calls :func:`read_earlier` itself.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LoftUpError
from ..escaping import printable
from ..read_refusal import read_refused
from .checkpoint import CHECKPOINT_NAME, unpack_history
from .monitor import METRICS_NAME, RECORD_NAME

#: The option that chose a training's folder as ``loftup train`` takes it; ``loftup demo``
#: and ``loftup experiment`` give their own (``--out``) to :func:`loftup.train.train`.
OUT_OPTION = "--out (log.out_dir)"

#: What each file a resume reads is, in a refusal ("cannot read record OUT/run.json: ...").
_WHAT = {CHECKPOINT_NAME: "training checkpoint", RECORD_NAME: "record", METRICS_NAME: "metrics"}


@dataclass
class Earlier:
    """A resumed run's ``record`` (the earlier run.json; None: none, or a damaged one, said)
    and ``rows`` (metrics.csv's rows of the steps before the checkpoint's)."""

    record: dict | None = None
    rows: list[dict] = field(default_factory=list)
    #: the name a damaged earlier run.json is kept as (None: not damaged) where the run writes
    #: its own (:func:`~.run_folder.open_run_folder`): run.json.broken, or where an earlier
    #: damaged one is kept there, the first free run.json.broken.1, .2, ...
    broken: str | None = None


def read_earlier(
    out_dir: Path, step: int, another: str = OUT_OPTION, history: dict | None = None
) -> Earlier:
    """The :class:`Earlier` of the run in ``out_dir`` resumed at ``step``; a file of them this
    user may not read is a :class:`~loftup.errors.PathPermissionError` with its fix and
    ``another`` (the option that chose the folder), nothing in the folder changed.
    ``history``: the checkpoint's (packed), which a damaged metrics.csv's rows are rebuilt
    from (without it, such a file is refused: a :class:`~loftup.errors.LoftUpError`)."""
    record, broken = _record(out_dir / RECORD_NAME, another)
    rows = _rows(out_dir, step, another, history)
    return Earlier(record, rows, broken=broken)


def check_resume(out_dir: Path, another: str) -> dict | None:
    """Read what resuming the run in ``out_dir`` reads, as it reads it (its checkpoint,
    run.json, metrics.csv), refusing what it would refuse (a checkpoint that cannot be
    loaded, a file this user may not read: with its fix and ``another``) and saying what it
    would say (a damaged metrics.csv rebuilt from the checkpoint's history); returns the
    checkpoint (None where the folder holds none: the run starts afresh, and reads nothing).
    The up-front check of ``loftup demo --resume``, which trains one run after another: a
    refusal in the second run came after the first was trained on (its folder changed).

    The checkpoint's tensors are memory-mapped, not held in memory (read once for their
    checksums; its config, step and history are what a refusal needs): the run loads it in
    full once, with its folder locked, as it is then (another process may have taken it
    further meanwhile)."""
    from .checkpoint import has_checkpoint, load_checkpoint

    path = out_dir / CHECKPOINT_NAME
    if not has_checkpoint(path, another):  # a link to nothing refused
        return None
    ckpt = load_checkpoint(path, another, mapped=True)
    read_earlier(out_dir, ckpt.get("step", 0), another, ckpt.get("history"))
    return ckpt


def _record(path: Path, another: str) -> tuple[dict | None, str | None]:
    """The run record at ``path`` (None where there is none, or a damaged one) and the name a
    damaged one is kept as where the run writes its own (said, as a warning: a free one, an
    earlier damaged record kept there not written over); one this user may not read raises
    read_json_object's PathPermissionError (no ValueError): it is not written over."""
    from ..atomic import read_json_object

    try:
        return read_json_object(path, _WHAT[RECORD_NAME], another=another), None
    except ValueError as e:  # a BrokenFileError: it names the file
        kept = _free_name(path.parent, f"{RECORD_NAME}.broken")
        _say_once(
            path,
            f"{printable(str(e))}; it is kept as {kept} (the record of the run's earlier starts), "
            "this start's record is written",
        )
        return None, kept


def _free_name(folder: Path, name: str) -> str:
    """``name``, or where ``folder`` holds it (a file, a folder, a link), the first of
    ``name``.1, .2, ... that it does not hold."""
    number, candidate = 0, name
    while (folder / candidate).is_symlink() or (folder / candidate).exists():
        number += 1
        candidate = f"{name}.{number}"
    return candidate


def _rows(out_dir: Path, step: int, another: str, history: dict | None) -> list[dict]:
    """metrics.csv's rows of the steps before ``step`` (none to keep at step 0: not read). A
    damaged file (a value or step that is no number, a row of too few or extra fields, binary
    bytes; given a history, a missing or empty file, or rows missing a step of the history) is
    said and its rows rebuilt from the checkpoint's ``history`` (packed: the same scalars);
    without one it is refused, naming the file and the fix (a missing file: no rows)."""
    path = out_dir / METRICS_NAME
    held = _steps_held(history, step)
    if not step or (not held and not path.exists()):
        return []
    try:
        with open(path, newline="") as f:
            rows = [row for row in map(_row, csv.DictReader(f)) if row["step"] < step]
        lacking = sorted(held - {row["step"] for row in rows})
        if not lacking:
            return rows
        problem = f"metrics {path} is damaged (it holds no row of {_steps(lacking)})"
    except FileNotFoundError:
        problem = f"metrics {path} is damaged (it is missing)"
    except PermissionError as e:
        raise read_refused(path, e, _WHAT[METRICS_NAME], another=another) or e from None
    except (ValueError, TypeError, KeyError, csv.Error, UnicodeDecodeError) as e:
        problem = f"metrics {path} is damaged ({type(e).__name__}: {printable(str(e))})"
    if history is None:
        raise LoftUpError(f"{problem}; move it away to resume (its rows are lost)")
    _say_once(path, f"{problem}; its rows are rebuilt from the checkpoint's history")
    return [
        {k: v for k, v in row.items() if k == "step" or v == v}  # NaN: a value a row lacked
        for row in unpack_history(history)
        if row["step"] < step
    ]


def _steps_held(history: dict | None, step: int) -> set[int]:
    """The steps before ``step`` that the checkpoint's ``history`` (packed) holds rows of."""
    if not history or "step" not in history["keys"]:
        return set()
    column = history["values"][:, history["keys"].index("step")].tolist()
    return {int(s) for s in column if s < step}


def _steps(steps: list[int]) -> str:
    """``steps`` (sorted) in a few words: "step 3", "steps 0, 1, 2", "5 steps (0, 1, ... 9)"."""
    if len(steps) == 1:
        return f"step {steps[0]}"
    if len(steps) <= 3:
        return "steps " + ", ".join(map(str, steps))
    return f"{len(steps)} steps ({steps[0]}, {steps[1]}, ... {steps[-1]})"


def _row(raw: dict) -> dict:
    """One metrics.csv row as numbers (``step`` an int; a blank value, a column the row's step
    lacked, left out); a ValueError or TypeError where it holds anything else (a row of extra
    fields holds them as a list, under None; a row of too few fields, None values)."""
    step = raw["step"]
    if not isinstance(step, str) or not step.isdigit():
        raise ValueError(f"step {step!r} is no step number")
    cut = [k for k, v in raw.items() if v is None]
    if cut:
        raise ValueError(f"the row of step {step} has too few fields (no {', '.join(cut)})")
    return {k: (int(v) if k == "step" else float(v)) for k, v in raw.items() if v not in (None, "")}


#: the damaged files said (path, size, change time): a demo's or an experiment's up-front
#: check reads each begun run's files again as its training does, said once
_SAID: set[tuple] = set()


def _say_once(path: Path, warning: str) -> None:
    """Log ``warning`` about the file ``path`` unless it was said of it as it is now."""
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except FileNotFoundError:  # a missing metrics.csv
        key = (str(path.resolve()), None, None, None)
    except OSError:
        key = None
    if key is None or key not in _SAID:
        logging.getLogger("loftup.train").warning("%s", warning)
    if key is not None:
        _SAID.add(key)
