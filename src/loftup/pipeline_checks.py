"""What :func:`loftup.load_pipeline` decides and advises, and what a pipeline's call checks of
its backbone: where the models run (:func:`run_device`), the backbones an upsampler can take,
missing weights named together, and a backbone left in training mode.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import torch

from .checks import resolve_device
from .errors import LoftUpError, UsageError, WeightsNotFoundError
from .featurizers import Featurizer


def run_device(device: torch.device | None, model: object, backbone: object = None) -> torch.device:
    """Where a pipeline of ``model`` and ``backbone`` runs: ``device`` when given, else where
    the modules passed in already are (a LoftUp kept on the CPU or on cuda:1 was moved to
    cuda:0, in place), else the auto device (:func:`resolve_device`) for what is loaded by name.
    Modules passed in on two devices are a :class:`UsageError` (one would be moved), and so is
    one with weights on the meta device moved to another (:func:`refuse_meta`: no data to
    copy, "Cannot copy out of meta tensor")."""
    modules = [m for m in (model, backbone) if isinstance(m, torch.nn.Module)]
    places = {t.device for m in modules for t in (*m.parameters(), *m.buffers())}
    # weights on meta moved to another device, or beside modules elsewhere (a LoftUp built
    # under torch.device("meta") whose computed buffers came from a cache on the CPU): told
    # those weights (not to pass device=, which then refused them); all on meta, with no
    # device, stays there (refused as it runs)
    if any(p.type == "meta" for p in places) and (device is not None or len(places) > 1):
        refuse_meta("model" if on_meta(model) else "backbone")
    if device is not None:
        return device
    if len(places) > 1:
        names = " and ".join(sorted(str(p) for p in places))
        raise UsageError(
            f"the modules passed in are on {names}: pass device= to run the pipeline on one "
            "(they are moved there, in place), or move them to one device first"
        )
    return places.pop() if places else resolve_device(None)


def on_meta(module) -> bool:
    return isinstance(module, torch.nn.Module) and any(
        t.is_meta for t in (*module.parameters(), *module.buffers())
    )


def refuse_meta(name: str) -> None:
    """The :class:`UsageError` of the module ``name`` (model, backbone, pipeline.upsampler)
    whose weights are on the meta device: moved, it failed ("Cannot copy out of meta tensor"),
    run, deep inside (Tensor.item())."""
    raise UsageError(
        f"the {name} has weights on the meta device, which hold no data (a module built under "
        "torch.device('meta')); build it on a real device and load its weights into it "
        "(module.load_state_dict(state)), or load a LoftUp with loftup.load_upsampler(PATH): "
        "load_state_dict(state, assign=True) leaves a LoftUp's computed buffers (its Fourier "
        "frequencies) on meta still"
    )


def require_eval_backbone(featurizer: Featurizer) -> None:
    """A :class:`UsageError` where a module of the backbone whose output depends on training
    mode is in it: dropout or stochastic depth (random features), batch norm (the batch's
    statistics, running ones changed) or an instance norm tracking running statistics. A
    backbone in training mode without such modules (a user's convolutions) computes what it
    computes in eval mode, and runs (loftup's own backbones stay in eval mode whatever
    ``.train()`` is called on them; their inner model, or a user's featurizer, not)."""
    for name, m in featurizer.named_modules():
        why = _training_effect(m) if m.training else None
        if why is not None:
            raise UsageError(
                f"a FeaturePipeline computes the backbone as in eval mode, and "
                f"{name or 'the backbone'} of {featurizer.name} ({type(m).__name__}) is in "
                f"training mode, where {why}; call .eval() on the backbone (pipeline.featurizer)"
                " first"
            )


def _training_effect(module: torch.nn.Module) -> str | None:
    """What training mode changes in ``module``'s own output, or None where nothing (its
    children are asked on their own)."""
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.dropout import _DropoutNd
    from torch.nn.modules.instancenorm import _InstanceNorm

    if isinstance(module, _DropoutNd) or "droppath" in type(module).__name__.lower():
        return "it drops activations at random (random features)"
    if isinstance(module, _BatchNorm) or (
        isinstance(module, _InstanceNorm) and module.track_running_stats
    ):
        return "it normalises by the batch's statistics and changes its running ones"
    return None


def backbones_advice(dim: int) -> str:
    """The registered backbones that give ``dim``-d features, as advice: the example that was
    given for every upsampler (dinov2_vits14, 384-d) failed again for any other width."""
    from .featurizers import backbones_of_dim

    names = backbones_of_dim(dim)
    if not names:
        return f"or pass a Featurizer of {dim}-d features (no registered backbone gives them)"
    return f"one of the backbones of its {dim}-d features: {', '.join(names)}"


def check_backbone_recorded(upsampler, backbone, said_as: dict | None = None) -> None:
    """A :class:`LoftUpError` where no ``backbone`` is given and ``upsampler`` records none:
    the fix as its caller writes it (``said_as`` naming ``backbone``: a command line's
    ``--backbone NAME``, not Python's words first), with the backbones of its width."""
    if backbone is not None or getattr(upsampler, "backbone", None) is not None:
        return
    where = getattr(upsampler, "source", None) or "passed in"  # not a module's repr
    flag = (said_as or {}).get("backbone")
    how = f"{flag} NAME" if flag else "backbone=NAME (CLI: --backbone NAME)"
    raise LoftUpError(
        f"the upsampler {where} does not record its backbone; name it with {how}, "
        f"{backbones_advice(upsampler.dim)}"
    )


def check_backbone_name(backbone, model=None) -> None:
    """A :class:`UsageError` where ``backbone`` is a name that is blank (not "unknown backbone
    ''", nor taken as not given) or that no registry knows
    (:func:`loftup.featurizers.resolve`'s error, the names meant); anything else passes. The
    blank one's example is a backbone of ``model``'s width where it is a LoftUp (dinov2_vits14,
    384-d, was given for any)."""
    if not isinstance(backbone, str):
        return
    from .featurizers import example_of_dim, refuse_blank, resolve

    example = example_of_dim(model.dim if isinstance(model, torch.nn.Module) else None)
    absent = ", or leave it out for the one the upsampler records"
    refuse_blank(backbone, absent=absent, example=example)
    resolve(backbone)


def with_missing_backbone(
    error: WeightsNotFoundError, model, backbone, backbone_weights
) -> WeightsNotFoundError:
    """``error`` (the upsampler's weights were not found), naming the backbone's weights too
    where they cannot be found either: offline with nothing cached, a user who provided the
    upsampler's file learnt only on the next run that the backbone's were missing as well."""
    from .featurizers.hf import find_weights
    from .hub import ALIASES, RELEASED

    name = backbone if isinstance(backbone, str) else None
    if name is None and isinstance(model, (str, os.PathLike)):
        released = RELEASED.get(ALIASES.get(os.fspath(model), os.fspath(model)))
        name = released.backbone if released is not None else None
    if name is None:  # which backbone is recorded in the weights that are missing
        return error
    try:
        find_weights(name, backbone_weights)
    except LoftUpError as e:
        return WeightsNotFoundError(f"{error}; and the backbone's weights are missing too: {e}")
    return error


def placement(module: torch.nn.Module) -> tuple | None:
    """Where ``module`` runs, and in what: its first parameter's (device, dtype), as
    :class:`~loftup.pipeline.FeaturePipeline` reads its own; None for a module of none (not
    all of them listed to find the first: a few hundred µs a call for a ViT-S)."""
    from .stops import first

    p = first(module.parameters(), None)
    return None if p is None else (p.device, p.dtype)


@dataclass
class Placements:
    """What :func:`check_placement` last found of a pipeline's two models, each a pair of
    (upsampler's, featurizer's) :func:`placement`."""

    #: as built, or as last moved together: what a model moved alone is told against
    baseline: tuple
    #: the lone move last warned of (warned once)
    said: tuple | None = None
    #: (upsampler, featurizer, placements) last found with no tensor on the meta device, each
    #: model as a weakref.ref: a model replaced (``pipeline.upsampler = other``) is not kept
    #: alive, its memory held, until the next call; nor taken for a new one given its id
    clear: tuple | None = None

    def __getstate__(self) -> dict:
        """Pickled without :attr:`clear` (a weakref cannot be; a pipeline pickled, or sent to
        a worker, checks its models again on its first call)."""
        return {**self.__dict__, "clear": None}

    def is_clear(self, upsampler, featurizer, now: tuple) -> bool:
        """Whether ``upsampler`` and ``featurizer`` at ``now`` are what was last found clear."""
        return (
            self.clear is not None
            and self.clear[2] == now
            and self.clear[0]() is upsampler
            and self.clear[1]() is featurizer
        )


def check_placement(pipeline) -> None:
    """Before ``pipeline`` runs: refuse a model with weights on the meta device
    (:func:`refuse_meta`), and warn where one model was moved or converted alone
    (:func:`_warn_if_moved_alone`).

    Every parameter and buffer is looked at (a few hundred µs for a ViT-S) only where a
    model was moved, converted or replaced since the last call that ran, its first
    parameter's placement the sign: a model on meta is refused whether built there, moved
    there whole, or half loaded (a LoftUp's computed buffers left on meta), as each is first
    run. A submodule moved to meta alone in a pipeline that has run is not seen here: its
    call fails (a device mismatch), and the pipeline then refuses it (:func:`check_meta`)."""
    seen: Placements = pipeline._placed
    now = (placement(pipeline.upsampler), placement(pipeline.featurizer))
    if not seen.is_clear(pipeline.upsampler, pipeline.featurizer, now):
        check_meta(pipeline)
        seen.clear = (weakref.ref(pipeline.upsampler), weakref.ref(pipeline.featurizer), now)
    _warn_if_moved_alone(seen, now)


def check_meta(pipeline) -> None:
    """:func:`refuse_meta` of the first of ``pipeline``'s models with a parameter or buffer on
    the meta device: every one looked at (a few hundred µs for a ViT-S). Also where a call
    failed: a submodule moved to meta after a call that ran was told the device mismatch it
    gave ("move it there with image.to('meta')", which cannot run), or a bare RuntimeError
    from the backbone."""
    for name, module in (
        ("pipeline.upsampler", pipeline.upsampler),
        ("pipeline.featurizer", pipeline.featurizer),
    ):
        if on_meta(module):
            refuse_meta(name)


def _warn_if_moved_alone(seen: Placements, now: tuple) -> None:
    """Warn, once per change, where one of a pipeline's two models was moved or converted
    since it was built (or both last moved together) and the other was not: a LoftUp shared
    by two pipelines, converted in place by the second's load_pipeline
    (``dtype="bfloat16"``), changed the first's features without a word. The warning says
    which model changed, from what to what, and the ways it happens (the caller's own
    ``.half()`` of it was blamed on another pipeline). Both moved together
    (the caller's choice) say nothing, and are what a later lone move is told against."""
    import warnings

    if now == seen.baseline:
        seen.said = None  # moved back: the next lone move is a new one
        return
    if now == seen.said:
        return
    if now[0] != seen.baseline[0] and now[1] != seen.baseline[1]:
        seen.baseline, seen.said = now, None
        return
    seen.said = now
    i = 0 if now[0] != seen.baseline[0] else 1
    which, other = ("upsampler", "featurizer") if i == 0 else ("featurizer", "upsampler")
    warnings.warn(
        f"pipeline.{which} was {_said(seen.baseline[i])} and is now {_said(now[i])}, and "
        f"pipeline.{other} ({_said(now[1 - i])}) was not changed with it: its features now "
        f"differ from the pipeline's. It was moved or converted in place: by a call on it "
        f"(pipeline.{which}.half(), .to(...)), or, where it is shared with another pipeline, "
        "by that one's load_pipeline(..., dtype=/device=). Change both models together, give "
        "each pipeline its own copy (copy.deepcopy(model)), or load this one again",
        stacklevel=5,  # (this, check_placement, __call__, no_grad's wrapper): the caller
    )


def _said(place: tuple | None) -> str:
    """A :func:`placement` in words: ``bfloat16 on cpu``."""
    if place is None:
        return "no parameters"
    return f"{str(place[1]).removeprefix('torch.')} on {place[0]}"
