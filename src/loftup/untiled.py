"""One whole-image forward on folded weights without Python state: what ``torch.compile``
traces whole (:func:`loftup.compile_upsampler`) and a CUDA graph captures
(:func:`loftup.graph_upsampler`), whole or in its two halves (the image's, then the rest).
"""

from __future__ import annotations

import torch

from .fastpath import decode, encode_kv
from .layers import flat_neighbours, image_minmax
from .tiling import query_map


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
