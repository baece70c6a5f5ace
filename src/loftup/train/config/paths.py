"""The paths a config holds (:data:`PATH_KEYS`).

Written as a shell would take them (:func:`expand_paths`): ``~`` and ``~user`` at the start,
``$VAR`` and ``${VAR}`` anywhere, expanded when the config is loaded, so that the paths it
holds, prints and saves are the ones the run uses; an unset or empty variable is an error
naming it and the key, never a literal ``$DATA`` folder that "does not exist".

Relative paths are read from the current folder (as the command line's own paths are, and as
Hydra and most tools read them), never from the config file's folder, since a config's meaning
must not change with where it is kept. Where a path is missing from the current folder but
found beside the config file, :func:`warn_file_relative` says so, before the run stops on the
missing path (or, for a folder it writes, starts afresh elsewhere)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ...errors import UsageError
from ...escaping import printable, quoted

#: The path keys of a config, each with what it names: "read" (must exist), "read or name"
#: (a path, or a released upsampler's or hub repo's name), "written" (made if missing).
PATH_KEYS = {
    "data.root": "read",
    "init": "read or name",
    "backbone_weights": "read or name",
    "data.sam_weights": "read or name",
    "data.cache_dir": "written",
    "log.out_dir": "written",
}


_MISSING = object()


def _get(data: dict, key: str):
    """``data``'s value at dotted ``key``, or ``_MISSING`` where a part is missing or not a
    section (an override's null is a value: it replaces the file's)."""
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _with(data: dict, parts: list[str], value) -> dict:
    """A copy of ``data`` with ``value`` at the key ``parts`` (the sections on the way copied,
    ``data`` itself left as it is)."""
    out = dict(data)
    out[parts[0]] = value if len(parts) == 1 else _with(data[parts[0]], parts[1:], value)
    return out


#: A variable's name, as the shell takes it; then ``$$`` (a literal ``$``), ``$NAME`` and
#: ``${...}`` (its closing brace may be missing: an error)
_NAME = "[A-Za-z_][A-Za-z0-9_]*"
_VARIABLE = re.compile(rf"\$(?:(\$)|({_NAME})|\{{([^}}]*)(\}}?))")


def expand_path(value: str, key: str, where: str) -> str:
    """``value`` of config key ``key`` with a leading ``~`` or ``~user`` expanded, then every
    ``$NAME`` and ``${NAME}`` replaced by the environment's value (once: a value holding ``$`` is
    not expanded again) and ``$$`` by ``$``; any other ``$`` is left as written (``share$/x``).
    An unset or empty variable, or a ``${`` that is not ``${NAME}``, is a UsageError naming the
    variable, ``key`` and ``where`` it was written (``in config x.yaml``)."""
    head, rest = "", value
    if value.startswith("~"):  # as the shell: the home folder of the start only, not $VAR's
        head, sep, rest = value.partition("/")
        head = os.path.expanduser(head) + sep

    def replace(match: re.Match) -> str:
        dollar, name, braced, closed = match.groups()
        if dollar:
            return "$"
        if braced is not None and not (closed and re.fullmatch(_NAME, braced)):
            raise UsageError(
                f"config key {key} ({quoted(value)}, {where}): {match.group(0)!r} is not a "
                "variable; "
                "write $NAME or ${NAME} (no defaults or other shell forms), or $$ for a literal $"
            )
        name = name or braced
        found = os.environ.get(name)
        if not found:
            state = "is not set" if found is None else "is set but empty"
            raise UsageError(
                f"config key {key} ({quoted(value)}, {where}): the environment variable {name} "
                f"{state}; "
                f"export {name}=... before the run, or write the path out ($$ for a literal $)"
            )
        return found

    return head + _VARIABLE.sub(replace, rest)


def expand_paths(data: dict, where: str, replaced: dict | None = None) -> dict:
    """``data`` (a config's keys, as a file or the overrides give them) with the string value
    of each of :data:`PATH_KEYS` expanded by :func:`expand_path`, but those that ``replaced``
    (the overrides) sets, which are never used; a copy where any changes."""
    for key in PATH_KEYS:
        value = _get(data, key)
        if replaced is not None and _get(replaced, key) is not _MISSING:
            continue
        if isinstance(value, str):
            expanded = expand_path(value, key, where)
            if expanded != value:
                data = _with(data, key.split("."), expanded)
    return data


def as_written(config: dict) -> dict:
    """``config`` (:meth:`TrainConfig.to_dict`'s, its paths expanded) as a config file writes
    it, naming the folders the run uses: each ``$`` of a path doubled, and a leading ``~`` (of
    a path a dict or ``--data``/``--out`` gave as written) the home folder it stands for, as
    the run reads it (``Path.expanduser``; :func:`check_home`). A printed or saved config read
    back as a file (``--config run/config.yaml``) so gives the same folders, not an expansion
    of a folder's own ``$`` (``./~/x`` was written for ``~/x``: no other folder, since ``Path``
    drops the ``./``, but not the one the run used to whoever reads it)."""
    for key in PATH_KEYS:
        value = _get(config, key)
        if isinstance(value, str) and ("$" in value or value.startswith("~")):
            written = os.path.expanduser(value).replace("$", "$$")
            config = _with(config, key.split("."), written)
    return config


def as_used(written: dict) -> dict:
    """A config as :func:`as_written` wrote it (a run's ``config.yaml``) with the paths the run
    used: each ``$$`` of a path read back as ``$`` (a leading ``~`` it has already expanded)."""
    for key in PATH_KEYS:
        value = _get(written, key)
        if isinstance(value, str) and "$$" in value:
            written = _with(written, key.split("."), value.replace("$$", "$"))
    return written


def check_home(key: str, value: str) -> None:
    """A UsageError where path ``value`` of config key ``key`` starts with ``~user`` of no user
    of this machine: the run reads every path with ``Path.expanduser``, which raised a bare
    RuntimeError at its start (nor does ``./~user`` name a folder of that name: ``Path`` drops
    the ``./``)."""
    from ...data.paths import home_expanded

    if value.startswith("~"):
        home_expanded(value, f"config key {key}")


def _a_name(key: str, value: str) -> bool:
    """Whether ``value`` of ``key`` reads as a name rather than a path: a released upsampler
    (``init``), a hub repo or a short SAM name (``org/name`` or ``name``)."""
    from ...hub import ALIASES, RELEASED, looks_like_path

    return ALIASES.get(value, value) in RELEASED or not looks_like_path(value)


def warn_file_relative(file_data: dict, overrides: dict, config: Path) -> None:
    """Warn, for each path key that the config file ``config`` sets (``file_data``) and no
    override replaces, where its relative path does not exist from the current folder but does
    from the file's: the user who keeps configs beside their data expects it read from there."""
    import warnings

    from ...ranks import is_main_process

    if not is_main_process():  # under torchrun: said once, by rank 0
        return
    folder = config.parent
    for key, kind in PATH_KEYS.items():
        value = _get(file_data, key)
        if not isinstance(value, str) or not value or _get(overrides, key) is not _MISSING:
            continue
        path = Path(value)
        if value.startswith("~") or path.is_absolute() or path.exists():
            continue
        if kind == "read or name" and _a_name(key, value):
            continue
        beside = folder / path
        if not beside.exists():
            continue
        here = Path.cwd()
        if kind == "written":
            what = f"is written in the current folder, {here / path}, where it does not exist yet"
        else:
            what = f"does not exist in the current folder, {here}"
        warnings.warn(
            printable(
                f"config key {key}: {value} {what} (relative paths in a config file are read from "
                "the current folder); it exists relative to the config file, as "
                f"{beside.resolve()}: "
                f"write that path in {config.name}, or run from {folder.resolve()}"
            ),
            stacklevel=3,
        )
