"""What loads but is not the upsampler asked for, refused by :func:`loftup.hub.load_upsampler`:
weights that are not floating point or not finite, a released name's file of another
architecture (width, depth, frequencies...), and a backbone's name or hub repo, or a released
upsampler's hub repo, given as the upsampler."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError, UsageError, WeightsNotFoundError
from ..model import LoftUp
from .registry import RELEASED
from .remote import damaged_in_cache


def refuse_backbone(text: str) -> None:
    """A UsageError where ``text``, given as the upsampler, names a backbone or its hub repo
    ("no such file or folder: facebook/dinov2-small", or "unknown upsampler", said nothing of
    the mix-up)."""
    from ..featurizers import ALIASES as BACKBONE_ALIASES
    from ..featurizers import FEATURIZERS

    by_repo = {s.default_weights: n for n, s in FEATURIZERS.items() if s.default_weights}
    repo = text.partition("@")[0]  # a revision of it is still the backbone's repo
    name = by_repo.get(repo) or BACKBONE_ALIASES.get(repo, repo)  # dinov2_vits14@main too
    if name not in FEATURIZERS:
        return
    what = f"backbone {name}'s hub repo" if repo in by_repo else "a backbone"
    trained = [c.name for c in RELEASED.values() if c.backbone == name]
    model = f"the released {trained[0]}" if trained else "a released name"
    raise UsageError(
        f"{text} is {what}, not an upsampler: pass it as the backbone (backbone={name!r}, CLI "
        f"--backbone {name}) and as the upsampler {model} or its weights"
    )


def upsampler_name(source) -> bool:
    """Whether ``source``, given as the upsampler, reads as a name rather than a path: a
    released name (or alias), or a hub id ``ORG/NAME[@REVISION]``. Such a text is looked for
    as a file or folder here first, but is no path to check for permission: in a current
    folder this user may not search, ``loftup_dinov2s`` was refused as a file there."""
    from .registry import ALIASES
    from .user_repos import hub_id

    if not isinstance(source, str):  # a Path names a file, never a name
        return False
    return ALIASES.get(source, source) in RELEASED or hub_id(source) is not None


def hub_source(text: str) -> tuple[str, str | None] | None:
    """Where ``text``, given as the upsampler and naming no file or folder here, is read from,
    as :func:`~loftup.hub.load_upsampler` decides it, without reading anything: None for a
    registered name (its cached or downloaded file), ``(repo_id, revision)`` for the hub id of
    an upsampler of one's own; a backbone's name or repo, a released upsampler's repo, a
    missing path and an unknown name raise the error the load would."""
    import os

    from .files import WEIGHT_SUFFIXES
    from .registry import ALIASES, resolve_name
    from .user_repos import hub_id

    refuse_backbone(text)
    if ALIASES.get(text, text) in RELEASED:  # a registered name wins over a hub id
        return None
    repo = None if released_repo(text) else hub_id(text)
    if repo is not None:
        return repo
    if os.sep in text or Path(text).suffix in WEIGHT_SUFFIXES:
        raise missing_source(text)
    resolve_name(text)  # an unknown name: said with the names there are
    return None


def missing_source(text: str) -> UsageError | WeightsNotFoundError:
    """The error for ``text``, given as the upsampler, written as a path and naming nothing
    there: a released upsampler's hub repo (``haiwen/loftup-dinov2s``) is said with the name
    that loads it; anything else is a missing file or folder, with what may be given."""
    name = released_repo(text)
    if name is not None:
        return UsageError(
            f"{text} is the hub repo of the released upsampler {name}: pass its name, "
            f"{name}, which loads it from there (the Hugging Face cache, or a download)"
        )
    return WeightsNotFoundError(
        f"no such file or folder: {text}; check the path, or pass a released name "
        f"({', '.join(RELEASED)}) or a hub id ORG/NAME"
    )


def released_repo(text: str) -> str | None:
    """The released upsampler whose hub repo ``text`` names (at any ``@REVISION``), or None."""
    by_repo = {c.repo_id: c.name for c in RELEASED.values()}
    return by_repo.get(text.partition("@")[0])


def check_released_architecture(model: LoftUp, ckpt, file: Path) -> None:
    """A CheckpointError where the file found for released name ``ckpt`` holds an upsampler of
    another architecture than the released one: another width (another checkpoint's file,
    copied into the cache under this name: it loaded, and failed only at the backbone, whose
    features did not fit it), or the right width with a block or a frequency missing (a
    damaged or edited file: the weights' shapes built a smaller model, which loaded without
    a word)."""
    fix = refetch_fix(file, ckpt.name)
    if model.dim != ckpt.dim:
        raise CheckpointError(
            f"{file} holds a {model.dim}-d upsampler, but {ckpt.name} is {ckpt.dim}-d (for "
            f"{ckpt.backbone}'s features): it is another checkpoint's file; {fix}"
        )
    want = ckpt.config
    odd = [
        f"{name} {getattr(model.config, name)} (released: {getattr(want, name)})"
        for name in _ARCHITECTURE
        if getattr(model.config, name) != getattr(want, name)
    ]
    if odd:
        count = sum(p.numel() for p in model.parameters())
        raise CheckpointError(
            f"{file} holds a {model.dim}-d upsampler of {', '.join(odd)}, {count:,} parameters "
            f"where {ckpt.name} has {_parameter_count(want):,}: it is damaged or edited, not the "
            f"released file; {fix}"
        )


def refetch_fix(file: Path, name: str) -> str:
    """What to do about the file ``file`` found for released name ``name`` that is not its
    upsampler's: delete it (its blob, in the Hugging Face cache) and fetch it again."""
    return damaged_in_cache(file, name) or f"delete it and run `loftup download {name}`"


#: The hyper-parameters a released checkpoint fixes besides its width, as method.md states them
_ARCHITECTURE = (
    "depth",
    "num_heads",
    "n_freqs",
    "grid_freqs",
    "mlp_dim",
    "coords",
    "attention_window",
)


def _parameter_count(config) -> int:
    """The parameters of a LoftUp of ``config`` (4,303,894 at C=384, as method.md states)."""
    return sum(p.numel() for p in LoftUp(config=config).parameters())


def check_state(state: dict, origin: str, fix: str | None = None) -> None:
    """Refuse weights stored as integers, booleans or complex numbers (cast to float32 by
    load_state_dict without a word: not an upsampler's weights) and weights that hold NaN or
    infinities (a training run that diverged): every output would be NaN, written without a
    word; and weights on the meta device, which hold no values. BatchNorm's step counters
    (``num_batches_tracked``) are integers. ``fix``: what to do instead, where it is not
    another file (a released name's cached file: fetch it again)."""
    odd = [
        (k, t.dtype)
        for k, t in state.items()
        if isinstance(t, torch.Tensor)
        and not t.is_floating_point()
        and not k.endswith("num_batches_tracked")
    ]
    if odd:
        raise CheckpointError(
            f"{origin}: weight {odd[0][0]!r} is stored as {odd[0][1]} ({len(odd)} of its "
            f"{len(state)} tensors are not floating point), so these are not an upsampler's "
            "weights (a quantized or converted copy?); "
            f"{fix or 'pass the file save_pretrained or loftup train wrote, or a released name'}"
        )
    empty = [k for k, t in state.items() if isinstance(t, torch.Tensor) and t.is_meta]
    if empty:  # (their isfinite below was "Tensor.item() cannot be called on meta tensors")
        raise CheckpointError(
            f"{origin}: weight {empty[0]!r} is on the meta device, with no values ({len(empty)} "
            f"of its {len(state)} tensors): "
            + (
                f"the file holds no weights; {fix}"
                if fix
                else "the state dict of a model built without its weights (under "
                "torch.device('meta') or accelerate's init_empty_weights) saved before they "
                "were loaded; save it again once they are"
            )
        )
    bad = [
        k
        for k, t in state.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()
    ]
    if bad:
        raise CheckpointError(
            f"{origin}: {len(bad)} of its {len(state)} weight tensors hold NaN or infinite values "
            f"(first: {bad[0]}), so every feature would be NaN"
            + (f"; {fix}" if fix else ": a training run that diverged? Use an earlier checkpoint")
        )
