"""Relative paths written in a config file: read from the current folder (as the command line's
own paths are, and as Hydra and most tools read them), never from the file's folder, since a
config's meaning must not change with where it is kept. Where a path is missing from the
current folder but found beside the config file, :func:`warn_file_relative` says so, before
the run stops on the missing path (or, for a folder it writes, starts afresh elsewhere)."""

from __future__ import annotations

from pathlib import Path

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


def _a_name(key: str, value: str) -> bool:
    """Whether ``value`` of ``key`` reads as a name rather than a path: a released upsampler
    (``init``), a hub repo or a short SAM name (``org/name`` or ``name``)."""
    from ...hub import ALIASES, RELEASED, looks_like_path

    return ALIASES.get(value, value) in RELEASED or not looks_like_path(value)


def warn_file_relative(file_data: dict, overrides: dict, config: Path) -> None:
    """Warn, for each path key that the config file ``config`` sets (``file_data``) and no
    override replaces, where its relative path does not exist from the current folder but does
    from the file's: the user who keeps configs beside their data expects it read from there."""
    import os
    import warnings

    if os.environ.get("RANK", "0") != "0":  # under torchrun: said once, by rank 0
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
            f"config key {key}: {value} {what} (relative paths in a config file are read from "
            f"the current folder); it exists relative to the config file, as {beside.resolve()}: "
            f"write that path in {config.name}, or run from {folder.resolve()}",
            stacklevel=3,
        )
