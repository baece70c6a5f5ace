"""Whether the backbone weights an upsampler was trained on are its backbone's own
(:func:`own_weights`): its record then names no other weights (:data:`~.record.WEIGHTS_DIM_KEY`),
which a load would ask for."""

from __future__ import annotations

import os
from pathlib import Path


def run_weights_dim(obj: dict, dim: int) -> int | None:
    """``dim`` (the upsampler's width) where ``obj`` is a ``loftup train`` checkpoint of a run
    on backbone weights of its own (its "config" names them, not as the backbone's own hub
    id), as the run's ``final/`` records it (:data:`~.record.WEIGHTS_DIM_KEY`); else None."""
    run = obj.get("config")
    weights = run.get("backbone_weights") if isinstance(run, dict) else None
    if not isinstance(weights, str) or own_weights(obj.get("backbone"), weights, dim):
        return None
    return dim


def own_weights(backbone, weights, dim: int) -> bool:
    """Whether ``weights`` names the registered ``backbone``'s own weights (its default hub id,
    or a snapshot of that repo in a Hugging Face cache: the local files an offline machine is
    told to give), of ``dim``-d features as it is registered: no other weights to record, or
    ask for."""
    from ..errors import LoftUpError
    from ..featurizers import resolve

    if not isinstance(weights, (str, os.PathLike)) or not isinstance(backbone, str):
        return False
    try:
        spec = resolve(backbone)
    except LoftUpError:  # (a record's backbone loftup cannot build is said where it is built)
        return False
    if spec.default_weights is None or spec.dim != dim:
        return False
    return os.fspath(weights) == spec.default_weights or _snapshot_of(weights, spec.default_weights)


def _snapshot_of(folder, repo: str) -> bool:
    """Whether ``folder`` is a snapshot of hub repo ``repo`` in a Hugging Face cache (its
    ``models--ORG--NAME/snapshots/COMMIT``, here or copied elsewhere), by its name alone: a
    training checkpoint's record names the folder of the machine it ran on."""
    path = Path(os.fspath(folder)).expanduser().absolute()
    cached = path.parent.parent.name == "models--" + repo.replace("/", "--")
    return cached and path.parent.name == "snapshots"
