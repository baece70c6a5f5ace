"""Local attention: each query against its own k x k window of key/value tokens.

Shared by the differentiable forward (:func:`loftup.model._local_attend`) and the folded one
(:func:`loftup.fastpath.decode`). Shapes: queries (B, heads, n, hd), keys and values
(B, heads, M, hd), ``neighbours`` (n, K) indices of each query's K = k * k tokens among the M.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Local attention runs as dense attention with a mask while the keys it considers (the
#: chunk's span of grid rows, see :func:`loftup.layers.neighbour_span`) number at most this many
#: per window token (M <= ratio * k * k); beyond, each pixel's keys are gathered. Both give the
#: same numbers. On a CPU (2 threads, 4 heads of 104) the masked form is 4-13x faster for 8x8
#: to 16x16 grids (28 or fewer tokens per window token) in float32 and 3-6x in bf16, and the
#: gathered one wins in bf16 from about 40 tokens per window token on (in float32 from about
#: 120: 3.2 s against 11.6 s at 41, 14.7 s against 12.3 s at 164, 5x5 windows over a 448 x 448
#: output); the gathered form also copies every pixel's K keys and values, the masked one
#: writes only an (n, M) mask.
DENSE_LOCAL_RATIO = 32


def local_attention(
    q, k, v, neighbours, scale: float = 1.0, dense_ratio=None, span=None
) -> torch.Tensor:
    """Each query (B, heads, n, hd) against its own keys/values ``neighbours`` (n, K) among the
    M tokens of ``k``, ``v`` (B, heads, M, hd), logits times ``scale`` (1: folded into ``q``).

    ``span``: optional [lo, hi) range of the tokens holding every index in ``neighbours``
    (:func:`loftup.layers.neighbour_span`); only those tokens are considered. Masked dense
    attention while they number at most ``dense_ratio`` * K (default
    :data:`DENSE_LOCAL_RATIO`), else each query's keys and values gathered; either way in
    pieces of queries whose working memory is about :data:`LOCAL_ATTENTION_BYTES` at most.
    """
    ratio = DENSE_LOCAL_RATIO if dense_ratio is None else dense_ratio
    if span is not None and span[1] - span[0] < k.shape[-2]:
        k, v = k[:, :, span[0] : span[1]], v[:, :, span[0] : span[1]]
        neighbours = neighbours - span[0]
    (n, nk), m = neighbours.shape, k.shape[-2]
    dense = m <= ratio * nk
    rows = k.shape[0] * k.shape[1] * k.element_size()  # bytes of one (B, heads) element
    if dense:  # the mask, its additive float copy; the CPU's math kernel writes the logits
        per_query = m * (1 + k.element_size() + (2 * rows if q.device.type == "cpu" else 0))
    else:  # the gathered keys and values, the logits and their softmax
        per_query = nk * rows * (2 * k.shape[-1] + 2)
    step = max(1, LOCAL_ATTENTION_BYTES // per_query)
    if n <= step:
        return _local_piece(q, k, v, neighbours, scale, dense)
    out = q.new_empty(*q.shape[:-1], v.shape[-1])
    for s in range(0, n, step):
        piece = (q[:, :, s : s + step], k, v, neighbours[s : s + step], scale, dense)
        out[:, :, s : s + step] = _local_piece(*piece)
    return out


#: Working memory of one piece of :func:`local_attention`, in bytes (its pieces of queries
#: are sized to it; at the GPU's default chunk of 2^18 pixels, gathering every pixel's 25 keys
#: and values of 416 channels at once would take 11 GB in half precision).
LOCAL_ATTENTION_BYTES = 1 << 28


def _local_piece(q, k, v, neighbours, scale: float, dense: bool) -> torch.Tensor:
    """:func:`local_attention` of all of ``q`` at once, in the form ``dense`` says."""
    if dense:
        allowed = torch.zeros(neighbours.shape[0], k.shape[-2], dtype=torch.bool, device=q.device)
        allowed.scatter_(1, neighbours, True)  # the window's tokens are distinct
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
    kg, vg = k[:, :, neighbours], v[:, :, neighbours]  # (B, heads, n, K, hd)
    logits = q.unsqueeze(-2) @ kg.transpose(-1, -2)
    if scale != 1.0:
        logits = logits * scale
    return (logits.softmax(-1) @ vg).squeeze(-2)
