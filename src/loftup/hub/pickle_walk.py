"""What a pickle's top-level object is, from its opcodes (:func:`pickletools.genops`), nothing
unpickled (:class:`Walk`), walked once a load by :mod:`.file_pickle` for :mod:`.member_sizes`
and :mod:`.way_out`: bounded in the bytes read (:data:`PICKLE_CAP`) and the opcodes walked
(:data:`OPS_CAP`), each of which makes one object at most (the stack and memo kept no larger),
in time linear in them: a crafted pickle past them is given up (:class:`WalkCapped`), its
memory and time bounded."""

from __future__ import annotations

import contextlib
import gc
import pickletools
from types import MappingProxyType

from .pickle_plain import DICT_CLASSES, allowed

#: The largest pickle read (its uncompressed size): a torch.save pickle holds names and shapes,
#: its tensors' bytes lie in other members (a LoftUp of C=768 saved whole: 14 KB; a state
#: dict of 10,000 tensors: 1.1 MB, with an AdamW's state: 3.5 MB)
PICKLE_CAP = 64 << 20
#: The most opcodes walked in one file: about 30 a tensor (a state dict of 10,000 tensors:
#: 300,000, its sizes checked in 0.65 s; with an AdamW's state: 1.2 million, in 3.3 s, on 2
#: shared cores), a pickle of 4 MB to 60 MB; a crafted one at the cap takes some 10 s, 600 MB
OPS_CAP = 4_000_000

_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE"}
_STRINGS |= {"BINUNICODE", "BINUNICODE8"}
#: The strings of bytes that pickletools gives as Latin-1 text, which the unpickler decodes in
#: the encoding torch.load gives it (UTF-8: a storage's key 'é' is b'\xc3\xa9', not 'Ã©')
_BYTE_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING"}
_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET = {"GET", "BINGET", "LONG_BINGET"}
#: The opcodes of an int, whose value is kept (a storage's size, :mod:`.member_sizes`)
_INTS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_TUPLES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
#: copyreg's function that protocols 0 and 1 make an object of a class with (the class first)
_RECONSTRUCTORS = {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")}
#: A call whose callable no global names (:attr:`Walk.called`): none is plain
_NO_GLOBAL = ("", "a call of an object the pickle made")
#: A BUILD of other than a dict (a state dict's _metadata), as :attr:`Walk.called` says it
_BUILT = ("", "BUILD of an object")


class WalkCapped(ValueError):
    """A pickle past one of the walk's caps; ``ops``: the opcodes walked by then."""

    def __init__(self, what: str, ops: int):
        super().__init__(f"a pickle past the walk's cap on {what} ({ops} opcodes walked)")
        self.what, self.ops = what, ops


class Thing:
    """What the walk knows of one object of the pickle: its kind ("str", "dict", "seq" (a list,
    tuple or set), "global" (a class or function named), "made" (an object built by calling
    one), "persid" (an object of torch's persistent load: a tensor's storage), "other" (a
    number, None, bytes: :data:`OTHER`, one for all; an int its own, its value kept, where the
    walk is told to (:class:`Walk`))), a string's, an int's or a global's value (a made
    object's: the global called, its class's where known, else None), a dict's string keys and
    their values (its other keys in ``extra``), a seq's items, a made object's call's
    arguments (a persid's: its id's items) in ``args``, its BUILD state. Each is empty,
    read-only and shared (:data:`_NO_ITEMS`, a tuple) until the walk puts items in it
    (:func:`_set`, :func:`_extend`): a quarter of the memory of an object of its own."""

    __slots__ = ("kind", "value", "items", "extra", "args", "state")

    def __init__(self, kind: str, value=None):
        self.kind, self.value, self.state = kind, value, None
        self.items: dict[str, Thing] = _NO_ITEMS
        self.extra: list[Thing] = ()
        self.args: list[Thing] = ()


_NO_ITEMS = MappingProxyType({})
MARK, OTHER = Thing("mark"), Thing("other")


class Walk:
    """The walk of the pickles of one file, read from ``stream``: :meth:`next` is the object
    the next pickle makes; the opcodes walked are counted over them all (``ops``), and the
    highest pickle protocol they declare or use kept (``protocol``: 0 or 1 declare none).
    ``ints``: each int its own Thing, its value kept (a storage's size, :mod:`.member_sizes`);
    else all are :data:`OTHER`, one object, as every other number is. ``named``: each global
    the pickles walked name (GLOBAL, STACK_GLOBAL, INST, EXT), ``called``: each one they call
    (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST; :data:`_NO_GLOBAL` for a callable no global names,
    :data:`_BUILT` for a BUILD of other than a dict), whether its result is kept or thrown
    away (POP, POP_MARK, a memo alone, a dict's key given again): :meth:`only_allowed`.
    ``persids``: each persistent id (a storage's) the pickles walked make, kept or thrown away
    (torch.load loads each), for :mod:`.member_sizes`: no second walk of the objects made."""

    def __init__(self, stream, ints: bool = False):
        self.stream, self.ops, self.protocol, self.ints = stream, 0, 0, ints
        self.named: set[tuple[str, str]] = set()
        self.called: set[tuple[str, str]] = set()
        self.persids: list[Thing] = []  # each storage's persistent id met, thrown away too

    def only_allowed(self) -> bool:
        """Whether every global the pickles walked name is one a file of tensors and
        containers names (:func:`plain`'s: a dtype, a Size, a tensor's rebuild, a storage's
        class...) and every call is of one it calls: what :func:`plain` says of the object
        made holds for all the pickles would run, its objects thrown away too."""
        return allowed(self.named, self.called)

    def next(self) -> Thing:
        """The object the next pickle makes, as far as its opcodes say (up to its STOP).
        Raises where they cannot be followed (an empty stack, a memo not written), or past a
        cap (:class:`WalkCapped`). Python's cyclic garbage collector is paused meanwhile
        (:func:`paused_gc`)."""
        stack: list[Thing] = []
        memo: dict[int, Thing] = {}
        with paused_gc():
            for op, arg, _ in pickletools.genops(self.stream):
                self.ops += 1
                self.protocol = max(self.protocol, arg if op.name == "PROTO" else op.proto)
                if self.ops > OPS_CAP:
                    raise WalkCapped("opcodes", self.ops)
                if op.name == "STOP":
                    return stack.pop()
                _step(op, arg, stack, memo, self)
        raise ValueError("a pickle without STOP")


@contextlib.contextmanager
def paused_gc():
    """Python's cyclic garbage collector paused within (where it was running): its passes over
    a walk's objects, a million for a large checkpoint, took twice the walk's own time, while
    they lived (a user of them ends their life within, by their count of references)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _step(op, arg, stack: list[Thing], memo: dict[int, Thing], walk: Walk) -> None:
    """The opcode ``op`` (with ``arg``) done on the ``walk``'s ``stack`` and ``memo``, each
    global named or called recorded in it (:attr:`Walk.named`); ``walk.ints``: an int its own
    Thing, its value kept (else :data:`OTHER`)."""
    name = op.name
    if name in _STRINGS:
        stack.append(Thing("str", _decoded(arg) if name in _BYTE_STRINGS else arg))
    elif name in _INTS and walk.ints:  # plain, as OTHER is, with its value
        stack.append(Thing("other", arg))
    elif name == "MARK":
        stack.append(MARK)
    elif name == "EMPTY_DICT":
        stack.append(Thing("dict"))
    elif name in ("DICT", "SETITEMS"):
        items = _to_mark(stack)
        target = Thing("dict") if name == "DICT" else stack[-1]
        for key, value in zip(items[::2], items[1::2]):
            _set(target, key, value)
        if name == "DICT":
            stack.append(target)
    elif name == "SETITEM":
        value, key = stack.pop(), stack.pop()
        _set(stack[-1], key, value)
    elif name in ("EMPTY_LIST", "EMPTY_TUPLE", "EMPTY_SET"):
        stack.append(Thing("seq"))
    elif name in ("LIST", "TUPLE", "FROZENSET") or name in _TUPLES:
        items = _to_mark(stack) if name not in _TUPLES else _pop(stack, _TUPLES[name])
        stack.append(seq := Thing("seq"))
        seq.extra = items
    elif name in ("APPEND", "APPENDS", "ADDITEMS"):
        items = [stack.pop()] if name == "APPEND" else _to_mark(stack)
        _extend(_onto(stack[-1]), items)
    elif name in ("GLOBAL", "INST"):
        module, _, qualname = arg.partition(" ")
        found = Thing("global", (module, qualname))
        walk.named.add(found.value)
        if name == "INST":  # (its arguments, above the mark, kept: an INST's call is made)
            walk.called.add(found.value)
            found = _made(found, _to_mark(stack))
        stack.append(found)
    elif name == "STACK_GLOBAL":
        qualname, module = stack.pop(), stack.pop()
        if module.kind != "str" or qualname.kind != "str":
            raise ValueError("STACK_GLOBAL of other than strings")
        stack.append(Thing("global", (module.value, qualname.value)))
        walk.named.add(stack[-1].value)
    elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"):
        args = {"REDUCE": 1, "NEWOBJ": 1, "NEWOBJ_EX": 2}.get(name)
        made = _to_mark(stack) if args is None else _pop(stack, args + 1)
        walk.called.add(made[0].value if made[0].kind == "global" else _NO_GLOBAL)
        stack.append(_made(made[0], made[1:]))
    elif name == "BUILD":
        state, target = stack.pop(), stack[-1]
        if target is MARK or target.kind == "other":  # (crafted: the unpickler refuses it)
            raise ValueError(f"BUILD on a {target.kind}")
        if target.kind != "dict":
            walk.called.add(_BUILT)
        target.state = state
    elif name == "DUP":
        stack.append(stack[-1])
    elif name in _PUT or name == "MEMOIZE":
        memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
    elif name in _GET:
        stack.append(memo[arg])
    elif name == "BINPERSID":  # torch's legacy format: a module's class as ("module", class, ...)
        pid = stack.pop()
        items = pid.extra if pid.kind == "seq" else []
        if len(items) > 1 and items[0].value == "module" and items[1].kind == "global":
            stack.append(items[1])
        else:  # a storage's, as torch's persistent load reads it (:func:`~.pickle_plain.storage_id`)
            stack.append(persid := Thing("persid"))
            persid.args = items
            walk.persids.append(persid)  # (torch loads each: its size checked, no second walk)
    elif name.startswith("EXT"):  # an object of the extension registry: named, not plain
        stack.append(Thing("global", ("copyreg", f"extension {arg}")))
        walk.named.add(stack[-1].value)
    else:  # any other: its stack effect as pickletools states it, its result a plain one
        before = op.stack_before
        if pickletools.markobject in before:
            _to_mark(stack)
            before = before[: before.index(pickletools.markobject)]
        _pop(stack, len(before))
        stack.extend(OTHER for _ in op.stack_after)


def _decoded(latin1: str) -> str:
    """The string of bytes pickletools gives as ``latin1`` text, as the unpickler decodes it
    for torch.load (UTF-8); as it is where it is no UTF-8 (that load fails on it: what is said
    of the file, its protocol and objects, as before)."""
    try:
        return latin1.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return latin1


def _pop(stack: list[Thing], n: int) -> list[Thing]:
    """The top ``n`` items of ``stack``, popped (an IndexError where there are fewer)."""
    if n > len(stack):
        raise IndexError("a pickle popping an empty stack")
    items = stack[len(stack) - n :]
    del stack[len(stack) - n :]
    return items


def _to_mark(stack: list[Thing]) -> list[Thing]:
    """The items above the topmost mark, popped with it (an IndexError where there is none)."""
    items = []
    while (thing := stack.pop()) is not MARK:
        items.append(thing)
    return items[::-1]


def _set(target: Thing, key: Thing, value: Thing) -> None:
    """``target[key] = value``, kept where ``target`` is a dict: by name for a string key."""
    if _onto(target).kind == "dict" and key.kind == "str":
        if target.items is _NO_ITEMS:
            target.items = {}
        target.items[key.value] = value
    else:
        _extend(target, [key, value])


def _extend(target: Thing, items: list[Thing]) -> None:
    """``items`` put at the end of ``target``'s ``extra`` (a list of its own made first)."""
    if type(target.extra) is tuple:
        target.extra = list(target.extra)
    target.extra += items


def _onto(target: Thing) -> Thing:
    """``target``, where items may be put in it: a dict, a seq or a made object (whose items
    leave it not plain either way); else a ValueError (the unpickler fails there too)."""
    if target.kind not in ("dict", "seq", "made"):
        raise ValueError(f"items put in a {target.kind}")
    return target


def _made(callable_: Thing, args: list[Thing] = ()) -> Thing:
    """The object ``callable_`` makes of ``args``: a dict for dict's classes (OrderedDict;
    what its arguments hold kept in its ``extra``, for :func:`plain`), else "made" (of the
    global called, None for another callable; of the class named where protocols 0 and 1
    make it by ``copyreg._reconstructor``), its arguments kept (``args``)."""
    if callable_.kind == "global" and callable_.value in _RECONSTRUCTORS and args:
        cls = args[0].extra[0] if args[0].kind == "seq" and args[0].extra else OTHER
        if cls.kind == "global":  # copyreg._reconstructor(cls, base, state): an object of cls
            callable_ = cls
    if callable_.kind == "global" and callable_.value in DICT_CLASSES:
        made = Thing("dict")
        made.extra = [a for a in args if a.kind != "seq" or a.extra]  # (its items: SETITEMS)
        return made
    made = Thing("made", callable_.value if callable_.kind == "global" else None)
    made.args = list(args)
    return made
