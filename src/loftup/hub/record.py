"""The record :func:`~loftup.hub.save_pretrained` writes beside an upsampler's weights (its
hyper-parameters, backbone and what that backbone is given), in ``config.json`` and as a copy
in the safetensors header of ``model.safetensors``, and how it is read back: what the weights'
shapes do not say (the heads, the backbone) comes from here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..escaping import printable
from ..model import LoftUpConfig
from .trained_weights import own_weights, run_weights_dim  # noqa: F401  (importable here)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_TAG = "loftup"
#: The key of the safetensors header's metadata that holds config.json's record (the run's
#: metadata aside)
RECORD_KEY = "loftup"
#: The record's key for the digest of the weights it was written with (:func:`weights_digest`):
#: config.json and the header's copy of one save hold the same, so that a config.json left by
#: an earlier save (one cut short between its two files) is told from the weights' own.
DIGEST_KEY = "weights_digest"
#: The record's key for the width of the backbone weights the upsampler was trained on, where
#: those are not its recorded backbone's own (given to save_pretrained as ``backbone_weights``:
#: a small model of its architecture, or one fine-tuned at its width): its load then asks for
#: those weights (first at another width; in a warning at the same). An extra key, which
#: earlier readers pass over.
WEIGHTS_DIM_KEY = "backbone_weights_dim"


def weights_digest(state: dict, floats: torch.dtype | None = None) -> str:
    """sha256 of a state dict's names, dtypes, shapes and values, by name (the order a file
    gives them in is no matter; about 0.14 s per 100 MB on 2 CPU cores); ``floats``: the dtype
    its floating-point tensors are hashed in, each converted on the CPU as it is hashed (a
    copy of one tensor at a time). The one digest of weights:
    :func:`loftup.extract.record.weights_digest` is its first 16 characters in float32."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu()
        if floats is not None and t.is_floating_point():
            t = t.to(floats)
        t = t.contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_recordable(backbone, backbone_norm, metadata, dim: int | None = None) -> None:
    """A UsageError where what :func:`~loftup.hub.save_pretrained` is to record is not what its
    load reads back: a backbone that is not a name, or a name no registry knows (an
    :class:`~loftup.errors.UnknownNameError`, as the load's, with the names meant), a
    ``backbone_norm`` of no :data:`~loftup.featurizers.INPUT_NORMS` entry, ``metadata`` that
    JSON cannot hold (a date, a path, a tensor). Said before anything is written: the load
    that refused them came after, perhaps after a push to the hub. ``dim``: the upsampler's
    width, whose backbones a blank one is given as the example."""
    from ..checks import shown
    from ..errors import UsageError
    from ..featurizers import check_input_norm

    if backbone is not None and not isinstance(backbone, str):  # a featurizer itself, say
        raise UsageError(
            f"backbone is a backbone's name (dinov2_vits14, say) or None, got {shown(backbone)}"
        )
    if backbone is not None:
        _check_backbone_name(backbone, dim)
    if backbone_norm is not None:
        check_input_norm(backbone_norm, "backbone_norm")
    odd = _not_json(metadata, "metadata")
    if odd is not None:
        raise UsageError(
            f"{odd}, which config.json cannot hold: pass strings, numbers, booleans, None, lists "
            "and dicts (a path or a date as a string)"
        )


def _check_backbone_name(backbone: str, dim: int | None) -> None:
    """An error where the load of a record of ``backbone`` (a string) would refuse it: its
    backbone is built by name (:func:`loftup.featurizers.resolve`: a registered name or an
    alias); a hub id or a folder names its weights, which the load is given apart. A blank
    one is given a backbone of ``dim``-d features as the example (dinov2_vits14 was given for
    any width, which the save then refused for another)."""
    from ..errors import UnknownNameError
    from ..featurizers import FEATURIZERS, example_of_dim, refuse_blank, resolve

    absent = ", or backbone=None to record none"
    refuse_blank(backbone, absent=absent, example=example_of_dim(dim))
    repo, _, revision = backbone.partition("@")  # facebook/dinov2-small@main: its revision
    named = sorted(n for n, spec in FEATURIZERS.items() if spec.default_weights == repo)
    if named and backbone not in FEATURIZERS:  # facebook/dinov2-small: dinov2_vits14's weights
        at = (  # (refuse_revision: a backbone's weights are read from the main branch)
            f" (from {repo}'s main branch: for another revision, pass a local folder of it at "
            "load, backbone_weights=)"
            if revision
            else ""
        )
        raise UnknownNameError(
            f"backbone {backbone!r} is the hub id of the weights of {' and '.join(named)}; "
            f"record the backbone's name ({named[0]}): its weights are found from it{at}"
        )
    try:
        resolve(backbone)
    except UnknownNameError as e:
        if "/" in repo and backbone not in FEATURIZERS:  # a fine-tuned model's hub id
            raise UnknownNameError(
                f"backbone {backbone!r} is a hub id, which names weights, not a backbone: record "
                "the registered backbone of its architecture (dinov2_vits14, say), and give "
                f"these weights at load, backbone_weights={repo!r}"
            ) from None
        raise UnknownNameError(
            f"backbone: {e}; the load builds the recorded backbone by its name (a backbone of "
            "your own: register it first, loftup.featurizers.register; its weights are given "
            "at load, backbone_weights=)"
        ) from None


def _not_json(value, where: str) -> str | None:
    """Where in ``value`` (named ``where``) is something JSON cannot hold, and what it is; None
    where there is nothing of the kind."""
    if isinstance(value, float) and not math.isfinite(value):  # written as null, silently
        return f"{where} is {value!r} (JSON has no NaN or infinity: None or a string instead)"
    if _scalar(value):
        return None
    if isinstance(value, (list, tuple)):
        items = enumerate(value)
    elif isinstance(value, dict):
        bad = next((k for k in value if not _scalar(k)), None)  # JSON writes 1 as "1"
        if bad is not None:
            return f"{where} has the key {bad!r}, a {type(bad).__name__}"
        items = value.items()
    else:
        return f"{where} is a {type(value).__name__}"
    for key, item in items:
        found = _not_json(item, f"{where}[{key!r}]")
        if found is not None:
            return found
    return None


def _scalar(value) -> bool:
    """Whether JSON holds ``value`` as it is (a dict's key too)."""
    return value is None or isinstance(value, (str, int, float, bool))


def config_from(d, where: str, fix: str = "") -> LoftUpConfig:
    """``LoftUpConfig.from_dict(d)``, with a bad key or value a CheckpointError naming ``where``."""
    try:
        return LoftUpConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: {printable(str(e))}{fix}") from None


def backbone_norm_of(info: dict, where: str, fix: str = "") -> str | None:
    """A record's "backbone_norm" (None where it has none), or a CheckpointError."""
    from ..featurizers import INPUT_NORMS

    value = info.get("backbone_norm")
    if value is not None and value not in INPUT_NORMS:
        raise CheckpointError(
            f'{where}: "backbone_norm" must be one of {", ".join(INPUT_NORMS)} or null, got '
            f"{value!r}{fix}"
        )
    return value


def weights_dim_of(info: dict, where: str, fix: str = "") -> int | None:
    """A record's :data:`WEIGHTS_DIM_KEY` (None where it has none), or a CheckpointError."""
    value = info.get(WEIGHTS_DIM_KEY)
    if value is not None and (type(value) is not int or value < 1):
        raise CheckpointError(
            f'{where}: "{WEIGHTS_DIM_KEY}" must be a width (a positive integer) or null, got '
            f"{value!r}{fix}"
        )
    return value


def read_record(
    info, where: str, fix: str
) -> tuple[LoftUpConfig, str | None, str | None, int | None]:
    """(config, backbone, backbone_norm, backbone_weights_dim) of a save_pretrained record
    (config.json's object, or the copy in its weights' header); a record that is not one is a
    CheckpointError naming ``where`` and ``fix``."""
    if not isinstance(info, dict):
        raise CheckpointError(
            f"{where} holds a JSON {type(info).__name__}, but a loftup config is an "
            f'object {{"format": "loftup", "config": {{...}}, "backbone": ...}}{fix}'
        )
    if info.get("format") != FORMAT_TAG:
        raise CheckpointError(f'{where} is not a loftup config (no "format": "loftup"){fix}')
    if not isinstance(info.get("config"), dict):
        raise CheckpointError(
            f'{where}: "config" must be an object of the upsampler\'s hyper-parameters '
            f'({{"dim": 384, "num_heads": 4, ...}}), got {info.get("config")!r}{fix}'
        )
    backbone = info.get("backbone")
    if backbone is not None and not isinstance(backbone, str):
        raise CheckpointError(
            f'{where}: "backbone" must be a backbone name or null, got {backbone!r}{fix}'
        )
    norm = backbone_norm_of(info, where, fix)
    weights_dim = weights_dim_of(info, where, fix)
    return config_from(info["config"], where, fix), backbone, norm, weights_dim


def header_info(path: Path, metadata: dict | None) -> dict | None:
    """The save_pretrained record in a safetensors file's header as written (a copy of
    config.json's object), or None where it has none (a file of an earlier save, or a torch
    pickle); a record that is no JSON is a CheckpointError. ``metadata``: the header's metadata
    as :func:`~.files.read_weights_file` read it from ``path`` (None for a torch pickle)."""
    text = (metadata or {}).get(RECORD_KEY)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise CheckpointError(
            f"{path}'s header record is corrupt ({printable(str(e))}); write it again with "
            "save_pretrained"
        ) from None


def header_record(
    path: Path, metadata: dict | None
) -> tuple[LoftUpConfig, str | None, str | None, int | None] | None:
    """The save_pretrained record in a safetensors file's header (a copy of config.json's), as
    :func:`read_record` gives it, or None where it has none (a file of an earlier save, or a torch pickle). ``metadata``: as
    :func:`header_info` takes it."""
    info = header_info(path, metadata)
    if info is None:
        return None
    return read_record(info, f"{path}'s header record", "; write it again with save_pretrained")


def check_intact(weights: Path, state: dict, fix: str, metadata: dict | None) -> None:
    """A CheckpointError where ``state``, read from save_pretrained's ``weights``, is not what
    was saved: the digest its header recorded differs from theirs (bytes changed since, the
    file's length the same, so its header still reads). Files without one are not checked.
    ``metadata``: as :func:`header_info` takes it."""
    header = header_info(weights, metadata)
    digest = header.get(DIGEST_KEY) if isinstance(header, dict) else None
    if digest is not None and weights_digest(state) != digest:
        raise CheckpointError(
            f"{weights} is damaged: its weights are not those save_pretrained wrote (their "
            f"{DIGEST_KEY} is not the one in its own header: bytes changed since, on a disk, in "
            f"a copy or a download){fix}"
        )


def check_same_save(
    info: dict, config_file: Path, weights: Path, state: dict, metadata: dict | None
) -> None:
    """A CheckpointError where ``config_file``'s record ``info`` was written with other weights
    than ``weights`` holds (their digests differ): save_pretrained writes the weights, then
    config.json, and one stopped between the two left the new weights beside the earlier
    save's record; so are torch.save's weights (pytorch_model.bin) put beside another save's
    config.json. Records without a digest (earlier saves) are not compared; weights whose
    header has none (an earlier save's, or written again by another tool) are compared by the
    digest of ``state``, what was read from them (the same weights pass). ``metadata``: as
    :func:`header_info` takes it."""
    digest = info.get(DIGEST_KEY) if isinstance(info, dict) else None
    if digest is None:
        return
    header = header_info(weights, metadata)
    theirs = header.get(DIGEST_KEY) if isinstance(header, dict) else None
    if theirs is None:
        theirs = weights_digest(state)
    if theirs != digest:
        own = (
            f", or delete {config_file.name} to load the weights with the record in their own "
            "header"
            if isinstance(header, dict)
            else ""
        )
        raise CheckpointError(
            f"{config_file} is the record of another save than {weights} (their "
            f"{DIGEST_KEY}s differ: a save_pretrained stopped between the two files, or files "
            f"of two saves put together); write the folder again with save_pretrained{own}"
        )
