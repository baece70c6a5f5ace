"""CUDA graphs of the inference path: :func:`graph_upsampler` captures the eager forward of one
input shape without compiling anything (the kernel launches, which dominate small outputs, are
issued by the GPU itself; none of the compile time of :func:`loftup.compile_upsampler`).
The forward it captures is :func:`loftup.untiled.untiled`.
"""

from __future__ import annotations

import torch

from .errors import LoftUpError, UsageError
from .input_checks import check_inputs, require_eval
from .tile_plan import check_settings, default_chunk_size
from .tiling import compute_dtype
from .untiled import untiled, untiled_decode, untiled_queries


def graph_upsampler(model, lr_feats: torch.Tensor, image: torch.Tensor, *, warmup: int = 2):
    """A CUDA-graph ``fn(lr_feats, image) -> (B, C, H, W)`` for inputs of these shapes: one
    untiled forward on folded weights, captured once and replayed (no compilation; the kernel
    launches, which dominate outputs of a few hundred pixels, are issued by the GPU itself).

    The returned tensor is the graph's own output buffer: the next call overwrites it (clone it
    to keep it). Inputs must keep the shapes and dtypes given here; the weights are folded now
    (make a new one after changing them: changed in place, the graph would compute with the
    old folded ones beside the new values of those it reads as they are: the Fourier
    frequencies and phases, in float32 some LayerNorms' affines too). CUDA only, of a model in
    eval mode (the weights are folded with the running statistics: a model in training mode is
    a :class:`UsageError`).

    In two halves, as :func:`loftup.start_upsample` does eagerly: ``fn.start(image)`` replays
    the image's half (the stem) and returns ``fn`` at once, ``fn.finish(lr_feats)`` the rest;
    run the backbone in between and the stem runs on the GPU while its kernels are being
    launched (``fn.start(image, stream)``: on that CUDA stream, beside them, as with
    :func:`loftup.start_upsample`). The halves are captured as two more graphs the first time
    ``start`` is called.
    """
    require_eval(model, "graph_upsampler")  # a LoftUp; its weights are folded as in eval mode
    check_settings(chunk_size=model.chunk_size, align=model.align)  # as the forward checks them
    check_inputs(lr_feats, image, model.config.dim, model.head.conv.weight.device)  # as model()
    if not image.is_cuda:
        raise UsageError(
            f"graph_upsampler needs CUDA tensors (CUDA graphs are a GPU feature), got an image "
            f"on {image.device}; move the model and inputs to a GPU, or call the model itself"
        )
    device = image.device
    fw = model.fused(compute_dtype(model, device), model.conv, model.align)  # as model() would
    chunk = model.chunk_size or default_chunk_size(device)
    static_lr, static_image = lr_feats.detach().clone(), image.detach().clone()
    # captured on a stream of the images' device, with that device current: the capture
    # records only the capturing device's current stream, and torch.cuda.graph's own default
    # stream is made once per process on whatever device was current then (on another GPU,
    # the forward would run once, uncaptured, and every replay return that first output)
    with torch.inference_mode(), torch.cuda.device(device):
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up: cuDNN/cuBLAS choices, Triton compilation
            for _ in range(warmup):
                untiled(fw, static_lr, static_image, chunk)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            static_out = untiled(fw, static_lr, static_image, chunk)

    return GraphUpsampler(fw, static_lr, static_image, static_out, graph, chunk)


class GraphUpsampler:
    """What :func:`graph_upsampler` returns: ``fn(lr_feats, image)`` replays the whole forward,
    ``fn.start(image[, stream])`` then ``fn.finish(lr_feats)`` its two halves. (A class, not
    closures: closures that refer to each other form a cycle, which keeps the graphs' memory
    pools until Python's garbage collector happens to run.) Made inside ``torch.inference_mode``
    or not, it may be called inside it or not."""

    def __init__(self, fw, static_lr, static_image, static_out, graph, chunk):
        # The graphs read the folded weights where they were at capture: held here (the
        # model's own cache drops them when it refolds, for another precision, say), and the
        # memo's entries they read (the memo is emptied when it grows large).
        self._fw, self._held = fw, dict(fw.memo)
        self._lr, self._image, self._out = static_lr, static_image, static_out
        self._graph, self._chunk = graph, chunk
        self._halves: dict = {}

    def __call__(self, lr: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        _check_shape("features", lr, self._lr)
        _check_shape("images", img, self._image)
        with torch.inference_mode():  # the static inputs are inference tensors if made so
            self._lr.copy_(lr)
            self._image.copy_(img)
        self._graph.replay()
        return self._out

    def start(self, img: torch.Tensor, stream=None) -> GraphUpsampler:
        """Replay the image's half (on ``stream``, beside the current stream's work, if given);
        returns this, whose :meth:`finish` ends it, as a ``PendingUpsample``'s does."""
        _check_shape("images", img, self._image)
        halves = self._halves
        if not halves:
            halves.update(_capture_halves(self._fw, self._lr, self._image, self._chunk))
        with torch.inference_mode():
            self._image.copy_(img)
        if stream is None:
            halves["stem"].replay()
        else:  # after the copy and any earlier decode on the current stream
            stream.wait_stream(torch.cuda.current_stream(self._image.device))
            with torch.cuda.stream(stream):
                halves["stem"].replay()
        halves["started"], halves["stream"] = True, stream
        return self

    def finish(self, lr: torch.Tensor) -> torch.Tensor:
        """The rest of the forward, on the image's half of the last :meth:`start`."""
        halves = self._halves
        if not halves.get("started"):
            raise GraphOrderError(
                "finish(lr_feats) needs a start(image) first: each start's image half serves one "
                "finish; call fn.start(image) again (or fn(lr_feats, image) for both at once)"
            )
        _check_shape("features", lr, self._lr)
        with torch.inference_mode():
            self._lr.copy_(lr)
        if halves["stream"] is not None:
            torch.cuda.current_stream(self._image.device).wait_stream(halves["stream"])
        halves["decode"].replay()
        halves["started"] = False
        return halves["out"]


class GraphOrderError(LoftUpError, RuntimeError):
    """A :class:`GraphUpsampler`'s halves called out of order (a RuntimeError, as before)."""


def _check_shape(what: str, got: torch.Tensor, captured: torch.Tensor) -> None:
    if got.shape != captured.shape:
        raise UsageError(
            f"this graph was captured for {what} {tuple(captured.shape)}, got "
            f"{tuple(got.shape)}; capture another with graph_upsampler for this shape"
        )


def _capture_halves(fw, static_lr, static_image, chunk) -> dict:
    """Two CUDA graphs, replayed in turn: the image's half and the rest (one memory pool;
    the tokens that pass between them stay allocated)."""
    pool = torch.cuda.graph_pool_handle()
    device = static_image.device
    with torch.inference_mode(), torch.cuda.device(device):  # as graph_upsampler captures
        capture = torch.cuda.Stream(device)
        stem, decode_graph = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with torch.cuda.graph(stem, pool=pool, stream=capture):
            tokens = untiled_queries(fw, static_image)
        with torch.cuda.graph(decode_graph, pool=pool, stream=capture):
            out = untiled_decode(fw, static_lr, tokens, static_image.shape, chunk)
    held = dict(fw.memo)  # the memo's entries the graphs read (one made during capture is not kept)
    return {"stem": stem, "decode": decode_graph, "tokens": tokens, "out": out, "held": held}
