"""What :func:`loftup.load_pipeline` decides and advises, and what a pipeline's call checks of
its backbone: where the models run (:func:`run_device`), the backbones an upsampler can take,
missing weights named together, and a backbone left in training mode (where they are run and
in what, call by call: :mod:`loftup.pipeline_placement`).
"""

from __future__ import annotations

import os

import torch

from .checks import as_dtype, check_backbone_size, resolve_device, shown
from .errors import LoftUpError, UsageError, WeightsNotFoundError
from .featurizers import Featurizer, check_input_norm
from .pipeline_placement import (  # noqa: F401  (found here too, where they were)
    Placements,
    check_meta,
    check_placement,
    on_meta,
    placement,
    refuse_meta,
)


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


def check_passed_backbone(backbone, backbone_weights, backbone_norm) -> None:
    """A :class:`UsageError` where a Featurizer is passed as ``backbone`` beside
    ``backbone_weights``, or a ``backbone_norm`` other than its own: both say how to build a
    backbone by name, and the module passed in ran with its own weights and normalisation
    without a word (CLIP given ``backbone_norm="own"`` got the ImageNet-normalised image)."""
    if not isinstance(backbone, Featurizer):
        return
    own = backbone.input_norm
    if backbone_weights is not None:
        arg, has = f"backbone_weights={shown(backbone_weights)}", "its own weights"
    elif backbone_norm not in (None, own):
        arg, has = f"backbone_norm={backbone_norm!r}", f"its own normalisation, {own!r}"
    else:
        return
    raise UsageError(
        f"{arg} is for a backbone built by name, but backbone is the module "
        f"{backbone.name}, which runs as it is, with {has}; leave {arg.split('=')[0]} out, "
        "or pass the backbone's name instead, to build it so"
    )


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
    try:  # (a proxy setting that is no URL: said as the backbone's, as a download says it)
        if _fetched_by_the_run(name, backbone_weights):  # not missing: a look would fetch them
            return error
        find_weights(name, backbone_weights)
    except LoftUpError as e:
        return WeightsNotFoundError(f"{error}; and the backbone's weights are missing too: {e}")
    return error


def _fetched_by_the_run(name: str, backbone_weights) -> bool:
    """Whether backbone ``name``'s weights (``backbone_weights``; None: its official ones) come
    from the Hugging Face hub, which may be asked and answers: where the cache lacks them, the
    run downloads them, so they are not missing; looking for them here downloaded them (a
    typo in the upsampler's path fetched dinov2_vitg14's 4.5 GB before it was said)."""
    from .featurizers import resolve
    from .hub import looks_like_path
    from .hub.reach import offline_reason, unreachable_reason

    if backbone_weights is None:
        if resolve(name).default_weights is None:  # seeded or shipped: nothing to fetch
            return False
    else:
        text = os.fspath(backbone_weights)
        local = isinstance(backbone_weights, os.PathLike) or looks_like_path(text)
        if local or not text.strip() or os.path.exists(os.path.expanduser(text)):
            return False
    return offline_reason() is None and unreachable_reason() is None


def checked_options(
    backbone_size, backbone_norm, device, dtype
) -> tuple[int | None, str | None, torch.device | None, torch.dtype | None]:
    """:func:`loftup.load_pipeline`'s options checked (a :class:`UsageError` naming the first that
    cannot be used) and read: (backbone_size as an int or None, backbone_norm, the device
    :func:`resolve_device` gives or None where none was, the torch dtype or None), what
    :func:`loftup.pipeline.build_pipeline` takes."""
    check_backbone_size(backbone_size)
    if backbone_norm is not None:
        check_input_norm(backbone_norm, "backbone_norm")
    return (
        None if backbone_size is None else int(backbone_size),
        backbone_norm,
        None if device is None else resolve_device(device),
        None if dtype is None else as_dtype(dtype),
    )
