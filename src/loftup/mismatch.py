"""The warning for an upsampler run on other features than it was trained on: another backbone
of the same width (another width is an error), or another normalisation of its images. Said once
per upsampler, pairing and process by :func:`loftup.load_pipeline`."""

from __future__ import annotations

import weakref

from .cpu import _caller_level
from .escaping import printable
from .featurizers import Featurizer
from .model import LoftUp


class BackboneMismatchWarning(UserWarning):
    """An upsampler run on another backbone than the one it was trained on (of the same width:
    another width is an error). Its message starts with "backbone mismatch", which is what
    ``PYTHONWARNINGS=ignore:"backbone mismatch"`` matches."""


#: (upsampler's source, *what differs) already warned about in this process: an upsampler
#: loaded again from the same source is the same one.
_WARNED_MISMATCH: set[tuple] = set()
#: The pairings already warned about for each upsampler without a source (a LoftUp built or
#: trained in this process): each is its own, whatever another one records.
_WARNED_UNSOURCED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _warn_if_other_backbone(upsampler: LoftUp, asked: str) -> None:
    """Warn, once per pairing and process, where the upsampler records the backbone it was
    trained on and ``asked`` (the backbone passed) is another: of the same width, its features
    run without an error and come out wrong (loftup_siglip on siglip2_vitb16, loftup_dinov2b on
    dinov2_vitb14_reg). Not an error: running an upsampler on a neighbouring backbone is a
    legitimate experiment (``loftup evaluate`` warns as well). Silent where the upsampler does
    not record its backbone (a bare weights file), or a Featurizer passed in has a name of its
    own (an unregistered module: nothing to compare). A recorded backbone of another width
    than the upsampler's (an older save's inconsistent record) is not advised as the one to
    run: left out, it is refused (:func:`refuse_other_width`)."""
    from .featurizers import ALIASES, FEATURIZERS

    trained_on = upsampler.backbone  # (the one it records)
    if not trained_on:
        return
    asked_key = ALIASES.get(asked, asked)
    if asked_key not in FEATURIZERS or ALIASES.get(trained_on, trained_on) == asked_key:
        return
    recorded = FEATURIZERS.get(ALIASES.get(trained_on, trained_on))
    says = (
        f"was trained on {trained_on}'s features, not {asked}'s, so its output is not what it "
        f"learnt: leave out backbone= (--backbone) to run {trained_on}"
    )
    if recorded is not None and recorded.dim != upsampler.dim:
        says = (
            f"records {trained_on}, whose {recorded.dim}-d features it does not take (it takes "
            f"{upsampler.dim}-d ones), so the backbone it was trained on is not known: if that "
            f"is {asked}, save_pretrained it again with backbone={asked!r}; if weights of "
            f"{trained_on}'s architecture at {upsampler.dim}-d, leave out backbone= (--backbone) "
            "and pass them, backbone_weights=PATH (--backbone-weights PATH)"
        )
    _warn_once(upsampler, (trained_on, asked), says)


def refuse_other_width(upsampler: LoftUp, featurizer: Featurizer, backbone_weights) -> None:
    """A LoftUpError where ``featurizer`` gives features of another width than ``upsampler``
    takes, with what to pass instead: the backbone it records, or, where that is the one that
    failed, the weights of that backbone it was trained on (:func:`_weights_of_its_width`)."""
    from .errors import LoftUpError
    from .featurizers import ALIASES

    if featurizer.dim == upsampler.dim:
        return
    trained_on = getattr(upsampler, "backbone", None)
    fix = f"pass the backbone it was trained with{f', {trained_on}' if trained_on else ''}"
    if trained_on and ALIASES.get(trained_on, trained_on) == featurizer.name:
        fix = (
            f"pass the weights of {trained_on} it was trained on, of {upsampler.dim}-d features"
            if backbone_weights is not None
            else _weights_of_its_width(upsampler, trained_on)
        )
    elif trained_on and _recorded_weights_dim(upsampler):  # that one needs its weights too
        fix += f", with the weights it was trained on, {_weights_said(upsampler.dim)}"
    raise LoftUpError(
        f"backbone {featurizer.name} gives {featurizer.dim}-d features but the upsampler "
        f"expects {upsampler.dim}-d ones; {fix}"
    )


def warn_if_own_weights(upsampler: LoftUp, name: str, backbone_weights) -> None:
    """Warn, once per upsampler and process, where ``upsampler`` records that it was trained on
    weights of its backbone's architecture other than its own (``backbone_weights_dim``, at
    its registered width: fine-tuned ones), and that backbone, ``name``, is about to run on
    its own weights, no ``backbone_weights`` given: its features are not the ones it learnt
    on, without an error (another width is refused: :func:`refuse_other_width`)."""
    from .featurizers import ALIASES, resolve

    trained_on = getattr(upsampler, "backbone", None)
    if backbone_weights is not None or not trained_on or not _recorded_weights_dim(upsampler):
        return
    if ALIASES.get(name, name) != ALIASES.get(trained_on, trained_on):
        return  # another backbone asked: _warn_if_other_backbone's
    if resolve(trained_on).dim != upsampler.dim:
        return  # refused by refuse_other_width, asking for them first
    _warn_once(
        upsampler,
        ("weights", trained_on),
        f"was trained on weights of {trained_on}'s architecture other than its own (its record "
        f"says so, not where they are), and runs {trained_on}'s own: pass them, "
        f"{_weights_said(upsampler.dim)}",
        outside=True,
    )


def _recorded_weights_dim(upsampler: LoftUp) -> bool:
    """Whether ``upsampler``'s record says it was trained on backbone weights of its own width
    other than its backbone's own (save_pretrained given ``backbone_weights``): of another
    width than the registered one, or fine-tuned at that width."""
    return getattr(upsampler, "backbone_weights_dim", None) == upsampler.dim


def _weights_said(dim: int) -> str:
    """How to pass backbone weights of ``dim``-d features, from Python and the command line."""
    return (
        f"backbone_weights=PATH (CLI --backbone-weights PATH), the folder of a model of {dim}-d "
        "features"
    )


def _weights_of_its_width(upsampler: LoftUp, trained_on: str) -> str:
    """The fix where the backbone ``upsampler`` records, built with its own weights, gives
    features of another width: it was trained on weights of that architecture at its width (a
    small model; loftup train's export and save_pretrained(backbone_weights=) record so), to
    be given again. Where its record does not say the weights were of its own width, the other
    reading is offered too: a wrong backbone recorded, with the backbones of its width (none
    of them the recorded one)."""
    from .featurizers import backbones_of_dim, resolve

    where, dim = getattr(upsampler, "source", None) or "passed in", upsampler.dim
    if _recorded_weights_dim(upsampler):
        return (
            f"the upsampler {where} was trained on weights of {trained_on}'s architecture at "
            f"another width (its record says so, not where they are): pass them, "
            f"{_weights_said(dim)}"
        )
    names = [n for n in backbones_of_dim(dim) if n != resolve(trained_on).name]
    other = f"a different backbone, of {dim}-d features: {', '.join(names)}" if names else None
    return (
        f"the upsampler {where} records {trained_on} all the same: if it was trained on weights "
        f"of {trained_on}'s architecture at another width, pass them, {_weights_said(dim)}; if "
        f"it was trained on another backbone, save_pretrained it again recording that one"
        + (f" ({other})" if other else "")
    )


def _warn_if_other_norm(upsampler: LoftUp, featurizer: Featurizer) -> None:
    """Warn, once per pairing and process, where the upsampler records the normalisation its
    backbone's images had in training (``backbone_norm``: CLIP's and SigLIP's own constants, or
    ImageNet's) and the featurizer is given another: its features differ, without an error."""
    trained, used = getattr(upsampler, "backbone_norm", None), featurizer.input_norm_key()
    if trained and used not in (None, trained):
        _warn_once(
            upsampler,
            ("norm", trained, used),
            f"was trained on {featurizer.name}'s features of images normalised as {trained!r}, "
            f"not {used!r}, so its output is not what it learnt: leave out backbone_norm= "
            "(--backbone-norm) to use the one it records",
        )


def _warn_once(upsampler: LoftUp, pairing: tuple, says: str, outside: bool = False) -> None:
    """A :class:`BackboneMismatchWarning`: "backbone mismatch: the upsampler ... ``says``", and
    how to silence it; once per upsampler and ``pairing`` in a process, at load_pipeline's
    caller's line (``outside``: the first outside loftup and torch). An upsampler is
    known by its source (a released name, a file or folder: loaded again, it is the same
    one), or where it has none by the module itself: two modules built in the process are two
    upsamplers, though neither has a source to tell them apart."""
    source = getattr(upsampler, "source", None)
    warned = _WARNED_UNSOURCED.setdefault(upsampler, set()) if not source else _WARNED_MISMATCH
    key = pairing if not source else (str(source), *pairing)
    if key in warned:
        return
    warned.add(key)
    import warnings

    which = f"upsampler {source}" if source else "upsampler"
    warnings.warn(
        printable(
            f"backbone mismatch: the {which} {says}, or if intended silence this with "
            "PYTHONWARNINGS='ignore:backbone mismatch' (Python: warnings.filterwarnings('ignore', "
            "'backbone mismatch'))"
        ),
        BackboneMismatchWarning,
        stacklevel=_caller_level() if outside else 5,  # load_pipeline's caller
    )
