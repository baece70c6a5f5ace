"""Where a :class:`~loftup.pipeline.FeaturePipeline`'s two models run, and in what, as it
checks them before each call (:func:`check_placement`): a model with weights on the meta device
refused (:func:`refuse_meta`, which :func:`loftup.load_pipeline` says of one passed in too), one
moved or converted alone since the pipeline was built warned of once."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from .cpu import _caller_level
from .errors import UsageError


def on_meta(module) -> bool:
    """Whether ``module`` has a parameter or buffer on the meta device (every one looked at)."""
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
    #: whether :attr:`baseline` is that of a joint move (said so: a model built float32 was
    #: told "was float16" after both had been converted to it)
    joint: bool = False
    #: the lone move last warned of (warned once)
    said: tuple | None = None
    #: (upsampler, featurizer, placements) last found with no tensor on the meta device, each
    #: model as a weakref.ref: a model replaced (``pipeline.upsampler = other``) is not kept
    #: alive, its memory held, until the next call; nor taken for a new one given its id
    clear: tuple | None = None
    #: weakrefs of the (upsampler, featurizer) as built or at the last call: a model changed by
    #: ``pipeline.upsampler = other`` is said replaced, not moved in place or shared
    models: tuple | None = None

    @classmethod
    def of(cls, upsampler, featurizer) -> Placements:
        """The placements of a pipeline built of ``upsampler`` and ``featurizer``."""
        now = (placement(upsampler), placement(featurizer))
        return cls(now, models=(weakref.ref(upsampler), weakref.ref(featurizer)))

    def __getstate__(self) -> dict:
        """Pickled without :attr:`clear` and :attr:`models` (a weakref cannot be; a pipeline
        pickled, or sent to a worker, checks its models again on its first call)."""
        return {**self.__dict__, "clear": None, "models": None}

    def replaced(self, i: int, model) -> bool:
        """Whether model ``i`` (0: the upsampler, 1: the featurizer) is ``model`` no longer."""
        return self.models is not None and self.models[i]() is not model

    def is_clear(self, upsampler, featurizer, now: tuple) -> bool:
        """Whether ``upsampler`` and ``featurizer`` at ``now`` are what was last found clear."""
        return (
            self.clear is not None
            and self.clear[2] == now
            and self.clear[0]() is upsampler
            and self.clear[1]() is featurizer
        )


#: The pipelines alive, by id (a FeaturePipeline, a dataclass, has no hash for a WeakSet):
#: what :func:`warn_if_converted_under` looks through. Held weakly: one dropped is gone.
_LIVE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def register(pipeline) -> None:
    """Count ``pipeline`` among the live ones (:func:`warn_if_converted_under`)."""
    _LIVE[id(pipeline)] = pipeline


def _live() -> list:
    """The live pipelines, listed in one step: ``valuerefs()`` copies the dict in C, where
    iterating ``_LIVE.values()`` ran Python between items, and a pipeline built meanwhile (by
    another thread) was "RuntimeError: dictionary changed size during iteration" here. No lock:
    one held by a thread at a fork would leave a DataLoader worker's next pipeline waiting."""
    return [p for p in (ref() for ref in _LIVE.valuerefs()) if p is not None]


def warn_if_converted_under(upsampler, featurizer, before: tuple) -> None:
    """Warn where ``upsampler`` and ``featurizer``, passed in to be built into a pipeline,
    were both moved or converted in place from ``before`` (their :func:`placement`), and
    are both models of another live pipeline: a second ``load_pipeline(..., dtype=
    "bfloat16")`` of the first's two modules left the first running in bfloat16 without a
    word. That pipeline cannot tell it from its caller's own ``pipeline.upsampler.half();
    pipeline.featurizer.half()``, which is meant, so it is said here, where it happens. One
    of its models changed alone is said by that pipeline at its next call
    (:func:`_warn_if_moved_alone`)."""
    import warnings

    now = (placement(upsampler), placement(featurizer))
    if now[0] == before[0] or now[1] == before[1]:
        return
    under = [p for p in _live() if p.upsampler is upsampler and p.featurizer is featurizer]
    if not under:
        return
    if before[0] == before[1] and now[0] == now[1]:
        change = f"from {_said(before[0])} to {_said(now[0])}"
    else:
        change = (
            f"(the upsampler from {_said(before[0])} to {_said(now[0])}, the backbone from "
            f"{_said(before[1])} to {_said(now[1])})"
        )
    one = len(under) == 1
    which, runs, its, it = (
        ("another FeaturePipeline", "runs", "its", "it")
        if one
        else (f"{len(under)} other pipelines", "run", "their", "them")
    )
    what = f"in {_said(now[0])}" if now[0] == now[1] else "them so"
    warnings.warn(
        "the upsampler and the backbone passed in were moved or converted in place by "
        f"dtype=/device= {change}, and they are both models of {which} built earlier, which now "
        f"{runs} {what} too, without a warning of {its} own ({its} two models changed "
        "together, as a caller's own pipeline.upsampler.half(); pipeline.featurizer.half() "
        f"does). To leave {it} as before, pass copies: load_pipeline(copy.deepcopy(model), "
        "backbone=copy.deepcopy(backbone), ...)",
        stacklevel=_caller_level(),  # the caller's line, whichever entry point it called
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
    models = (pipeline.upsampler, pipeline.featurizer)
    now = (placement(models[0]), placement(models[1]))
    if not seen.is_clear(*models, now):
        check_meta(pipeline)
        seen.clear = (weakref.ref(models[0]), weakref.ref(models[1]), now)
    _warn_if_moved_alone(seen, now, models)
    seen.models = seen.clear[:2]


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


def _warn_if_moved_alone(seen: Placements, now: tuple, models: tuple) -> None:
    """Warn, once per change, where one of a pipeline's two models was moved or converted
    since it was built (or both last moved together) and the other was not: a LoftUp shared
    by two pipelines, converted in place by the second's load_pipeline
    (``dtype="bfloat16"``), changed the first's features without a word. The warning says
    which model changed, from what to what, and the ways it happens (the caller's own
    ``.half()`` of it was blamed on another pipeline). Both moved together
    (the caller's choice) say nothing, and are what a later lone move is told against, as
    "was X when both models were last changed together" (it said "was X" alone, read as the
    placement the pipeline was built with)."""
    import warnings

    if now == seen.baseline:
        seen.said = None  # moved back: the next lone move is a new one
        return
    if now == seen.said:
        return
    if now[0] != seen.baseline[0] and now[1] != seen.baseline[1]:
        seen.baseline, seen.said, seen.joint = now, None, True
        return
    seen.said = now
    i = 0 if now[0] != seen.baseline[0] else 1
    which, other = ("upsampler", "featurizer") if i == 0 else ("featurizer", "upsampler")
    when = "both models were last changed together" if seen.joint else "the pipeline was built"
    if seen.replaced(i, models[i]):  # the caller's choice, not a move behind its back
        warnings.warn(
            _replaced(which, other, now[i], now[1 - i], seen.baseline[i], when),
            stacklevel=_caller_level(),
        )
        return
    warnings.warn(
        f"pipeline.{which} was {_said(seen.baseline[i])} when {when} and is now "
        f"{_said(now[i])}, and pipeline.{other} ({_said(now[1 - i])}) was not changed with "
        "it: its features now differ from the pipeline's. It was moved or converted in place: "
        f"by a call on it (pipeline.{which}.half(), .to(...)), or, where it is shared with "
        "another pipeline, by that one's load_pipeline(..., dtype=/device=). Change both "
        "models together, give "
        "each pipeline its own copy (copy.deepcopy(model)), or load this one again",
        # the caller's line: pipe(image), or loftup.upsample(image, model=pipe) (a fixed 5,
        # the pipeline's own frames, pointed into upsample there)
        stacklevel=_caller_level(),
    )


def _replaced(which: str, other: str, new: tuple, others: tuple, was: tuple, when: str) -> str:
    """The warning of ``pipeline.{which} = module`` whose placement, ``new``, is not the
    one the model it replaced had (``was``) while the ``other`` model stayed (at
    ``others``): told a module shared with another pipeline, converted in place."""
    back = "" if was is None else f" (pipeline.{which}.to({str(was[0])!r}, {was[1]}))"
    return (
        f"pipeline.{which} was replaced by a module "
        f"{'of no parameters' if new is None else 'in ' + _said(new)} while pipeline.{other} is "
        f"{_said(others)}; the {which} was {_said(was)} when {when}, so the pipeline's features "
        f"now differ from what it gave. Convert the new {which} to that{back}, or convert "
        f"pipeline.{other} with it, to change both models together"
    )


def _said(place: tuple | None) -> str:
    """A :func:`placement` in words: ``bfloat16 on cpu``."""
    if place is None:
        return "no parameters"
    return f"{str(place[1]).removeprefix('torch.')} on {place[0]}"
