"""``torch.compile`` of the inference path, and many frames or images through one model.

:func:`compile_upsampler` compiles one untiled forward (:mod:`loftup.untiled`) on the model's
folded weights, folded again when they change (no new compile where only their values did). On a GPU
``mode="reduce-overhead"`` replays CUDA graphs, which removes the kernel launch cost that
dominates small outputs; the output of a CUDA-graph call is overwritten by the next call (clone
it to keep it).

:func:`upsample_frames` runs a sequence of (features, frame) pairs of one size in batches: the
folded weights and the per-row/column coordinate encodings are shared by all frames.

:func:`graph_upsampler`, which captures the eager forward of one input shape in a CUDA graph
without compiling anything, is :mod:`loftup.graphs`'s, and the untiled forward
:mod:`loftup.untiled`'s; their names are importable from here too, as before the split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from .checks import as_dtype
from .compiled_weights import Folded
from .errors import UsageError, first_line, is_int
from .graphs import (  # noqa: F401  (importable from here, as before the split)
    GraphOrderError,
    GraphUpsampler,
    graph_upsampler,
)
from .input_checks import ForwardInputError, check_inputs, require_eval
from .memo import compile_ready
from .tile_plan import check_settings, default_chunk_size
from .tiling import compute_dtype, upsample
from .untiled import (  # noqa: F401  (importable from here, as before the split)
    untiled,
    untiled_decode,
    untiled_queries,
)


def compile_upsampler(
    model,
    *,
    device=None,
    dtype: str | torch.dtype | None = None,
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

    It runs without gradients, and in one compiled graph whether it is called in
    ``torch.inference_mode()`` or not, with inference tensors or not (those are copied), its
    weights folded in it or not (the same); its output is a plain tensor, as the model's
    outside inference mode. Inputs that need a
    gradient, channels-last ones or other views are taken as plain contiguous tensors (the
    same numbers): the compiler guards on each, and compiled again for another (2 s for
    ``requires_grad``, 4.5 s for channels-last, a one-block model on a CPU). Another shape, dtype or device of the inputs compiles
    again (``dynamic=False``).

    It follows the model's weights, as the model's forward does: where they changed since
    the last call (``load_state_dict``, an optimizer's step, ``p.add_(1)`` under
    ``torch.no_grad()``), they are folded again and used without compiling again (the
    compiled graph takes them as inputs); so is a new ``model.config.attention_window``
    (compiled again for it). The check's cost is :mod:`loftup.weight_changes`' (a fraction of a
    millisecond for dim 384 on a CPU, whose compiled call takes 0.5 s at 56 x 56). A weight
    moved to another dtype or device (``model.to(...)``) is a UsageError saying to call
    compile_upsampler again. Not seen, as by the model's forward
    (:mod:`loftup.weight_changes`): writes through ``.data`` (``p.data.mul_(2)``) and
    in-place changes to weights made under ``torch.inference_mode``; call compile_upsampler
    again after those.

    Arguments:
      model: a LoftUp in eval mode; its weights are folded now, and again when they change.
        Put back in training mode since (``model.train()``), a call is a UsageError: the
        function computes eval mode's output, for inference (``model.eval()`` first, or call
        the model itself to train).
      device: where it will run: the model's (the default; move the model to compile for
        another).
      dtype: compute precision, a torch dtype or a name as :func:`loftup.api.as_dtype` reads
        it ("bfloat16", "fp16"...; default: the model's).
      conv: stem convolutions (see :func:`loftup.fused.choose_conv`; None: the model's
        ``conv``); Winograd is a library call that the compiler leaves as it is.
      mode: ``torch.compile`` mode (default: "reduce-overhead" on CUDA, the default elsewhere).
      chunk_size: pixels of each image decoded at once (None: the model's ``chunk_size``,
        else per device); a batch of B decodes B times as many at once, where the tiled
        forward holds a chunk for the whole batch (see above).
    """
    require_eval(model, "compile_upsampler")  # a LoftUp in eval mode, before it is read
    own = model.stem.conv1.weight.device
    try:
        device = torch.device(own if device is None else device)  # 0 is cuda:0, not the model's
    except (RuntimeError, TypeError) as e:  # "gpu"; 0 where torch 2.5+ finds no accelerator
        raise UsageError(
            f"compile_upsampler(device={device!r}) for a model on {own}: torch names no such "
            f"device here ({first_line(e)}); the compiled function runs where the model's "
            "weights are: leave out device="
        ) from None
    other = device.type != "cpu" and device.index not in (None, own.index)  # "cpu:0" is "cpu"
    if device.type != own.type or other:  # the weights stay where they are
        raise UsageError(
            f"compile_upsampler(device={str(device)!r}) for a model on {own}: the compiled "
            f"function runs where the model's weights are; move the model first, "
            f"model.to({str(device)!r}), or leave out device="
        )
    conv = conv if conv is not None else model.conv  # as the model's forward (and graphs)
    dtype = compute_dtype(model, device) if dtype is None else as_dtype(dtype)  # "bfloat16" too
    chunk = chunk_size if chunk_size is not None else model.chunk_size  # 0 is refused, not None
    check_settings(chunk_size=chunk, align=model.align)  # as the forward checks them
    chunk = chunk or default_chunk_size(device)
    if mode is None:
        mode = "reduce-overhead" if device.type == "cuda" else "default"

    folded = Folded(model, dtype, conv)

    def run(lr_feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        # read on each call: the compiled graph takes the weights as inputs, so weights folded
        # again (same shapes, dtype and device) are used without compiling again
        return untiled(folded.fw, lr_feats, image, chunk)

    compile_ready()
    compiled = torch.compile(run, mode=mode, dynamic=False)

    def call(lr_feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        _check_still_eval(model)  # model.train() since: eval mode's output was not training's
        fw = folded.current()  # the model's weights as they are now
        check_inputs(lr_feats, image, model.config.dim, fw.conv1[0].device)  # as model() does
        # no_grad, not inference_mode, as the pipeline: inference tensors cannot be changed in
        # place (features normalised) or saved for a backward (a probe) outside it. Whatever
        # the caller's mode: the compiler guards on inference mode, and on inference tensors
        # given (other dispatch keys), and compiled again for each (minutes on a CPU)
        with torch.inference_mode(False), torch.no_grad():
            if not len(image):  # an empty batch: an empty output, as model() gives (the stem's
                # convolution took it for a torch.cat of no tensors)
                shape = (0, model.config.dim, *image.shape[-2:])
                return torch.empty(shape, dtype=fw.dtype, device=image.device)
            return compiled(_plain(lr_feats), _plain(image))

    return call


def _check_still_eval(model) -> None:
    """A UsageError where ``model`` was put in training mode (``model.train()``, its stem's
    BatchNorm alone too) since it was compiled: the compiled function computes it as in eval
    mode (its BatchNorm by running statistics), which is not its output there."""
    also = ", or, to train, call the model itself, model(lr_feats, image)"
    require_eval(model, "the function compile_upsampler made", also=also)


def _plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` as the compiled graph takes it, the same numbers: without its gradient's history
    (``requires_grad``) and contiguous (a channels-last image or a sliced batch), a copy that
    is no inference tensor where it was made in inference mode. The compiler guards on each,
    and compiled again for another (its cost: :func:`compile_upsampler`'s docstring)."""
    t = t.detach()
    return t.clone(memory_format=torch.contiguous_format) if t.is_inference() else t.contiguous()


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

    for pair in pairs:
        lr, frame = _check_pair(pair)
        if frames and (frame.shape != frames[0].shape or lr.shape != feats[0].shape):
            yield from flush()
        feats.append(lr)
        frames.append(frame)
        if len(frames) == batch_size:
            yield from flush()
    if frames:
        yield from flush()


def _check_pair(pair) -> tuple[torch.Tensor, torch.Tensor]:
    """``pair`` as ``(lr, frame)``; a :class:`ForwardInputError` unless it is one frame's
    (C, h, w) features and (3, H, W) image (a batched pair was a "too many values to unpack"
    from inside the batch, and so were frames alone, or triples, at the first item)."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        if isinstance(pair, torch.Tensor):
            got = f"a tensor {tuple(pair.shape)}"
        else:
            got = f"{len(pair)} items" if isinstance(pair, (tuple, list)) else type(pair).__name__
        raise ForwardInputError(
            f"upsample_frames takes pairs (lr_feats (C, h, w), frame (3, H, W)), got {got}; "
            "pass zip(lr_feats, frames), the features first"
        )
    lr, frame = pair
    if not all(isinstance(t, torch.Tensor) and t.dim() == 3 for t in (lr, frame)):
        shapes = [
            tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (lr, frame)
        ]
        raise ForwardInputError(
            f"upsample_frames takes pairs (lr_feats (C, h, w), frame (3, H, W)) of one frame "
            f"each, got {shapes[0]} and {shapes[1]}; for a batch (B, ...) pass zip(lr_feats, "
            "images), which pairs its frames"
        )
    return lr, frame
