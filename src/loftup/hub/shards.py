"""A sharded weights file's index (transformers' ``model.safetensors.index.json``): how it is
named (:data:`INDEX_SUFFIX`) and the shard files it names (:func:`shard_names`)."""

from __future__ import annotations

import os
from pathlib import Path

#: How a shard index is named: the weights file it stands for, then this (transformers'
#: ``model.safetensors.index.json``, ``pytorch_model.bin.index.json``)
INDEX_SUFFIX = ".index.json"


def shard_names(index: str | os.PathLike) -> list[str]:
    """The shard files a shard index names (its ``weight_map``'s values, each once, sorted),
    relative to its folder; none where it cannot be read (the load that reads it names it) and
    none that would lie outside that folder."""
    import json

    try:
        names = set(json.loads(Path(index).read_text())["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    return sorted(
        n
        for n in names
        if isinstance(n, str) and n and not n.startswith(("/", "\\")) and ".." not in Path(n).parts
    )
