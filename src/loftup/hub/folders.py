"""A folder of an upsampler's weights read with its record: what
:func:`~loftup.hub.save_pretrained` wrote (``model.safetensors`` + ``config.json``, or the
record in the weights' header alone), or torch.save's weights (a hub snapshot's
``pytorch_model.bin``, a training checkpoint) beside a ``config.json`` that must then agree
with them. :func:`~loftup.hub.load_upsampler` reads every folder so."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..convert import converted
from ..errors import CheckpointError, WeightsNotFoundError
from ..escaping import printable
from ..model import LoftUpConfig
from .damaged import check_links
from .file_heads import check_regular_file
from .files import read_weights_file
from .record import (
    CONFIG_NAME,
    FORMAT_TAG,
    WEIGHTS_NAME,
    backbone_norm_of,
    check_intact,
    check_same_save,
    config_from,
    header_record,
    read_record,
)


def read_folder(
    path: Path,
) -> tuple[dict, dict, LoftUpConfig | None, str | None, str | None, int | None, bool]:
    """(obj, state, config, backbone, backbone_norm, backbone_weights_dim, own_layout) of the
    upsampler in folder ``path`` (``obj``: what its weights file holds, in its own layout: the
    paper's or loftup's, ``own_layout`` whether loftup's): save_pretrained's files (config.json, else the record in the weights' header),
    else a torch.save file (pytorch_model.bin, model.pt, model.pth) with its record; a folder
    of none of these (a training run's, say) is a WeightsNotFoundError saying what to give."""
    cfg_file, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    check_links(path, (WEIGHTS_NAME, CONFIG_NAME, "pytorch_model.bin", "model.pt", "model.pth"))
    if weights.exists():
        fix = "; write the folder again with save_pretrained (or loftup train)"
        if not cfg_file.exists():  # it records what the weights do not say (the heads)
            # read first (opened once, its header with it): a Git LFS pointer or a cut file is
            # said as such (read_weights' error), not as a missing config.json
            obj, meta = read_weights_file(weights)
            recorded = header_record(weights, meta)
            if recorded is None:
                raise WeightsNotFoundError(
                    f"{path} has {WEIGHTS_NAME} but no {CONFIG_NAME}, which records the "
                    f"upsampler's hyper-parameters and backbone (a copy cut short?){fix}"
                )
            state, _, own = converted(obj, str(weights))
            check_intact(weights, state, fix, meta)
            return (obj, state, *recorded, own)
        info = _config_json(cfg_file, fix)
        recorded = read_record(info, str(cfg_file), fix)
        obj, meta = read_weights_file(weights)
        state, _, own = converted(obj, str(weights))
        check_intact(weights, state, fix, meta)
        check_same_save(info, cfg_file, weights, state, meta)
        return (obj, state, *recorded, own)
    for name in ("pytorch_model.bin", "model.pt", "model.pth"):
        if (path / name).exists():
            return pickle_with_record(path / name, cfg_file)
    run = [
        p
        for p in (path / "final", path / "checkpoint.pt")
        if (p / WEIGHTS_NAME).exists() or p.is_file()
    ]
    hint = f"; it is a training run's folder: give {run[0]}" if run else ""
    raise WeightsNotFoundError(
        f"{path} holds no weights: expected {WEIGHTS_NAME} + {CONFIG_NAME} (save_pretrained) "
        f"or pytorch_model.bin{hint}"
    )


def _config_json(cfg_file: Path, fix: str, *, only_loftup: bool = False):
    """``cfg_file``'s JSON (UTF-8, or UTF-16/32 as JSON allows), or None where there is no such
    file; one that cannot be read (cut short, no text, no file, another encoding) is a
    CheckpointError naming it, never passed over. ``only_loftup``: beside a torch.save file,
    which loads without it (a backbone's or another tool's config.json), it is refused so only
    where its bytes name loftup; else passed over with a warning naming it (None)."""
    if not cfg_file.exists() and not cfg_file.is_symlink():
        return None
    if cfg_file.exists() and not cfg_file.is_file():  # a FIFO's read waits for a writer
        if only_loftup:
            _pass_over(cfg_file, "is not a regular file")
            return None
        check_regular_file(cfg_file, "config file ")
    try:
        data = cfg_file.read_bytes()
        return json.loads(data)  # a UnicodeDecodeError (Latin-1, say) is a ValueError too
    except OSError as e:
        why, data = f"cannot be read ({e.strerror})", b""
    except ValueError as e:  # cut short, or no text
        why = f"is corrupt ({printable(str(e))})"
    if only_loftup and b"loftup" not in data.lower():
        _pass_over(cfg_file, why)
        return None
    raise CheckpointError(f"{cfg_file} {why}{fix}") from None


def _pass_over(cfg_file: Path, why: str) -> None:
    """Warn that ``cfg_file``, beside weights that load without it, is passed over (``why``)."""
    import warnings

    warnings.warn(printable(f"{cfg_file} {why}: not a loftup config, passed over"), stacklevel=5)


def pickle_with_record(file: Path, cfg_file: Path):
    """(obj, state, config, backbone, backbone_norm, backbone_weights_dim, own_layout) of
    torch.save's ``file`` in a folder (``obj``
    what the file holds, a training checkpoint's whole dict say; ``own_layout``, whether it
    holds loftup's layout, not the paper's), whether the folder or the
    file itself was given: read with
    save_pretrained's ``cfg_file`` where it is one (``"format": "loftup"``; another's, a
    backbone's say, is not), which must be the record of these weights (their digest) and
    agree with the record the file carries itself (a training checkpoint's model_config and
    backbone); else with the file's own record, if any."""
    fix = (
        f"; write the folder again with save_pretrained, or delete {cfg_file.name} to load "
        f"{file.name} with its own record"
    )
    obj, meta = read_weights_file(file)  # opened once: no header read again below
    state, cfg, own = converted(obj, str(file))
    own_config = config_from(cfg, f"{file}'s model_config") if cfg else None
    own_backbone = obj.get("backbone") if isinstance(obj.get("backbone"), str) else None
    own_norm = backbone_norm_of(obj, str(file)) if own_backbone else None
    info = _config_json(cfg_file, fix, only_loftup=True)
    if not isinstance(info, dict) or info.get("format") != FORMAT_TAG:
        return obj, state, own_config, own_backbone, own_norm, None, own
    config, backbone, norm, weights_dim = read_record(info, str(cfg_file), fix)
    check_same_save(info, cfg_file, file, state, meta)
    said = [f"{own_config} against {config}"] if own_config not in (None, config) else []
    if own_backbone is not None and own_backbone != backbone:
        said.append(f"backbone {own_backbone!r} against {backbone!r}")
    if own_norm is not None and own_norm != norm:  # the backbone's input, another scale
        said.append(f"backbone_norm {own_norm!r} against {norm!r}")
    if said:
        raise CheckpointError(
            f"{cfg_file} contradicts the record in {file} ({'; '.join(said)}): they are of "
            f"two saves; delete {cfg_file.name} to load {file.name} with its own record, or "
            "put the weights it was written with beside it"
        )
    return obj, state, config, backbone, norm, weights_dim, own


#: The largest JSON file :func:`config_given` reads to tell what it is (a config is a few KiB)
_JSON_MOST = 1 << 20


def config_given(path: Path) -> str | None:
    """What to pass in place of ``path``, a JSON file given as an upsampler's weights (it was
    "corrupt ... an error reply saved in its place? download the file itself again"), where the
    loader knows what it is: the config.json of a folder save_pretrained wrote (that folder),
    a backbone's config.json (its folder, as the backbone's weights), a JSON file of a
    training run's folder (its weights), or any other file named .json, whatever it holds
    (a list, no JSON at all: what may be passed); None for any other file (JSON under a
    weights file's name: an error reply saved in its place, which the weights' read says)."""
    # named so by its writer, not a reply saved as weights: told so, whatever it holds
    other = (
        f"{path} is a JSON file, not an upsampler's weights: pass a weights file "
        "(.safetensors, .pt, .pth, .bin), the folder save_pretrained wrote, a released "
        "name (e.g. loftup_dinov2s) or a hub id ORG/NAME"
    )
    other = other if path.suffix.lower() == ".json" else None
    try:
        with open(path, "rb") as f:
            data = f.read(_JSON_MOST + 1)
    except OSError:  # the weights' read says why
        return None
    if len(data) > _JSON_MOST or not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return other
    try:
        info = json.loads(data)
    except ValueError:
        return other
    folder = path.parent
    if not isinstance(info, dict):
        return other
    if info.get("format") == FORMAT_TAG:
        said = f"{path} is the {path.name} of an upsampler save_pretrained wrote, its record, not"
        if not any((folder / n).is_file() for n in (WEIGHTS_NAME, "pytorch_model.bin")):
            return (  # copied away from its weights: its folder is no model either
                f"{said} its weights, and its folder, {folder}, holds no {WEIGHTS_NAME}: pass "
                f"the folder save_pretrained wrote (the {path.name} with its {WEIGHTS_NAME}) as "
                "the upsampler"
            )
        return (
            f"{said} its weights: pass its folder, {folder}, as the upsampler "
            f"(load_upsampler('{folder}'), CLI -m {folder})"
        )
    if isinstance(info.get("model_type"), str):
        return (
            f"{path} is the {path.name} of a transformers {info['model_type']!r} model, a "
            f"backbone's, not an upsampler's weights: pass its folder, {folder}, as the "
            "backbone's weights (backbone_weights=, CLI --backbone-weights) and the upsampler "
            "(a released name or its weights) as the model"
        )
    run = [p for p in (folder / "final", folder / "checkpoint.pt") if os.path.exists(p)]
    if run:
        return f"{path} is a file of a training run's folder, not weights: give {run[0]}"
    return other
