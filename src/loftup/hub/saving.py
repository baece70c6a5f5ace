"""Write an upsampler as :func:`save_pretrained` does (``model.safetensors`` + ``config.json``,
each atomically), for :func:`~.loading.load_upsampler` to read back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..atomic import atomic_write, write_json
from ..checks import shown
from ..errors import UsageError
from ..listing import in_a_loop
from ..model import LoftUp
from ..paths import check_folder_output, existing_ancestor
from .record import (
    CONFIG_NAME,
    DIGEST_KEY,
    FORMAT_TAG,
    RECORD_KEY,
    WEIGHTS_DIM_KEY,
    WEIGHTS_NAME,
    check_recordable,
    own_weights,
    weights_digest,
)


def save_pretrained(
    model: LoftUp,
    directory: str | os.PathLike,
    *,
    backbone: str | None = None,
    backbone_norm: str | None = None,
    metadata: dict | None = None,
    backbone_weights: str | os.PathLike | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (hyper-parameters, backbone and what it
    is given, its ``input_norm``) to a folder, each atomically: the weights first, their
    record in their own header too. Both records hold the weights' digest, so a config.json
    left by an earlier save (a save stopped between the two files) is said on load.

    A backbone whose registered width is not ``model.dim`` is refused (the load would pair them
    and fail), unless ``backbone_weights`` says which weights it was trained on: a model of the
    same architecture (fine-tuned, or of another width: a small one), whose width is theirs.
    That is recorded (``"backbone_weights_dim"``), at any width, not their path (one of this
    machine): give them again at load, ``backbone_weights=``, which its load then asks for
    (first where the widths differ; in a warning where they agree, the backbone's own weights
    run). A model loaded from such a record and saved with the same backbone keeps it."""
    return write_pretrained(model, directory, backbone, backbone_norm, metadata, backbone_weights)


def write_pretrained(
    model, directory, backbone, backbone_norm, metadata, backbone_weights, backbone_dim=None
) -> Path:
    """:func:`save_pretrained`; ``backbone_dim`` (not None) is the width of the features the
    backbone gave ``model`` in training (its featurizer's ``dim``: ``loftup train``'s export),
    trusted in place of the registered width, which a backbone of one's own may declare
    otherwise than its builder gives."""
    from safetensors.torch import save_file

    from .. import __version__

    model = _unwrapped(model)
    directory = _folder(directory)
    own = getattr(model, "backbone", None)
    backbone = backbone if backbone is not None else own
    backbone_norm = backbone_norm or getattr(model, "backbone_norm", None)
    check_recordable(backbone, backbone_norm, metadata, model.dim)  # before either file is written
    weights_dim = None
    named = isinstance(backbone_weights, (str, os.PathLike)) and os.fspath(backbone_weights).strip()
    if backbone_weights is not None and not named:  # 3, True, "": recorded as weights given
        raise UsageError(
            "save_pretrained's backbone_weights names the weights the upsampler was trained on, "
            f"a local folder or a hub id (a string or a path), got {shown(backbone_weights)}; "
            "or leave it out where they were the backbone's own"
        )
    if backbone is None and backbone_weights is not None:  # they were dropped without a word
        from ..featurizers import example_of_dim

        raise UsageError(
            f"save_pretrained(backbone_weights={shown(backbone_weights)}) names the weights of a "
            "backbone, but no backbone is recorded (backbone= is not given and the upsampler "
            "records none), so they would be dropped: pass backbone= too, the registered "
            f"backbone of their architecture (backbone={example_of_dim(model.dim)!r}, say)"
        )
    if backbone is not None:
        # trained on weights other than the backbone's own (of another width, or fine-tuned at
        # its width): given now, or recorded by the save it was loaded from (at either width)
        given = backbone_weights is not None or (
            backbone == own and getattr(model, "backbone_weights_dim", None) == model.dim
        )
        weights_dim = _weights_dim(model, backbone, given, backbone_dim, backbone_weights)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    info = {
        "format": FORMAT_TAG,
        "loftup_version": __version__,
        "config": model.config.to_dict(),
        "backbone": backbone,
        "backbone_norm": backbone_norm,
        # the same in both files: a config.json left by an earlier save is told on load
        DIGEST_KEY: weights_digest(state),
    }
    if weights_dim is not None:  # an extra key: earlier readers pass it over
        info[WEIGHTS_DIM_KEY] = weights_dim
    # the record in the weights' own header too (what their shapes do not say: the heads, the
    # backbone), so the file alone, copied without config.json, loads as the same upsampler
    header = {"format": "pt", RECORD_KEY: json.dumps(info)}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata=header))
    if metadata:
        info["metadata"] = metadata
    write_json(directory / CONFIG_NAME, info)
    return directory


def _weights_dim(model: LoftUp, backbone: str, given: bool, backbone_dim: int | None, weights):
    """``model.dim`` where ``model`` was trained on weights of ``backbone``'s architecture
    other than its own (``given``), of its width whichever the registered one: the record's
    :data:`~.record.WEIGHTS_DIM_KEY`, which its load asks for (at the same width too: dropped,
    the load ran the backbone's own weights without a word); None where it was trained on the
    backbone's own weights (none given, or ``weights`` its hub id) and the widths agree, or
    those weights gave it ``model.dim`` (``backbone_dim``); else a UsageError: recorded, its
    load paired them and refused the pairing."""
    from ..featurizers import backbones_of_dim, resolve

    spec = resolve(backbone)
    if given and not own_weights(backbone, weights, model.dim):
        return model.dim
    if spec.dim == model.dim or backbone_dim == model.dim:
        return None
    names = [n for n in backbones_of_dim(model.dim) if n != spec.name]
    other = (
        f"a different backbone, of {model.dim}-d features: {', '.join(names)}"
        if names
        else f"no registered backbone gives {model.dim}-d features: register yours first, "
        "loftup.featurizers.register"
    )
    raise UsageError(
        f"backbone {backbone} gives {spec.dim}-d features but this upsampler takes "
        f"{model.dim}-d ones, so its load could not pair them; if it was trained on weights of "
        f"{backbone}'s architecture at {model.dim}-d (a model of another size), pass them too, "
        f"backbone_weights=PATH (and at load again, backbone_weights=, CLI "
        f"--backbone-weights); if it was trained on another backbone, record that one ({other})"
    )


def _folder(directory) -> Path:
    """``directory`` as a Path (``~`` expanded, as load_upsampler reads it), or a UsageError
    where no folder can be made there: an empty string (Path("") is the current folder, which
    the load refuses), a file, a link to nothing, a file in place of a folder above it, a
    folder (or the first one above it that is there) that takes no new files: read-only, or
    not this user's (it was a PermissionError's traceback from the first write)."""
    if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory).strip():
        raise UsageError(
            "save_pretrained's directory is a folder's path (made where missing), got "
            f"{shown(directory)} (an unset variable?)"
        )
    directory = Path(directory).expanduser()
    p = existing_ancestor(directory)  # the folder or the first above it that is there
    shown_p = directory if p == Path(os.path.abspath(directory)) else p
    if p.is_symlink() and not p.exists():
        make, what = "make that folder, remove the link,", "which does not exist"
        if in_a_loop(p):  # no folder can be made there
            make, what = "remove the link", "which leads back to itself (a loop of links)"
        raise UsageError(
            f"save_pretrained cannot write to {directory}: {shown_p} is a link to "
            f"{os.readlink(p)}, {what}; {make} or pass another path"
        )
    if not p.is_dir():
        raise UsageError(
            f"save_pretrained writes a folder, but {shown_p} is a file: pass a folder's "
            "path (made where missing) that has no file in its place or above it"
        )
    check_folder_output(directory, "save_pretrained's directory")  # takes files, as commands'
    return directory


def _unwrapped(model) -> LoftUp:
    """The LoftUp that ``model`` is or wraps (``torch.compile``'s module, whose weights are
    named ``_orig_mod.*``, or DistributedDataParallel's, ``module.*``: saved as they are, the
    load found none of its weights); a UsageError for anything else."""
    while not isinstance(model, LoftUp):
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module):
            raise UsageError(f"save_pretrained saves a LoftUp, got {shown(model)}")
        model = inner
    return model
