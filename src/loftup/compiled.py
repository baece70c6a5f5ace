"""``torch.compile`` of the inference path, and many frames or images through one model.

:func:`compile_upsampler` compiles one untiled forward on folded weights taken when it is
called (make a new one after changing the weights). On a GPU ``mode="reduce-overhead"`` replays
CUDA graphs, which removes the kernel launch cost that dominates small outputs; the output of a
CUDA-graph call is overwritten by the next call (clone it to keep it).

:func:`graph_upsampler` captures the eager forward of one input shape in a CUDA graph without
compiling anything (the same launch saving, none of the compile time).

:func:`upsample_frames` runs a sequence of (features, frame) pairs of one size in batches: the
folded weights and the per-row/column coordinate encodings are shared by all frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from .errors import LoftUpError, UsageError, is_int
from .fastpath import decode, encode_kv
from .input_checks import ForwardInputError, check_inputs, require_eval
from .layers import flat_neighbours, image_minmax
from .memo import compile_ready
from .tile_plan import check_settings, default_chunk_size
from .tiling import compute_dtype, query_map, upsample


def untiled(fw, lr_feats: torch.Tensor, image: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """One whole-image forward on folded weights ``fw``: (B, C, h, w), (B, 3, H, W) ->
    (B, C, H, W) channels-last. No Python state, so ``torch.compile`` traces it whole."""
    return untiled_decode(fw, lr_feats, untiled_queries(fw, image), image.shape, chunk_size)


def untiled_queries(fw, image: torch.Tensor) -> torch.Tensor:
    """The image's half of :func:`untiled`: (B, 3, H, W) -> query tokens (B, H W, Dp)."""
    b, _, height, width = image.shape
    lo, hi = image_minmax(image.float())
    q_map = query_map(fw, image, lo, hi, (0, height), (0, width))
    tokens = q_map.permute(0, 2, 3, 1).reshape(b, height * width, -1)
    return tokens.to(fw.dtype, memory_format=torch.contiguous_format)


def untiled_decode(fw, lr_feats, tokens, shape, chunk_size: int) -> torch.Tensor:
    """The rest of :func:`untiled` (``tokens`` is overwritten); ``shape``: the image's."""
    b, _, height, width = shape
    kvs = encode_kv(fw, lr_feats)
    n = height * width
    pieces = []
    for s in range(0, n, chunk_size):
        e, nbrs, span = min(n, s + chunk_size), None, None
        if fw.window is not None:  # local attention
            grid = lr_feats.shape[-2:]
            nbrs, span = flat_neighbours(*grid, height, width, fw.window, s, e, tokens.device)
        pieces.append(decode(fw, tokens[:, s:e], kvs, nbrs, span=span))
    out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, 1)
    return out.view(b, height, width, -1).permute(0, 3, 1, 2)


def compile_upsampler(
    model,
    *,
    device=None,
    dtype: torch.dtype | None = None,
    conv: str | None = None,
    mode: str | None = None,
    chunk_size: int | None = None,
):
    """A compiled ``fn(lr_feats, image) -> (B, C, H, W)`` computing ``model``'s output.

    Untiled: the whole batch at once (the model's ``tile_size`` is not used), so its memory
    grows with B x H x W where the model's forward holds one tile's: the stem's (B, D, H, W)
    map and the output are whole, and each image decodes ``chunk_size`` pixels at once (4
    images of 256 x 256, dim 384, on the CPU: 1.2 GB at its peak, 0.7 GB through the model's
    tiles). For outputs near the memory's size use the model itself or ``upsample_to_npy``.
    Neither the tiles nor chunks of the whole batch: the compiler unrolls the Python loops
    into one graph, so it would compile each tile, or B times the chunks (4 images of 128 x
    128 in chunks of 2048 on the CPU: 375 s to compile where chunks per image took 98), for
    16% less memory (4 x 256 x 256 decoded eagerly: 1.33 GB at the peak against 1.59; the
    same numbers).

    Arguments:
      model: a LoftUp in eval mode; its weights are folded now.
      device: where it will run: the model's (the default; move the model to compile for
        another).
      dtype: compute precision (default: the model's).
      conv: stem convolutions (see :func:`loftup.fused.choose_conv`; None: the model's
        ``conv``); Winograd is a library call that the compiler leaves as it is.
      mode: ``torch.compile`` mode (default: "reduce-overhead" on CUDA, the default elsewhere).
      chunk_size: pixels of each image decoded at once (None: the model's ``chunk_size``,
        else per device); a batch of B decodes B times as many at once, where the tiled
        forward holds a chunk for the whole batch (see above).
    """
    own = model.stem.conv1.weight.device
    device = torch.device(device or own)
    other = device.type != "cpu" and device.index not in (None, own.index)  # "cpu:0" is "cpu"
    if device.type != own.type or other:  # the weights stay where they are
        raise UsageError(
            f"compile_upsampler(device={str(device)!r}) for a model on {own}: the compiled "
            f"function runs where the model's weights are; move the model first, "
            f"model.to({str(device)!r}), or leave out device="
        )
    require_eval(model, "compile_upsampler")
    conv = conv if conv is not None else model.conv  # as the model's forward (and graphs)
    fw = model.fused(dtype or compute_dtype(model, device), conv, model.align)
    chunk = chunk_size or model.chunk_size or default_chunk_size(device)
    check_settings(chunk_size=chunk, align=model.align)  # as the forward checks them
    if mode is None:
        mode = "reduce-overhead" if device.type == "cuda" else "default"

    def run(lr_feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return untiled(fw, lr_feats, image, chunk)

    compile_ready()
    compiled = torch.compile(run, mode=mode, dynamic=False)

    def call(lr_feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        check_inputs(lr_feats, image, model.config.dim, fw.conv1[0].device)  # as model() does
        with torch.inference_mode():
            return compiled(lr_feats, image)

    return call


def graph_upsampler(model, lr_feats: torch.Tensor, image: torch.Tensor, *, warmup: int = 2):
    """A CUDA-graph ``fn(lr_feats, image) -> (B, C, H, W)`` for inputs of these shapes: one
    untiled forward on folded weights, captured once and replayed (no compilation; the kernel
    launches, which dominate outputs of a few hundred pixels, are issued by the GPU itself).

    The returned tensor is the graph's own output buffer: the next call overwrites it (clone it
    to keep it). Inputs must keep the shapes and dtypes given here; the weights are folded now
    (make a new one after changing them). CUDA only.

    In two halves, as :func:`loftup.start_upsample` does eagerly: ``fn.start(image)`` replays
    the image's half (the stem) and returns ``fn`` at once, ``fn.finish(lr_feats)`` the rest;
    run the backbone in between and the stem runs on the GPU while its kernels are being
    launched (``fn.start(image, stream)``: on that CUDA stream, beside them, as with
    :func:`loftup.start_upsample`). The halves are captured as two more graphs the first time
    ``start`` is called.
    """
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


def upsample_frames(
    model,
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    batch_size: int = 8,
    **kwargs,
) -> Iterator[torch.Tensor]:
    """Yield each frame's (C, H, W) features for ``(lr_feats (C, h, w), frame (3, H, W))``
    pairs, computed ``batch_size`` frames at a time (keyword arguments go to
    :func:`loftup.tiling.upsample`). A frame of another size than the one before it (or
    features of another grid) starts a new batch, so a sequence may change size. The model
    must be in eval mode (a frame's features in a batch are those of the frame alone), and
    each batch is checked as ``model(lr_feats, images)`` checks its inputs."""
    if not is_int(batch_size) or batch_size < 1:  # 0 or 2.5 held every frame in one batch
        raise UsageError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if {"out", "callback"} & set(kwargs):  # one batch's output went nowhere, or everywhere
        raise UsageError(
            f"upsample_frames yields each frame's features and takes no "
            f"{' or '.join(sorted({'out', 'callback'} & set(kwargs)))}=; for tiles of one "
            "batch call loftup.tiling.upsample(model, lr_feats, images, callback=...)"
        )
    require_eval(model, "upsample_frames", ", and depends on the frames batched together")
    feats, frames = [], []

    def flush():
        lr, images = torch.stack(feats), torch.stack(frames)
        feats.clear()
        frames.clear()
        check_inputs(lr, images, model.config.dim, model.head.conv.weight.device)
        yield from upsample(model, lr, images, **kwargs).unbind(0)

    for lr, frame in pairs:
        _check_pair(lr, frame)
        if frames and (frame.shape != frames[0].shape or lr.shape != feats[0].shape):
            yield from flush()
        feats.append(lr)
        frames.append(frame)
        if len(frames) == batch_size:
            yield from flush()
    if frames:
        yield from flush()


def _check_pair(lr, frame) -> None:
    """A :class:`ForwardInputError` unless ``(lr, frame)`` is one frame's (C, h, w) features and
    (3, H, W) image (a batched pair was a "too many values to unpack" from inside the batch)."""
    if not all(isinstance(t, torch.Tensor) and t.dim() == 3 for t in (lr, frame)):
        shapes = [
            tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (lr, frame)
        ]
        raise ForwardInputError(
            f"upsample_frames takes pairs (lr_feats (C, h, w), frame (3, H, W)) of one frame "
            f"each, got {shapes[0]} and {shapes[1]}; for a batch (B, ...) pass zip(lr_feats, "
            "images), which pairs its frames"
        )
