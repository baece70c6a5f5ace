"""The files of an experiment's run folder, read: its ``config.yaml`` (:func:`_saved_config`)
and its records (:func:`_read`).
One that cannot be read refuses the folder (:class:`RunRefused`, which the up-front check,
:func:`~.begun.check_begun`, names with the others); one this user may not read is said with
its mode and owner and the fix (:func:`loftup.read_refusal.read_refused`): deleting the folder would
throw a good run away."""

from __future__ import annotations

from pathlib import Path

from ..errors import LoftUpError, one_line

#: The fix of every refusal of a run folder.
_FIX = "choose another --out or delete that folder"


class RunRefused(LoftUpError):
    """A run folder that cannot be reused or gone on with: ``folder`` ``why``, then the fix
    (with ``also``: the folders of the runs that start from it, to delete with it)."""

    def __init__(self, folder: Path, why: str, also=()) -> None:
        self.folder, self.why, self.also = folder, why, tuple(also)
        fix = _FIX
        if self.also:
            fix += f" and those of the runs that start from it ({', '.join(map(str, also))})"
        super().__init__(f"{folder} {why}; {fix}")


def _saved_config(out: Path, reads=None) -> dict:
    """The config the run in ``out`` saved (its ``config.yaml``), with the paths it used; read
    once a start where ``reads`` (its :class:`~.folder_reads.FolderReads`) is given. Gone,
    damaged, empty or no mapping: the folder refused, its settings cannot be told (a YAML
    error's traceback, "'list' object has no attribute 'get'", or an empty one said to differ
    in every setting stopped the up-front check at that folder)."""
    import yaml

    from ..read_refusal import read_refused
    from ..train.config.paths import as_used

    if reads is not None:
        return reads.config(out)
    path = out / "config.yaml"
    try:
        saved = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RunRefused(out, "holds a finished run whose config.yaml is gone (moved away or "
                         "deleted): its settings cannot be checked") from None  # fmt: skip
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        said = _yaml_problem(e) if isinstance(e, yaml.YAMLError) else one_line(e)
        raise read_refused(path, e, "run config", another="--out") or RunRefused(
            out, f"holds a config.yaml that cannot be read ({said})"
        ) from None
    if not isinstance(saved, dict):
        said = "no settings" if saved is None else f"a {type(saved).__name__}, not settings"
        raise RunRefused(out, f"holds a config.yaml that cannot be read (it holds {said})")
    return as_used(saved)


def _yaml_problem(e) -> str:
    """What YAML said of a file it could not read, and where: one line."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return at + (getattr(e, "problem", None) or one_line(e))


def _record(path: Path, reads=None) -> dict | None:
    """The record ``path`` holds (None: none), read once a start where ``reads`` (its
    :class:`~.folder_reads.FolderReads`) is given: each stage-2 folder's ``init.json`` was read
    5 times, each folder's ``inputs.json`` twice."""
    return reads.record(path) if reads is not None else _read(path)


def _read(path: Path) -> dict | None:
    """A record of a run folder (None: there is none); a damaged one named with the fix, one
    this user may not read said as such by :func:`~loftup.atomic.read_json_object` (chmod, not
    a deleted run)."""
    from ..atomic import read_json_object

    try:
        return read_json_object(path, "run record", another="--out")
    except ValueError as e:
        raise LoftUpError(f"{e}; {_FIX}") from None
