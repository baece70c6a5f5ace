"""Starting ``model(lr_feats, image)`` before ``lr_feats`` exist: the stem needs only the image,
so on a GPU it can run while the backbone's kernels are still being launched
(:func:`start_upsample`; ``.finish(lr_feats)`` computes the rest, tile by tile, with
:func:`loftup.tiling.upsample`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .cpu import warn_if_emulated
from .errors import UsageError
from .input_checks import ForwardInputError, check_inputs, check_loftup, check_tensor
from .layers import image_minmax
from .tile_plan import Tile, check_settings
from .tiling import compute_dtype, plan_output, query_map, upsample

if TYPE_CHECKING:
    from .model import LoftUp


@dataclass
class PendingUpsample:
    """The image's half of ``model(lr_feats, image)``, started by :func:`start_upsample`."""

    model: torch.nn.Module
    image: torch.Tensor
    queries: tuple | None  # (lo, hi, query map), or None where nothing could be started
    settings: tuple  # (tile_size, chunk_size, conv, folded weights) when started
    stream: object = None  # the CUDA stream the image's half was queued on, if not the current

    def finish(
        self, lr_feats: torch.Tensor, callback=None, progress: bool = False
    ) -> torch.Tensor | None:
        """The output, (B, C, H, W): exactly ``model(lr_feats, image)``.

        ``callback``: ``fn(tile, feats)`` gets the output tile by tile instead (as
        :func:`upsample`'s), nothing is kept and None is returned: an output of any size in
        the memory of one tile (the values are the same). ``progress``: a bar over the tiles
        (when there are several).
        """
        if self.stream is not None:  # the rest runs on the current stream, after the stem
            current = torch.cuda.current_stream(self.image.device)
            current.wait_stream(self.stream)
            for t in self.queries:  # allocated on the side stream, freed after use on this one
                t.record_stream(current)
            self.stream = None
        m = self.model
        check_inputs(lr_feats, self.image, m.config.dim, m.head.conv.weight.device)
        fast = m.uses_fast_path(lr_feats, self.image)  # no train() and no gradient since?
        now = _settings(m, self.image.device) if fast and self.queries is not None else None
        if now is None or now[:3] != self.settings[:3] or now[3] is not self.settings[3]:
            # not started, or the model, its mode or the gradient mode changed since
            if callback is None:
                return m(lr_feats, self.image)
            if not fast:  # whole, as the model computes it
                b, _, height, width = self.image.shape
                callback(
                    Tile(slice(0, b), slice(0, height), slice(0, width)), m(lr_feats, self.image)
                )
                return None
            tile_size, chunk_size, conv, queries = m.tile_size, m.chunk_size, m.conv, None
        else:
            (tile_size, chunk_size, conv, _), queries = self.settings, self.queries
        with torch.no_grad():
            return upsample(
                m, lr_feats, self.image, tile_size=tile_size, chunk_size=chunk_size, conv=conv,
                callback=callback, progress=progress, _queries=queries,
            )  # fmt: skip


def start_upsample(
    model: LoftUp, image: torch.Tensor, stream: torch.cuda.Stream | None = None
) -> PendingUpsample:
    """Start ``model(lr_feats, image)`` before ``lr_feats`` exist; ``.finish(lr_feats)`` ends it.

    The stem (image encoding and both convolutions, about a third of the work) needs only the
    image. Started first, it runs on the GPU while Python is still launching the backbone's
    kernels (a ViT in eager mode keeps the CPU busy and the GPU mostly idle at a few hundred
    pixels), so backbone + LoftUp costs less than one after the other:

        >>> pending = start_upsample(model, image)       # queued on the GPU now
        >>> lr_feats = backbone(x)                        # its launches overlap with it
        >>> out = pending.finish(lr_feats)                # == model(lr_feats, image)

    ``stream``: a ``torch.cuda.Stream`` to queue the stem on instead of the current stream, so
    that it also runs beside the backbone's kernels when those keep the GPU busy but not full
    (small matrix products); ``finish`` makes the current stream wait for it.

    Only an output of one tile in the folded path is started (eval mode, no gradients, global
    attention); otherwise ``finish`` simply calls the model. The result is the same either way.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ForwardInputError(
            f"start_upsample's image must be a (B, 3, H, W) tensor, got {shape}; pass the "
            "guidance image as model(lr_feats, image) takes it"
        )
    if stream is not None and not image.is_cuda:
        raise UsageError("stream= is for CUDA images (a CUDA stream); leave it out on the CPU")
    check_loftup(model, "start_upsample")
    check_tensor("image", image, model.head.conv.weight.device)  # before the work, as model()
    check_settings(tile_size=model.tile_size, chunk_size=model.chunk_size, align=model.align)
    if model.config.attention_window is not None or not model.uses_fast_path(image):
        return PendingUpsample(model, image, None, ())
    dev = image.device
    if dev.type == "cpu":  # as model() warns: this path does not go through it
        warn_if_emulated(compute_dtype(model, dev))
    height, width = image.shape[-2:]
    settings = _settings(model, dev)
    fw = settings[-1]
    if len(plan_output(image, model.tile_size, fw.conv)) != 1:  # as upsample will tile it
        return PendingUpsample(model, image, None, settings)
    side = contextlib.nullcontext()
    if stream is not None:
        stream.wait_stream(torch.cuda.current_stream(dev))  # the image is ready; so is the memory
        image.record_stream(stream)  # read there: not reused before the stem is done
        side = torch.cuda.stream(stream)
    with side, torch.no_grad(), torch.autocast(dev.type, enabled=False):
        lo, hi = image_minmax(image.float())
        q_map = query_map(fw, image, lo, hi, (0, height), (0, width))
    return PendingUpsample(model, image, (lo, hi, q_map), settings, stream)


def _settings(model, device) -> tuple:
    """What a forward of ``model`` on ``device`` depends on besides its inputs: the inference
    settings and the folded weights it would use now (refolded when a weight changed)."""
    fw = model.fused(compute_dtype(model, device), model.conv, model.align)  # as forward folds
    return model.tile_size, model.chunk_size, model.conv, fw
