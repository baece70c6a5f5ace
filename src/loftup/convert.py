"""Checkpoints of any known layout to a model that fits the weights.

Three layouts exist: the hub files of the paper (``upsampler.*`` + ``channelnorm.norm.*``), the
paper's training checkpoints (``{"state_dict": ...}`` with ``model.1.norm.*``), and ours (the
module names of :class:`loftup.LoftUp`, also inside ``loftup train`` checkpoints as ``model``,
and inside ``{"state_dict": ...}`` as a user's ``torch.save`` wraps it). Here: any checkpoint
object to our state dict (:func:`to_native`), the hyper-parameters read from its shapes
(:func:`infer_config`) and the model built from it, loaded strictly (:func:`build_from_state`).
The key names of one layout to another, each conversion a small pure function, are
:mod:`loftup.key_layouts`' (importable from here too).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .errors import CheckpointError
from .escaping import printable
from .holders import RECORD, holder, warn_others
from .key_layouts import (  # (importable from here, as before key_layouts.py)
    native_to_reference,  # noqa: F401
    reference_name,
    reference_to_native,
    training_to_reference,
)
from .model import LoftUp, LoftUpConfig
from .odd_width import odd_phases, odd_width

#: What to do about a file that is no LoftUp checkpoint (the end of its error line).
NOT_LOFTUP_FIX = (
    "pass a released name, a save_pretrained folder, or a checkpoint of the paper's code or "
    "of loftup train"
)


#: What torch.compile (``_orig_mod.``) and DistributedDataParallel (``module.``) put before each
#: weight's name in the state dict of the module they wrap.
WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def strip_wrappers(state: dict) -> dict:
    """``state`` with the prefix that torch.compile or DDP put before every key removed (each
    in turn: DDP of a compiled module), as the LoftUp's own state dict names them; ``state``
    itself where its keys do not all start with one."""
    while state and all(isinstance(k, str) for k in state):
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


class Native(NamedTuple):
    """What :func:`converted` reads of a checkpoint object: its native state dict, its saved
    config dict (or None), and whether it held its weights in this package's layout
    (:func:`in_own_layout`), told by the same look at its holders."""

    state: dict
    config: dict | None
    own_layout: bool


def to_native(obj, origin: str, fix: str | None = None) -> tuple[dict, dict | None]:
    """Any known checkpoint object -> (native state dict, saved config dict or None); what
    does not fit a known layout is a CheckpointError that names ``origin``, with ``fix``
    (default: :data:`NOT_LOFTUP_FIX`; a released name's cached file: fetch it again)."""
    return converted(obj, origin, fix)[:2]


def converted(obj, origin: str, fix: str | None = None) -> Native:
    """:func:`to_native`'s (state, config), and whether ``obj`` is in this package's layout
    (:func:`in_own_layout`, which a load asks too: its holders, whose look compares the
    weights of two that hold LoftUps, looked at once)."""
    fix = fix or NOT_LOFTUP_FIX
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{origin}: expected a dict of tensors, got {type(obj).__name__}; {fix}"
        )
    key = holder(obj, origin)  # (once: it compares the LoftUps of two holders)
    state = _own_state(obj, origin, key)  # several LoftUps in one file: told how to keep one
    warn_others(obj, key, origin)  # an EMA copy beside the LoftUp loaded: said, once
    # under "model", loftup train's record beside it (its heads), whichever layout it holds
    config = obj.get("model_config") if key == "model" else None
    try:
        if state is not None:
            return Native(_tensors_by_name(state), config, True)
        if key == "state_dict":  # reference training
            state = training_to_reference(strip_wrappers(obj["state_dict"]))
            return Native(reference_to_native(_tensors_by_name(state)), None, False)
        held = obj if key is None else obj[key]  # the hub layout, bare or under a holder
        return Native(reference_to_native(_tensors_by_name(strip_wrappers(held))), config, False)
    except CheckpointError as e:
        raise CheckpointError(f"{origin}: {e}; {fix}") from None


def in_own_layout(obj) -> bool:
    """Whether checkpoint object ``obj`` holds its weights in this package's layout (a state
    dict of a LoftUp, bare or wrapped), not the paper's (its hub files and training
    checkpoints, which are its 4 heads)."""
    return isinstance(obj, dict) and _own_state(obj) is not None


def _own_state(obj: dict, origin: str = "", key=...) -> dict | None:
    """The state dict in this package's layout that ``obj`` holds (``loftup train``'s "model",
    a LoftUp's own, bare or under the key :func:`~loftup.holders.holder` finds, each perhaps of
    a compiled or DDP module, or under the name of a module that holds it beside others), or
    None where it holds the paper's: hub keys (``upsampler.*``, ``channelnorm.*``) or a
    training checkpoint's (``model.1.norm.*``). Several LoftUps in it (a model and its EMA copy) are a
    CheckpointError naming them, and how to keep one (``origin``: the file). An empty dict
    holds no layout: None. ``key``: its holder where :func:`~loftup.holders.holder` told it."""
    if not obj:
        return None
    key = holder(obj, origin) if key is ... else key
    state = obj if key is None else obj[key]
    # loftup train's record beside its "model" (heads, backbone): kept by the line that keeps one
    record = [k for k in RECORD if k in obj] if key == "model" else []
    inner = _one_loftup(state, origin, key, record)
    if inner is not None:  # a module's LoftUp (Lightning's self.upsampler), the rest left
        return inner
    state = strip_wrappers(state)  # a compiled or DDP-wrapped module's state dict, saved as is
    if key == "state_dict":
        state = _held(state)
        return state if _is_native(state) else None  # torch.save({"state_dict": ...}) of ours
    # bare, or under loftup train's "model" or the tutorial's "model_state_dict": the paper's
    # hub layout is told by its keys wherever it is held
    paper = ("upsampler.", "channelnorm.")
    return None if any(isinstance(k, str) and k.startswith(paper) for k in state) else state


def _one_loftup(state: dict, origin: str, key: str | None, record=()) -> dict | None:
    """The weights of the one LoftUp that ``state`` holds under a module's name ``P`` (its
    ``P + "channel_norm.weight"`` and ``P + "image_encoder.phases"``), named as the LoftUp
    names them; None where it holds none under a name (one at the top is read as it is).
    Several (a model and its EMA copy, at the top or under names) are a CheckpointError naming
    them, with the line that keeps one (:func:`~loftup.hub.way_out.keep_one_line`: ``key``,
    ``state``'s key in the file's dict, None for the top; ``record``, the file's keys that
    record it)."""
    end = "channel_norm.weight"
    prefixes = {k[: -len(end)] for k in state if isinstance(k, str) and k.endswith(end)}
    names = sorted(
        p for p in prefixes if (not p or p.endswith(".")) and p + "image_encoder.phases" in state
    )
    if len(names) > 1:
        from .hub.way_out import keep_one_line

        said = ", ".join(repr(n) if n else "the top level" for n in names)
        raise CheckpointError(
            f"{printable(origin)} holds {len(names)} LoftUps, under {said}: keep the one to load in "
            f"a file of its own and load that; for {names[-1]!r}: "
            f"{keep_one_line(origin, key, names[-1], record)}"
        )
    if not names or not names[0]:
        return None
    p = names[0]  # other keys (a number, say) are of the modules beside it, left out
    return {k[len(p) :]: v for k, v in state.items() if isinstance(k, str) and k.startswith(p)}


def _is_native(state: dict) -> bool:
    """Whether ``state`` is in this package's layout (a weight of :data:`_ANCHORS` there, and
    no key of the paper's: ``upsampler.*``, ``channelnorm.*``, a training ``model.*``): wrapped
    as ``{"state_dict": ...}``, it was refused as a training checkpoint with no channel norm."""
    keys = [k for k in state if isinstance(k, str)]
    paper = ("upsampler.", "channelnorm.", "model.")
    return any(k in _ANCHORS for k in keys) and not any(k.startswith(paper) for k in keys)


def _held(state: dict) -> dict:
    """``state`` with the leading name that every key shares removed (``model.``,
    ``upsampler.``: a LightningModule holding the LoftUp as ``self.model``) where what is left
    is in this package's layout (:func:`_is_native`); else ``state`` itself (the paper's
    training layout, ``model.0.*``/``model.1.*``, is not, and is converted as it is)."""
    keys = [k for k in state if isinstance(k, str)]
    if not keys or len(keys) != len(state) or _is_native(state):
        return state
    first = keys[0].split(".", 1)[0] + "."
    if not all(k.startswith(first) for k in keys):
        return state
    inner = {k[len(first) :]: v for k, v in state.items()}
    return inner if _is_native(inner) else state


def _tensors_by_name(state: dict) -> dict:
    """``state`` itself, or a CheckpointError unless its keys are names and its values tensors
    (a nested dict or a number in their place was an AttributeError traceback further on)."""
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(
                f"key {key!r} is a {type(key).__name__}, not a weight's name; "
                "this is not a LoftUp state dict"
            )
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"entry {key!r} is a {type(value).__name__}, not a tensor; "
                "this is not a LoftUp state dict"
            )
    return state


#: The weights whose shapes :func:`infer_config` reads the hyper-parameters from: a file with
#: none of them is no LoftUp's, one with some a LoftUp's with a weight missing.
_ANCHORS = (
    "channel_norm.weight",
    "image_encoder.phases",
    "grid_encoder.phases",
    "blocks.0.ffn.fc1.weight",
)


def infer_config(state: dict, origin: str = "the weights", fix: str | None = None) -> LoftUpConfig:
    """Hyper-parameters read from the weights' shapes (heads cannot be read: 4, the released);
    ``origin``: where the weights come from, for the error of weights that are not LoftUp's
    (or hold part of one); ``fix``: what to do then, where it is not another file (a released
    name's cached file: fetch it again)."""
    not_loftup = fix or NOT_LOFTUP_FIX
    fix = fix or f"save it again, or {NOT_LOFTUP_FIX}"
    for key in _ANCHORS:
        if key not in state and not any(k in state for k in _ANCHORS):
            raise CheckpointError(
                f"{origin}: no weight {key!r}{reference_name(key)}, so this is not a LoftUp "
                f"checkpoint; {not_loftup}"
            )
        if key not in state:  # the others are there: a LoftUp's file with a weight missing
            raise CheckpointError(
                f"{origin}: missing weight {key!r}{reference_name(key)}, so the file holds part of a "
                f"LoftUp; {fix}"
            )
        if state[key].dim() == 0:  # its size is read below: a scalar was an IndexError
            raise CheckpointError(
                f"{origin}: weight {key!r}{reference_name(key)} is a scalar, so this is not a LoftUp "
                f"checkpoint; {not_loftup}"
            )
    phases, grid = state["image_encoder.phases"], state["grid_encoder.phases"]
    for key, tensor, ok, expected in (
        ("image_encoder.phases", phases, phases.shape[:2] in ((2, 3), (2, 5)), "(2, 5, n_freqs)"),
        ("grid_encoder.phases", grid, grid.shape[:2] == (2, 2), "(2, 2, grid_freqs)"),
    ):
        if tensor.dim() != 3 or not ok:  # (2, 5, 2) for the grid's was "expected (2, 2, 2)"
            raise CheckpointError(
                f"{origin}: weight {key!r}{reference_name(key)} has shape {tuple(tensor.shape)}, "
                f"expected {expected}; {fix}"
            )
    if (odd := odd_phases(state)) is not None:
        raise CheckpointError(f"{origin}: {odd}; {fix}")
    dim, fc1 = state["channel_norm.weight"].shape[0], state["blocks.0.ffn.fc1.weight"]
    if fc1.dim() == 2 and fc1.shape[1] != dim + 4 * grid.shape[-1]:  # else all else was blamed
        raise CheckpointError(f"{origin}: {odd_width(state, dim, fc1.shape[1])}; {fix}")
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    mlp_dim = fc1.shape[0]
    return LoftUpConfig(
        dim=dim,
        depth=depth,
        n_freqs=phases.shape[-1],
        grid_freqs=grid.shape[-1],
        mlp_dim=mlp_dim,
        coords=phases.shape[1] == 5,
    )


def build_from_state(
    state: dict, config: LoftUpConfig | None, origin: str, fix: str | None = None
) -> LoftUp:
    """A LoftUp whose architecture fits ``state``, loaded strictly; a weight missing, of
    another shape or of no layer is a CheckpointError naming it (in both layouts where the
    paper's has it: the file may hold either) and what to do (``fix``, as
    :func:`infer_config` takes it)."""
    model = LoftUp(config=config or infer_config(state, origin, fix))
    expected = model.state_dict()
    fix = fix or f"save it again, or {NOT_LOFTUP_FIX}"
    for key, value in expected.items():
        if key not in state and key.endswith(".num_batches_tracked"):
            # BatchNorm's update counter: inference never reads it, and state dicts written
            # by other tools (or stripped of non-float entries) may lack it
            state = {**state, key: value}
        if key not in state:
            raise CheckpointError(
                f"{origin}: missing weight {key!r} of shape {tuple(value.shape)}{reference_name(key)}, "
                f"so the file holds part of a LoftUp; {fix}"
            )
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{origin}: weight {key!r}{reference_name(key)} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)} for C={model.dim}; {fix}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(
            f"{origin}: unexpected weight {extra[0]!r}{reference_name(extra[0])} fits no layer of a "
            f"LoftUp of depth {model.config.depth}; {fix}"
        )
    model.load_state_dict(state, strict=True)
    return model
