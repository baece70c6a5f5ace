"""The one loader (:func:`load_upsampler`, any source to a ready LoftUp); its counterpart
:func:`~.saving.save_pretrained` (``model.safetensors`` + ``config.json``) is :mod:`.saving`'s."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ..checks import as_dtype, resolve_device, shown
from ..convert import build_from_state, converted, infer_config
from ..errors import CheckpointError, UsageError, WeightsNotFoundError
from ..escaping import printable
from ..model import LoftUp, LoftUpConfig
from ..paths import check_visible
from .checks import (
    check_released_architecture,
    check_state,
    hub_source,
    missing_source,
    refetch_fix,
    upsampler_name,
)
from .damaged import cached_repo, check_blob_seen, check_blob_there
from .failures import is_commit
from .file_heads import check_regular_file
from .files import WEIGHT_SUFFIXES, read_weights, read_weights_file
from .folders import config_given, pickle_with_record, read_folder
from .record import (
    CONFIG_NAME,
    FORMAT_TAG,
    WEIGHTS_NAME,
    backbone_norm_of,
    check_intact,
    config_from,
    header_record,
    run_weights_dim,
)
from .registry import resolve_name
from .released import released_file
from .remote import damaged_in_cache
from .user_repos import load_repo


def check_source(source, name: str = "source", also: tuple[str, ...] = ()) -> None:
    """A :class:`UsageError` unless ``source`` is a name or a path (``str`` or ``os.PathLike``):
    os.fspath's TypeError said nothing of what may be given. ``name``: the argument's name;
    ``also``: what else the caller takes ("a LoftUp", say)."""
    if not isinstance(source, (str, os.PathLike)):
        kinds = ["a released upsampler's name (e.g. loftup_dinov2s)", "a weights file or folder"]
        kinds += ["a hub id ORG/NAME"]
        kinds += also
        raise UsageError(f"{name} is {', '.join(kinds[:-1])} or {kinds[-1]}, got {shown(source)}")
    if isinstance(source, str) and not source.strip():  # Path("") is the current folder
        # a command line's option (name "-m") unset in a script; from Python, a variable
        unset = f', as in {name} "$MODEL"' if name.startswith("-") else " or an empty string"
        raise UsageError(
            f"{name} is empty or blank (an unset variable{unset}?): pass a released "
            "upsampler's name (e.g. loftup_dinov2s), a weights file or folder, or a hub id ORG/NAME"
        )


def load_upsampler(
    source: str | os.PathLike, device=None, dtype=None, *, num_heads: int | None = None
) -> LoftUp:
    """A ready LoftUp (channel norm included, eval mode) from any known source.

    Arguments:
      source: one of, in this order (the first that fits decides)
        - a file or folder that exists here:
          - a folder written by :func:`save_pretrained` (or a hub snapshot with
            pytorch_model.bin);
          - a ``.safetensors`` file;
          - a ``.bin/.pt/.pth`` state dict in the hub layout, a reference training checkpoint
            (``{"state_dict": ...}``) or a checkpoint written by ``loftup train``;
        - a released name (``loftup_dinov2s``, ... see :data:`RELEASED`), from the cache or hub;
        - a hub id ``ORG/NAME`` (or ``ORG/NAME@REVISION``: a branch, tag or commit) of a
          folder :func:`save_pretrained` wrote (``model.safetensors`` + ``config.json``) and
          the user pushed: from the Hugging Face cache, else downloaded (``HF_HUB_OFFLINE=1``
          honoured). A released upsampler's own repo is refused: its name loads it.
      device, dtype: where and in which floating dtype to put the parameters (``dtype``: a
        torch dtype or a name, as :func:`loftup.api.as_dtype` reads it: "bfloat16", "fp16"...).
      num_heads: the attention heads of weights that do not record them. The weights' shapes
        do not say how many heads there are, so a state dict without a record (the hub
        layout's ``pytorch_model.bin``, a reference training checkpoint, a safetensors file
        of other tools) is read with the paper's 4 unless told; where a record exists
        (save_pretrained, ``loftup train``, a released name: 4) it decides, and a
        ``num_heads`` that contradicts it is a :class:`UsageError`.

    Returns the module; ``model.backbone`` names the backbone it expects when known, and
    ``model.backbone_norm`` what that backbone is given (``input_norm``): "imagenet" for the
    released checkpoints, what the run used for ``loftup train``'s. Its parameters require
    gradients, as any module's (fine-tuning it needs nothing more); for inference call it
    under ``torch.inference_mode()`` (or ``no_grad``): with gradients on, ``model(lr_feats,
    image)`` runs the differentiable steps and keeps their autograd graph (at 224 px, dim 384
    on the CPU: 2.2 GB at the peak against 0.8, in 1.5x the time).
    """
    check_source(source)
    if dtype is not None:
        dtype = as_dtype(dtype)  # a name, or a dtype loftup runs in: a UsageError otherwise
    if device is not None:  # before loading: "cuda" on a machine without one, in a line
        device = resolve_device(device)
    model, _ = load_with_record(source, num_heads=num_heads)
    return model.to(device=device, dtype=dtype).eval()


def load_with_record(
    source: str | os.PathLike, *, num_heads: int | None = None
) -> tuple[LoftUp, dict]:
    """:func:`load_upsampler` (on the CPU, as the weights built it, in eval mode) and the
    record read from a weights file: the whole dict of a training checkpoint (its downsampler,
    optimiser...), the state dict of another file, ``{}`` for a folder or a released name. For
    a caller that needs more of a file than the upsampler (stage 2's ``init``) without reading
    it twice. ``num_heads``: as :func:`load_upsampler` takes it."""
    check_source(source)
    if num_heads is not None:  # an integer >= 1, before any file is read
        LoftUpConfig(num_heads=num_heads)
    path = Path(os.fspath(source)).expanduser()
    if not upsampler_name(source):  # a name: looked for here, but no path to check
        if cached_repo(path) is not None:  # a cache's file: its blobs/ named, the link kept
            check_blob_seen(path)
            check_blob_there(path)  # a dangling link, not "no such file"
        check_visible(path, "upsampler")
    try:
        return _load_with_record(source, path, num_heads)
    except (CheckpointError, WeightsNotFoundError) as e:  # the latter: a backbone in shards
        hint = _backbone_hint(path)
        if not hint:
            raise
        problem = str(e).split("; ")[0]  # its own fix is for an upsampler's file: this one's
        raise type(e)(f"{problem}; {hint}") from None


def _backbone_hint(path: Path) -> str:
    """What to do where ``path`` (a folder, or a file in one) holds a transformers model's
    weights, a backbone's rather than an upsampler's; "" elsewhere (and for a released name,
    which is no file: its parent, the current folder, holds nothing it was read from)."""
    if not os.path.exists(path):  # os.path: a name in a folder not searchable is not there
        return ""
    folder = path if os.path.isdir(path) else path.parent
    if not os.path.isfile(folder / CONFIG_NAME):  # none, or a FIFO, whose read would wait
        return ""
    try:
        info = json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return ""
    kind = info.get("model_type") if isinstance(info, dict) else None
    if not isinstance(kind, str) or info.get("format") == FORMAT_TAG:
        return ""
    return (
        f"{folder} holds a transformers {kind!r} model, a backbone's weights, not an "
        "upsampler's: pass it as the backbone's (backbone_weights=, CLI --backbone-weights) and "
        "the upsampler (a released name or its weights) as the model"
    )


#: The suffixes of torch.save's weights files
_TORCH_SUFFIXES = WEIGHT_SUFFIXES - {".safetensors"}


def _load_with_record(source, path: Path, num_heads: int | None) -> tuple[LoftUp, dict]:
    backbone = backbone_norm = weights_dim = released = fix = built_fix = None
    config = None
    obj: dict = {}  # the record returned: the file's whole dict ({} for a folder)
    held: dict = {}  # what the weights file holds, in its own layout (the paper's, or ours)
    # os.path, not pathlib (PermissionError on 3.11): a name in a folder not searchable
    if os.path.isdir(path) or (
        path.name == WEIGHTS_NAME and os.path.isfile(path.parent / CONFIG_NAME)
    ):
        # a save_pretrained folder's weights given as a file: its config.json decides, as for
        # the folder (the header's copy stands in where it is missing)
        held, state, config, backbone, backbone_norm, weights_dim, own = read_folder(
            path if os.path.isdir(path) else path.parent
        )
        origin = str(path)
    elif path.suffix in _TORCH_SUFFIXES and all(
        map(os.path.isfile, (path, path.parent / CONFIG_NAME))
    ):
        # torch.save's weights given as a file beside a config.json: read with it as the folder
        # is (save_pretrained's record decides: the file's shapes do not say the heads)
        obj, state, config, backbone, backbone_norm, weights_dim, own = pickle_with_record(
            path, path.parent / CONFIG_NAME
        )
        origin = str(path)
    elif os.path.isfile(path):
        origin = str(path)
        try:  # opened once: its header's record comes with it
            obj, meta = read_weights_file(path)
        except CheckpointError:  # a config.json given for its folder's weights, say: that said
            given = config_given(path)  # (read on failure alone: a load opens its file once)
            if given is None:
                raise
            raise UsageError(given) from None
        state, config, own = converted(obj, origin)  # (own: told by the one look at holders)
        config = config_from(config, f"{origin}'s model_config") if config else None
        if isinstance(obj.get("backbone"), str):  # training checkpoints record their backbone
            backbone = obj["backbone"]
            backbone_norm = backbone_norm_of(obj, origin)
        recorded = None if config else header_record(path, meta)
        if recorded is not None:  # a save_pretrained file given alone: its header's record
            config, backbone, backbone_norm, weights_dim = recorded
            check_intact(path, state, "; write it again with save_pretrained", meta)
    else:
        check_regular_file(path)  # there, but neither file nor folder (a FIFO): not "no such"
        text = os.fspath(source)
        if not isinstance(source, str):  # a Path names a file here, never a name or a hub id
            raise missing_source(text)
        repo = hub_source(text)
        if repo is not None:  # an upsampler of one's own on the hub, read as its folder
            return load_repo(text, *repo, num_heads)
        released = ckpt = resolve_name(text)
        origin = ckpt.name
        if num_heads is not None:  # the paper's 4: said before the file is looked for
            _with_heads(None, {}, origin, num_heads, released=True)
        file = released_file(ckpt.name)
        fix = damaged_in_cache(file, ckpt.name)  # the cached file is to be fetched again
        built_fix = refetch_fix(file, ckpt.name)  # what does not fit: named, fetched again
        state, config, own = converted(read_weights(file, fix), str(file), built_fix)
        if config:  # a file of loftup train's layout, cached under the name: its record read
            config = config_from(config, f"{file}'s model_config", f"; {built_fix}")
        backbone, backbone_norm = ckpt.backbone, "imagenet"  # the paper's code: the image as is
    check_state(state, origin, fix)
    if num_heads is not None and released is None:
        config = _with_heads(config, state, origin, num_heads, released=False)
    model = build_from_state(state, config, str(file) if released else origin, built_fix)
    if config is None and released is None and own:  # in our layout (the paper's: its 4)
        _warn_default_heads(origin)
    if released is not None:
        check_released_architecture(model, released, file)
        # the hub commit of the cache's snapshots/<commit>/ it was read from (run.json's init)
        snapshot = file.parents[len(released.filename.split("/")) - 1]
        if snapshot.parent.name == "snapshots" and is_commit(snapshot.name):
            model.source_commit = snapshot.name
    run = held or obj  # loftup train's checkpoint, given or in a folder: its run's weights
    if weights_dim is None and isinstance(run.get("backbone"), str):  # (saved, it was refused)
        weights_dim = run_weights_dim(run, model.dim)
    model.backbone = backbone
    model.backbone_norm = backbone_norm
    # the width of the backbone weights it was trained on, where not its backbone's own (a
    # small model of that architecture, or one fine-tuned): what the load of a pipeline asks for
    model.backbone_weights_dim = weights_dim
    model.source = origin
    return model.eval(), obj


#: The files :func:`_warn_default_heads` warned of in this process, by their real paths: a
#: relative name is another file in another folder, and one file's other names are that file
_WARNED_HEADS: set[str] = set()


def _warn_default_heads(origin: str) -> None:
    """Warn, once per file and process, that ``origin``, a LoftUp's state dict in this
    package's layout with no record of its heads, is read with the default 4: another number
    loads as well (the weights' shapes do not say it) and computes other features."""
    known = os.path.realpath(origin)
    if known in _WARNED_HEADS:
        return
    _WARNED_HEADS.add(known)
    import warnings

    from ..cpu import _caller_level

    warnings.warn(  # the path in prose escaped, the call's repr as it is (escaped again, its
        # backslashes doubled, it named another file)
        f"{printable(origin)} holds a LoftUp's weights without a record of its attention heads "
        "(save_pretrained's config.json, loftup train's model_config), so it is read with "
        "the default 4, which its weights' shapes cannot confirm; if it was trained with "
        "another number its features are wrong: load it with "
        f"loftup.load_upsampler({origin!r}, num_heads=N) in Python and save_pretrained it "
        "to a folder, which records them (the command line then takes that folder as -m)",
        stacklevel=_caller_level(),  # the caller's line (load_with_record is called directly too)
    )


def _with_heads(
    config: LoftUpConfig | None, state: dict, origin: str, num_heads: int, *, released: bool
) -> LoftUpConfig | None:
    """The config of ``state`` with ``num_heads`` heads where nothing records them (``config``
    None: its other hyper-parameters read from its shapes); where a record does (``config``,
    or a released name: the paper's 4), that decides: another ``num_heads`` is a UsageError."""
    recorded = config.num_heads if config is not None else 4 if released else None
    if recorded is None:
        config = dataclasses.replace(infer_config(state, origin), num_heads=num_heads)
        config.check_heads()
        return config
    if recorded != num_heads:
        which = "the paper's 4 heads" if released else f"num_heads={recorded} in its record"
        raise UsageError(
            f"num_heads={num_heads} contradicts {origin}, which has {which} (its weights were "
            "trained with them): leave num_heads out"
        )
    return config
