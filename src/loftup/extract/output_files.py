"""Which files in an output folder are taken for loftup's outputs: those of the kinds of
output its record (``upsample.json``) says loftup wrote there (:func:`output_in`)."""

from __future__ import annotations

import os
from pathlib import Path


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
