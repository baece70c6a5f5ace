"""What a pickle of tensors and containers alone names and makes, as torch's weights-only loader
reads it, for :mod:`.pickle_walk`'s objects (:func:`plain`, :func:`is_tensor`) and for every
global its walk met (:func:`allowed`): the allowlists, nothing unpickled."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .pickle_walk import Thing

#: The classes whose object the walk makes a dict (:func:`~.pickle_walk._made`)
DICT_CLASSES = {("collections", "OrderedDict"), ("builtins", "dict"), ("__builtin__", "dict")}
#: The functions torch.save pickles a tensor or parameter with (its ``__reduce_ex__``): none
#: other is taken for a tensor (``torch._tensor._rebuild_from_type_v2`` calls the function it
#: is given, ``torch.storage._load_from_bytes`` unpickles bytes with all code allowed)
TENSOR_REBUILDS = {
    ("torch._utils", f)
    for f in ("_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state")
} | {("torch._utils", "_rebuild_qtensor"), ("torch._utils", "_rebuild_tensor_v3")}
#: The storage class torch.save names for a dtype of no class of its own (float8, uint16,
#: complex32...: a tensor of ``_rebuild_tensor_v3``, its dtype its argument), its size in bytes
UNTYPED = ("torch.storage", "UntypedStorage")
#: The values named that torch's weights-only loader reads (its allowlist): dtypes, qschemes
_VALUES = {
    ("torch", n) for n in dir(torch) if isinstance(getattr(torch, n), (torch.dtype, torch.qscheme))
}
#: The classes and functions that loader calls, whose objects are plain where their
#: arguments are (collections.OrderedDict: made a dict, :data:`DICT_CLASSES`)
_CALLS = {("torch", "Size"), ("torch", "device"), ("_codecs", "encode"), ("builtins", "set")}
_CALLS |= {("builtins", "complex"), ("builtins", "bytearray"), ("collections", "Counter")}
_CALLS |= {("torch.serialization", "_get_layout")}  # (a sparse tensor's layout, by name)
#: torch's rebuilds of a sparse tensor (its layout, its indices' and values' tensors, its
#: size) and of a meta tensor (its dtype, size, stride), both in torch's weights-only loader's
#: allowlist, as its layout by name is (``torch.serialization._get_layout``): plain where their
#: arguments are, never taken for a tensor (:func:`is_tensor`: a state dict's, for a way out)
OTHER_REBUILDS = {
    ("torch._utils", f) for f in ("_rebuild_sparse_tensor", "_rebuild_meta_tensor_no_storage")
}
#: What a pickle of tensors and containers alone calls (:attr:`~.pickle_walk.Walk.called`)
CALLABLE = _CALLS | TENSOR_REBUILDS | OTHER_REBUILDS | DICT_CLASSES
#: The functions numpy pickles an array or scalar with
_NUMPY = {
    (m, f)
    for m in ("numpy.core.multiarray", "numpy._core.multiarray")
    for f in ("_reconstruct", "scalar")
}


def plain(thing: Thing, tensors: bool = False) -> bool:
    """Whether ``thing`` holds strings, numbers and containers of them alone, at any depth, and
    the values and objects of them that torch's weights_only load reads (a dtype, a Size, a
    device): nothing else a class or function makes or names (what that load refuses); with
    ``tensors``, torch's tensors too, as torch.save pickles them (:data:`TENSOR_REBUILDS`,
    their arguments plain, their storage torch's persistent id; sparse and meta ones,
    :data:`OTHER_REBUILDS`): what that load reads."""
    seen, todo = set(), [thing]
    while todo:
        t = todo.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.kind == "mark" or t.state is not None and t.kind != "dict":
            return False  # (a BUILD: torch.save writes one of a state dict's _metadata alone)
        if t.kind == "global" and t.value not in _VALUES:
            return False
        if t.kind == "persid" and not storage_id(t):
            return False
        if t.kind == "made" and t.value not in _CALLS:
            if not (tensors and (t.value in TENSOR_REBUILDS or t.value in OTHER_REBUILDS)):
                return False
        todo += [*t.items.values(), *t.extra, *(t.args if t.kind != "persid" else t.args[2:])]
        todo += [t.state] if t.state is not None else []
    return True


def storage_id(pid: Thing) -> bool:
    """Whether the persistent id ``pid`` is a storage's as torch.save writes it: ("storage", a
    storage class of torch's, its key, its location, its size[, a view])."""
    if len(pid.args) not in (5, 6):
        return False
    kind, cls = pid.args[:2]
    named = cls.kind == "global" and storage_class(cls.value)
    return named and kind.kind == "str" and kind.value == "storage"


def storage_class(name: tuple[str, str]) -> bool:
    """Whether the global ``name`` is one of torch's storage classes (a persistent id's)."""
    return name[0] == "torch" and name[1].endswith("Storage") or name == UNTYPED


def is_tensor(thing: Thing) -> bool:
    """Whether ``thing`` is a tensor as torch.save pickles one: a call of one of
    :data:`TENSOR_REBUILDS` whose arguments are plain (:func:`plain`), its storage torch's."""
    return thing.kind == "made" and thing.value in TENSOR_REBUILDS and plain(thing, tensors=True)


def is_numpy(thing: Thing) -> bool:
    """Whether ``thing`` is a numpy array or scalar, as numpy pickles one."""
    value = thing.value if thing.kind == "made" else None
    return value is not None and value in _NUMPY


def allowed(named: set[tuple[str, str]], called: set[tuple[str, str]]) -> bool:
    """Whether each global of ``named`` is one a file of tensors and containers names (a dtype,
    a Size, a tensor's rebuild, a storage's class...) and each of ``called`` one it calls."""
    names = all(n in _VALUES or n in CALLABLE or storage_class(n) for n in named)
    return names and called <= CALLABLE
