"""Which key of a checkpoint's dict holds its LoftUp (:func:`holder`): ``loftup train``'s
"model", PyTorch's tutorial's "model_state_dict", a LightningModule's (or the paper's)
"state_dict", or, where none of those holds one, the one other key that does (an EMA copy saved
alone: ``{"ema": ...}``, ``{"model_ema": ...}``), and whether others of other weights are
beside the one it loads (:func:`warn_others`). Read by :func:`loftup.convert.to_native`."""

from __future__ import annotations

import os
import re
import time

import torch

from .errors import CheckpointError
from .escaping import printable

#: The keys of a checkpoint dict that hold a model's state dict: loftup train's "model",
#: PyTorch's tutorial's "model_state_dict", a LightningModule's (or the paper's) "state_dict"
HOLDERS = ("model", "model_state_dict", "state_dict")

#: What a ``loftup train`` checkpoint records beside its "model": read with it, its heads too
RECORD = ("model_config", "backbone", "backbone_norm")

#: The end of a weight's name that only a LoftUp has: its image encoder's phases, named as
#: loftup names it or as the paper does (both of its layouts), under any module's name
_MARKS = ("image_encoder.phases", "upsampler.fourier_feat.1.biases")


def holds_loftup(value) -> bool:
    """Whether ``value`` is a dict that names a LoftUp's weights (in any layout, under any
    module's name)."""
    return isinstance(value, dict) and any(isinstance(k, str) and k.endswith(_MARKS) for k in value)


def holder(obj: dict, origin: str = "") -> str | None:
    """The key of ``obj`` whose dict holds its LoftUp: the first of :data:`HOLDERS` whose dict
    holds one, else, where ``obj`` names no LoftUp's weights itself, the one other key whose
    dict holds one (an EMA copy saved alone), else the first of :data:`HOLDERS` whose value is
    a dict (its error says what it holds); None where ``obj`` is read bare. Two of them
    holding LoftUps of other weights (``{"model": ..., "state_dict": ...}``), or several other
    keys, are a CheckpointError naming them, with the line that keeps one (``origin``: the
    file): which one to load is the user's to say."""
    dicts = [k for k in HOLDERS if isinstance(obj.get(k), dict)]
    held = [k for k in dicts if holds_loftup(obj[k])]
    if not held and not holds_loftup(obj):
        held = [k for k, v in obj.items() if isinstance(k, str) and holds_loftup(v)]
    if len(held) > 1 and not _all_same(obj, held):
        from .hub.way_out import keep_one_line

        record = [k for k in RECORD if k in obj]
        kept = held[-1]
        said = ", ".join(repr(k) for k in held)
        raise CheckpointError(
            f"{printable(origin)} holds {len(held)} LoftUps of other weights, under its keys "
            f"{said}: keep the one to load in a file of its own and load that; for {kept!r}: "
            f"{keep_one_line(origin, kept, None, record if kept == 'model' else ())}"
        )
    return held[0] if held else (dicts[0] if dicts else None)


def label(key: str) -> str:
    """``key`` as a part of a file's name: its characters other than letters, digits, ``-``
    and ``_`` made ``_``."""
    return re.sub(r"[^\w-]", "_", key, flags=re.ASCII).strip("_") or "model"


def _all_same(obj: dict, keys: list[str], as_key: str | None = None) -> bool:
    """Whether ``obj``'s dicts under ``keys`` hold the same LoftUp's weights (one state dict
    saved twice: perhaps once of its DDP or compiled module, or of a LightningModule holding
    it beside others), each read as the load reads it alone, or (``as_key``) as it reads the
    dict under that key: a copy beside the one loaded is of its layout (the paper's training
    layout, read under "state_dict" alone)."""
    if all(obj[k] is obj[keys[0]] for k in keys):  # one dict saved twice: torch.load's one
        return True
    first, *others = [_read(obj, k, as_key) for k in keys]
    return all(_same_state(first, other) for other in others)


def _read(obj: dict, key: str, as_key: str | None = None) -> dict | None:
    """The native state dict of the dict under ``obj[key]``, read as the load reads it alone
    under its key (or under ``as_key``); None where it is no LoftUp's as it is held."""
    from .convert import to_native

    try:
        return to_native({as_key or key: obj[key]}, "")[0]
    except CheckpointError:  # which to load is then the user's
        return None


def _same_state(a: dict | None, b: dict | None) -> bool:
    """Whether native state dicts ``a`` and ``b`` (None: none read) hold the same weights."""
    if a is None or b is None:
        return False
    return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)


#: The files :func:`warn_others` judged in this process, each by its device and inode, the
#: holder loaded, its size and its modification and change times, whether it warned or found
#: the copies beside the one loaded the same: not read again (a load converted and compared
#: every weight of such copies each time); a file written again since is judged anew
_JUDGED: set[tuple] = set()

#: How long after a file's last write its copies found the same may be kept so: a file written
#: again within one tick of its file system's clock (a second on some, 2 s on FAT; a few
#: milliseconds on ext4) keeps its times, and at its size its stamp, so one judged that soon
#: after it was written is judged again at its next load (git's "racily clean" files); a
#: file's warning is kept at once (said once: written again within that tick, not again)
_SETTLE_NS = 2 * 10**9


def warn_others(obj: dict, key: str | None, origin: str) -> None:
    """Warn, once per file and process, where ``obj``'s LoftUp under the holder ``key`` (the
    one loaded: the usual convention) has LoftUps of other weights beside it under keys of
    their own (``{"model": ..., "ema": ...}``, an EMA copy saved beside its model): their keys,
    and the line that keeps the last in a file of its own (``origin``: the file; "" for none,
    as :func:`_all_same` reads each key, says nothing). loftup train's "teacher" beside its
    "model" and record (``model_config``) is documented (its student loads, its teacher is
    final_teacher/): not said. A file judged once (:data:`_JUDGED`) is not read again; an
    ``origin`` that is no file here (a name for what was read from memory) is judged each time."""
    if key not in HOLDERS or not origin or not holds_loftup(obj[key]):
        return
    run = key == "model" and "model_config" in obj  # loftup train's checkpoint: its teacher
    beside = [
        k
        for k, v in obj.items()
        if isinstance(k, str) and k not in HOLDERS and not (run and k == "teacher")
        if holds_loftup(v)
    ]
    judged = _stamp(origin, key)
    if not beside or judged in _JUDGED:
        return
    loaded = _read(obj, key)  # read once, each copy beside it as it is read (key's layout)
    others = [k for k in beside if obj[k] is not obj[key]]
    others = [k for k in others if not _same_state(loaded, _read(obj, k, key))]
    if judged is not None and (others or time.time_ns() - max(judged[-2:]) > _SETTLE_NS):
        _JUDGED.add(judged)
    if not others:
        return
    import warnings

    from .cpu import _caller_level
    from .hub.way_out import keep_one_line

    record = [k for k in RECORD if k in obj] if key == "model" else []  # the run's: theirs too
    many = len(others) > 1
    said = f"{'LoftUps' if many else 'a LoftUp'} of other weights under its key{'s' * many} "
    said += ", ".join(repr(k) for k in others)
    warnings.warn(
        f"{printable(origin)} holds, beside the LoftUp under its key {key!r} (the one loaded), "
        f"{said} (an EMA copy?): to load that one instead, keep it in a file of its own and "
        f"load that; for {others[-1]!r}: "
        f"{keep_one_line(origin, others[-1], None, record, under=key)}",
        stacklevel=_caller_level(),  # the caller's line, as the load's other warnings
    )


def _stamp(origin: str, key: str) -> tuple | None:
    """The file ``origin`` as :data:`_JUDGED` knows it: its device and inode (one file, under
    whichever name: the same name in another folder is another), the holder loaded, and its
    size, modification and change times (a copy that kept another's time, ``cp -p``, is
    changed at its copy); None where it cannot be read (no file: nothing to know it by)."""
    try:
        st = os.stat(origin)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino, key, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def same_value(a, b) -> bool:
    """Whether ``a`` and ``b`` are the same value: tensors of one shape, dtype and values (a
    NaN where the other has one). Two views of the same memory (a module's weights saved under
    both keys, torch.save storing them once) are the same without reading them: a load
    compared every weight's values."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_meta or b.is_meta:  # no values (torch.equal cannot read them): the load says so
            return a.is_meta and b.is_meta
        if a is b or _one_memory(a, b) or torch.equal(a, b):
            return True
        if not a.is_floating_point():
            return False
        # NaN equals nothing, itself neither: a diverged run's weights saved twice were "two
        # LoftUps of other weights", where their load says the NaN and what to do
        nan = a.isnan()
        return torch.equal(nan, b.isnan()) and torch.equal(
            a.masked_fill(nan, 0), b.masked_fill(nan, 0)
        )
    return a is b


def _one_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether tensors ``a`` and ``b`` (of one shape and dtype) read the same memory as the
    same values: a negative or conjugate view of it (torch.save keeps its bit, torch.load
    gives it back) reads other values there."""
    return (
        a.device == b.device
        and a.data_ptr() == b.data_ptr()
        and a.stride() == b.stride()
        and a.is_neg() == b.is_neg()
        and a.is_conj() == b.is_conj()
        and a.numel() > 0
    )
