"""The way out for an upsampler's file of one's own refused for its pickled objects: the line of
Python that keeps its weights alone, for one who trusts the file (:func:`way_out`). What the
file's top-level object is comes from its pickle's opcodes (:func:`pickletools.genops`),
nothing unpickled, the pickle torch reads (``<first member's folder>/data.pkl`` of a zip
archive, the fourth pickle of the old format), read in bounded chunks: a member larger than
:data:`PICKLE_CAP`, compressed otherwise than stored or deflated, or anything the walk cannot
follow is told in general words."""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

#: The largest pickle read for the way out (its uncompressed size): a torch.save pickle holds
#: names and shapes, its tensors' bytes lie in other members; a larger one is not read
PICKLE_CAP = 64 << 20

_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE"}
_STRINGS |= {"BINUNICODE", "BINUNICODE8"}
_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET = {"GET", "BINGET", "LONG_BINGET"}
_DICT_CLASSES = {("collections", "OrderedDict"), ("builtins", "dict"), ("__builtin__", "dict")}


class _Thing:
    """What the walk knows of one object of the pickle: its kind ("str", "dict", "global" (a
    class or function named), "made" (an object built by calling one), "other"), a string's or
    a global's value, a dict's string keys and their values, a made object's BUILD state."""

    def __init__(self, kind: str, value=None):
        self.kind, self.value = kind, value
        self.items: dict[str, _Thing] = {}
        self.state: _Thing | None = None


_MARK = _Thing("mark")


def way_out(f, path: Path) -> str:
    """The end of the refusal of the file ``path`` (open as ``f``): how to keep its weights
    alone if its user trusts it, written beside it under a new name (``<stem>.weights.pt``).
    A Lightning checkpoint keeps ``{"state_dict": ...}`` (read as a training checkpoint, its
    modules other than the upsampler's are left out), a whole module (torch.save(model)) its
    ``.state_dict()``, ``{"model": ...}`` (``loftup train``'s) its model and record; any other
    file, or one whose pickle cannot be followed, is told in general words."""
    load = f'torch.load({str(path)!r}, map_location="cpu", weights_only=False)'
    try:
        keep = _keep(_top_object(f), load)
    except Exception:  # noqa: BLE001 - a pickle the walk cannot follow: the general words
        keep = None
    keep = keep or f"<the dict of tensors in {load}, or its .state_dict()>"
    out = _new_name(path)
    return (
        f"; if you trust the file (unpickling it runs its code), in Python: "
        f"torch.save({keep}, {str(out)!r}), then load {out}"
    )


def _new_name(path: Path) -> Path:
    """A path beside ``path`` that names no file: ``<stem>.weights.pt``, else numbered."""
    for i in range(1, 1000):
        out = path.with_name(f"{path.stem}.weights{'' if i == 1 else f'-{i}'}.pt")
        if not out.exists():
            return out
    return path.with_name(f"{path.stem}.weights-new.pt")


def _keep(top: _Thing | None, load: str) -> str | None:
    """The expression that keeps the weights of ``top`` (the pickle's object, loaded by
    ``load``), or None where the opcodes do not say it surely."""
    if top is None:
        return None
    if _is_module(top):
        return f"{load}.state_dict()"
    if top.kind != "dict":
        return None
    state, model, record = (top.items.get(k) for k in ("state_dict", "model", "model_config"))
    if state is not None and state.kind == "dict":
        return f'{{"state_dict": {load}["state_dict"]}}'
    if model is not None and _is_module(model):
        return f'{load}["model"].state_dict()'
    if model is not None and model.kind == "dict":
        if record is None:
            return f'{{"model": {load}["model"]}}'
        if record.kind == "dict" and all(v.kind in ("str", "other") for v in record.items.values()):
            return f'{{"model": (c := {load})["model"], "model_config": c["model_config"]}}'
    return None


def _is_module(thing: _Thing) -> bool:
    """Whether ``thing`` was pickled as a torch.nn.Module is: an object of a class, its state
    a dict holding ``_parameters`` and ``_modules``."""
    state = thing.state
    return (
        thing.kind == "made"
        and state is not None
        and state.kind == "dict"
        and {"_parameters", "_modules"} <= state.items.keys()
    )


def _top_object(f) -> _Thing | None:
    """The top-level object of the pickle torch reads from the file open as ``f``, or None
    where it is not read (no such member, too large, compressed otherwise)."""
    f.seek(0)
    if f.read(4) != b"PK\x03\x04":  # the old format: magic number, protocol, sys info, object
        f.seek(0)
        stream = _Capped(f)
        if _walk(stream).kind != "other":  # no magic number: torch would not read it either
            return None
        for _ in range(2):
            _walk(stream)
        return _walk(stream)
    with zipfile.ZipFile(f) as z:
        first = z.infolist()[0].filename
        if "/" not in first:
            return None
        info = z.getinfo(f"{first.split('/')[0]}/data.pkl")  # the one torch reads
        if info.file_size > PICKLE_CAP or info.compress_type not in (
            zipfile.ZIP_STORED,
            zipfile.ZIP_DEFLATED,
        ):
            return None
        with z.open(info) as member:
            return _walk(_Capped(member))


class _Capped:
    """The file ``f`` read no further than :data:`PICKLE_CAP` bytes: a ValueError beyond."""

    def __init__(self, f):
        self.f, self.left = f, PICKLE_CAP

    def _count(self, data: bytes) -> bytes:
        self.left -= len(data)
        if self.left < 0:
            raise ValueError(f"a pickle over {PICKLE_CAP} bytes")
        return data

    def read(self, n: int = -1) -> bytes:
        return self._count(self.f.read(self.left + 1 if n < 0 else min(n, self.left + 1)))

    def readline(self) -> bytes:
        return self._count(self.f.readline(self.left + 1))


def _walk(stream) -> _Thing:
    """The object the pickle at ``stream`` makes, as far as its opcodes say (one pickle: up to
    its STOP). Raises where they cannot be followed (an empty stack, a memo not written)."""
    stack: list[_Thing] = []
    memo: dict[int, _Thing] = {}
    for op, arg, _ in pickletools.genops(stream):
        name = op.name
        if name == "STOP":
            return stack.pop()
        if name in _STRINGS:
            stack.append(_Thing("str", arg))
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "EMPTY_DICT":
            stack.append(_Thing("dict"))
        elif name in ("DICT", "SETITEMS"):
            items = _to_mark(stack)
            target = _Thing("dict") if name == "DICT" else stack[-1]
            for key, value in zip(items[::2], items[1::2]):
                _set(target, key, value)
            if name == "DICT":
                stack.append(target)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            _set(stack[-1], key, value)
        elif name in ("GLOBAL", "INST"):
            if name == "INST":
                _to_mark(stack)
            module, _, qualname = arg.partition(" ")
            found = _Thing("global", (module, qualname))
            stack.append(_made(found) if name == "INST" else found)
        elif name == "STACK_GLOBAL":
            qualname, module = stack.pop(), stack.pop()
            if module.kind != "str" or qualname.kind != "str":
                raise ValueError("STACK_GLOBAL of other than strings")
            stack.append(_Thing("global", (module.value, qualname.value)))
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"):
            args = {"REDUCE": 1, "NEWOBJ": 1, "NEWOBJ_EX": 2}.get(name)
            made = _to_mark(stack)[0] if args is None else [stack.pop() for _ in range(args)]
            stack.append(_made(made if args is None else stack.pop()))
        elif name == "BUILD":
            state, target = stack.pop(), stack[-1]
            if target is _MARK:  # (a crafted pickle: the unpickler refuses it too)
                raise ValueError("BUILD on a mark")
            target.state = state
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in _PUT or name == "MEMOIZE":
            memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
        elif name in _GET:
            stack.append(memo[arg])
        else:  # any other: its stack effect as pickletools states it, its result unknown
            before = op.stack_before
            if pickletools.markobject in before:
                _to_mark(stack)
                before = before[: before.index(pickletools.markobject)]
            for _ in before:
                stack.pop()
            stack.extend(_Thing("other") for _ in op.stack_after)
    raise ValueError("a pickle without STOP")


def _to_mark(stack: list[_Thing]) -> list[_Thing]:
    """The items above the topmost mark, popped with it (an IndexError where there is none)."""
    items = []
    while (thing := stack.pop()) is not _MARK:
        items.append(thing)
    return items[::-1]


def _set(target: _Thing, key: _Thing, value: _Thing) -> None:
    """``target[key] = value``, kept where ``target`` is a dict and ``key`` a string."""
    if target.kind == "dict" and key.kind == "str":
        target.items[key.value] = value


def _made(callable_: _Thing) -> _Thing:
    """The object ``callable_`` makes: a dict for dict's classes (OrderedDict), else "made"."""
    if callable_.kind == "global" and callable_.value in _DICT_CLASSES:
        return _Thing("dict")
    return _Thing("made", callable_.value)
