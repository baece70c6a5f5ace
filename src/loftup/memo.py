"""Per-shape constants of the fast path (:mod:`loftup.fastpath`), computed once per folded
weights, and the functions ``torch.compile`` must leave eager.

Both are what the fast path needs from ``torch.compile`` and CUDA graphs
(:mod:`loftup.compiled`, :mod:`loftup.graphs`): the memo is recomputed under the compiler and
during a graph's capture, and the eager table keeps a few functions out of the compiler's reach.
"""

from __future__ import annotations

import functools

import torch

from .fused import FusedWeights

#: The functions the compiler must leave as they are, by name: each is called through this
#: table, which :func:`compile_ready` fills with their ``torch.compiler.disable`` versions before
#: anything is compiled (importing the compiler costs about 2 s, which every command would pay
#: if they were decorated at import).
_EAGER: dict = {}


def _eager_under_compile(fn):
    """``fn``, left eager by ``torch.compile`` once :func:`compile_ready` has run."""
    _EAGER[fn.__name__] = fn

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return _EAGER[fn.__name__](*args, **kwargs)

    return call


def compile_ready() -> None:
    """Mark the functions that must run eagerly for ``torch.compile`` (idempotent); called by
    :func:`loftup.compiled.compile_upsampler` before it compiles."""
    for name, fn in list(_EAGER.items()):
        if not getattr(fn, "_loftup_eager", False):
            fn = torch.compiler.disable(fn)
            fn._loftup_eager = True
            _EAGER[name] = fn


def memo(fw: FusedWeights, key: tuple, make):
    """``make()``, computed once per folded weights and ``key`` (a shape, a device): the
    positional and coordinate encodings, a dozen small kernels each that a small output or a
    CUDA graph would otherwise repeat on every call. Recomputed under ``torch.compile``, which
    traces them, and during a CUDA graph's capture (a tensor made then holds nothing until the
    graph runs; the graph computes it on each replay). The memo is emptied when it holds 512
    entries; a graph keeps the entries it reads (:func:`loftup.graphs.graph_upsampler`).

    On a GPU an entry is made by kernels queued on the stream current then (the image's half
    may be queued on a second one, :func:`loftup.early_start.start_upsample`): until they have run,
    a reader on another stream waits for them (an event recorded after them), rather than
    reading memory they have not written yet."""
    if torch.compiler.is_compiling():
        return make()
    hit = fw.memo.get(key)
    if hit is None:
        if _capturing():
            return make()
        if len(fw.memo) >= 512:
            _empty(fw.memo)
        hit = fw.memo[key] = make()
        dev = key[-1]
        if isinstance(dev, torch.device) and dev.type == "cuda":
            made = torch.cuda.Event()
            made.record(torch.cuda.current_stream(dev))
            fw.memo[("made", key)] = made
    else:
        made = fw.memo.get(("made", key))
        if made is not None and not _capturing():  # a capture begins synchronised: all done
            if made.query():  # done: no stream need wait for it again (nor another thread's)
                fw.memo.pop(("made", key), None)
            else:
                torch.cuda.current_stream(key[-1]).wait_event(made)
    return hit


def _capturing() -> bool:
    """Whether this thread's current CUDA stream is capturing a graph (never on the CPU)."""
    return torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing()


def _empty(cache: dict) -> None:
    """Drop every entry, once the GPU work queued so far is done: an entry may still be read
    by a kernel queued on another stream (the image's half on a second one), and its memory
    would otherwise go back to the allocator under it."""
    devices = {
        t.device
        for v in list(cache.values())  # a snapshot: another thread may add an entry meanwhile
        for t in (v if isinstance(v, (tuple, list)) else (v,))
        if isinstance(t, torch.Tensor) and t.is_cuda
    }
    for d in devices:
        torch.cuda.synchronize(d)
    cache.clear()
