"""Inference weights of a LoftUp with everything foldable folded in (same function, fewer steps).

- BatchNorm (eval statistics) folded into the stem convolutions, computed in float32 and only
  then cast, so that half-precision models do not evaluate ``(x - mean) / std`` in bf16;
- the affine part of every LayerNorm that feeds a linear layer folded into that layer
  (``LN_q`` -> query projection, ``LN_kv`` -> key/value projection, the FFN's norm -> ``fc1``,
  the final norm -> the head); the blocks' ``LN_kv`` all normalise the same key/value tokens,
  so one plain normalisation and one matrix product give every block's keys and values;
- the attention scale ``1/sqrt(head_dim)`` folded into the query projection;
- heads padded with zero rows/columns to a head width the attention kernels like (101 -> 104
  for C = 384: a multiple of 8 is what fused GPU kernels require); zeros change no logit;
- the output biases of attention and FFN carried inside their matrix products (FusedBlock);
- the image encoder's channels reordered (coordinate channels first, then colour) so that the
  coordinate half can be computed per row and per column; the stem's LayerNorm and first
  convolution are permuted to match (LayerNorm statistics do not depend on the order);
- convolution weights in channels-last layout (oneDNN and cuDNN both prefer it);
- on a GPU, the token width D (404 for C = 384) and the image encoding's width E (203) padded
  to multiples of 8 (``align``): tensor-core matrix products, cuDNN convolutions and the
  LayerNorm kernels run two to three times faster on aligned rows. The function is unchanged:
  a padded row carries, in its extra channels, the mean of its real channels ("mean padding");
  a LayerNorm over the padded row then has the same mean and a variance smaller by the exact
  factor real/padded, which is folded into its epsilon and into the weights that read its
  output (the extra channels normalise to zero and are read by zero weights); every residual
  update keeps the extra channels at the mean because their rows of the output projections
  are the mean of the real rows (see :func:`loftup.folding.mean_pad_rows`).

:func:`fuse` is a pure function of the model's parameters; the model caches its result and
rebuilds it whenever a parameter changes (see ``LoftUp.fused``). The folding and padding of
single tensors are pure functions in :mod:`loftup.folding`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .errors import UsageError
from .folding import (
    encoding_order,
    fold_batchnorm,
    fold_layernorm,
    mean_pad_rows,
    pad_heads,
    padded,
    read_padded,
    zero_pad,
)

#: Attention heads are padded to a multiple of this width.
HEAD_MULTIPLE = 8


def default_align(device: torch.device | str) -> int:
    """Channel alignment of token and encoding rows: 8 on a GPU (tensor cores want 16-byte
    rows in half precision), 1 (none) on the CPU, where it buys nothing measurable."""
    return 8 if torch.device(device).type == "cuda" else 1


@dataclass
class FusedBlock:
    """One cross-attention block's folded weights (see the module docstring).

    Both output biases ride along in the matrix products, so that each residual update is one
    in-place ``addmm``: the attention's through a value channel that is 1 for every key (the
    weights of a softmax sum to 1), the FFN's through a hidden unit whose GELU is constant.
    """

    eps_kv: float
    wq: torch.Tensor  # (heads * hd_pad, D): LN_q affine and 1/sqrt(hd) folded in
    bq: torch.Tensor
    wkv: torch.Tensor  # (2 * heads * hd_pad, D): LN_kv affine folded in
    bkv: torch.Tensor
    wo: torch.Tensor  # (D, heads * hd_pad), the output bias in the constant value channel
    eps_q: float
    w1: torch.Tensor  # (hidden_pad, D): the FFN's LN affine folded in
    b1: torch.Tensor
    w2: torch.Tensor  # (D, hidden_pad), the output bias in the constant unit
    eps_ffn: float


#: Pre-activation of the FFN's constant unit: GELU(10) == 10 exactly in every float dtype.
GELU_FIXED_POINT = 10.0


@torch.no_grad()
def fuse_block(
    blk, heads: int, hdp: int, dtype: torch.dtype, width: int | None = None
) -> FusedBlock:
    """Fold one ``CrossAttentionBlock`` (heads padded to ``hdp`` > head width; query tokens
    mean-padded to ``width`` >= D channels)."""
    a = blk.attn
    d = a.in_proj_weight.shape[1]
    hd = d // heads
    w, b = a.in_proj_weight.float(), a.in_proj_bias.float()
    wq, bq = fold_layernorm(blk.norm_q, w[:d], b[:d])
    scale = 1.0 / math.sqrt(hd)
    wkv, bkv = fold_layernorm(blk.norm_kv, w[d:], b[d:])  # keys, then values
    wkv = torch.cat([pad_heads(t, heads, hdp) for t in wkv.chunk(2)])
    bkv = torch.cat([pad_heads(t, heads, hdp) for t in bkv.chunk(2)])
    bkv[heads * hdp + hd] = 1.0  # value channel hd of head 0: 1 for every key
    wo = pad_heads(a.out_proj.weight.float(), heads, hdp, dim=1)
    wo[:, hd] = a.out_proj.bias.float()
    w1, b1 = fold_layernorm(blk.ffn.norm, blk.ffn.fc1.weight, blk.ffn.fc1.bias)
    hidden = w1.shape[0]
    hp = -(-(hidden + 1) // HEAD_MULTIPLE) * HEAD_MULTIPLE
    w1 = torch.cat([w1, w1.new_zeros(hp - hidden, d)])
    b1 = torch.cat([b1, b1.new_zeros(hp - hidden)])
    b1[hidden] = GELU_FIXED_POINT
    w2 = torch.cat([blk.ffn.fc2.weight.float(), w1.new_zeros(d, hp - hidden)], dim=1)
    w2[:, hidden] = blk.ffn.fc2.bias.float() / GELU_FIXED_POINT
    width = width or d
    wq, w1 = read_padded(wq, width), read_padded(w1, width)
    wo, w2 = mean_pad_rows(wo, width), mean_pad_rows(w2, width)

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype).contiguous()

    return FusedBlock(
        eps_kv=blk.norm_kv.eps,
        wq=cast(pad_heads(wq * scale, heads, hdp)),
        bq=cast(pad_heads(bq * scale, heads, hdp)),
        wkv=cast(wkv),
        bkv=cast(bkv),
        wo=cast(wo),
        eps_q=blk.norm_q.eps * d / width,
        w1=cast(w1),
        b1=cast(b1),
        w2=cast(w2),
        eps_ffn=blk.ffn.norm.eps * d / width,
    )


@dataclass
class FusedWeights:
    """Everything the fast forward needs, in the compute dtype unless noted."""

    dtype: torch.dtype
    width: int  # query token width: D, mean-padded to a multiple of the alignment
    real_width: int  # D
    enc_width: int  # real channels of the image encoding (E); the encoding is mean-padded
    enc_padded: int  # to this width
    heads: int
    head_dim: int  # padded
    coords: bool
    channel_norm: tuple[torch.Tensor, torch.Tensor, float]
    grid_freqs: torch.Tensor  # float32 (n,)
    grid_phases: torch.Tensor  # float32 (2, n, 2)
    image_freqs: torch.Tensor  # float32 (n,)
    image_phases: torch.Tensor  # float32 (2, n, J)
    stem_norm: tuple[torch.Tensor, torch.Tensor, float]  # float32, fast order, padded
    conv: str  # "winograd" (NNPACK, float32, NCHW), "direct" (channels-last) or "direct_nchw"
    conv1: tuple[torch.Tensor, torch.Tensor]  # (Dp, Ep, 3, 3), (Dp,), BatchNorm folded
    conv2: tuple[torch.Tensor, torch.Tensor]
    blocks: list[FusedBlock]
    #: every block's keys and values from one product: (blocks * 2 * heads * hd_pad, D) and
    #: bias, the concatenation of the blocks' wkv/bkv; None when their LN_kv epsilons differ
    kv: tuple[torch.Tensor, torch.Tensor] | None
    eps_final: float
    head: tuple[torch.Tensor, torch.Tensor]  # (C, Dp), final LayerNorm folded
    head_norm: tuple[torch.Tensor, torch.Tensor, float]
    #: per-shape constants computed from these weights (positional and coordinate encodings):
    #: see :func:`loftup.memo.memo`
    memo: dict = field(default_factory=dict, repr=False)
    #: side k of the local attention's window of low-resolution tokens; None: global attention
    window: int | None = None

    def __getstate__(self) -> dict:
        """Copied or pickled without the memo (``copy.deepcopy(model)`` copies a model's folded
        weights): per-shape constants, remade on demand, which after a GPU forward also hold
        the CUDA events of their making, and those cannot be copied ("cannot pickle 'Event'
        object")."""
        return {**self.__dict__, "memo": {}}


#: Stem convolution kinds; "direct_nchw" (plain layout) is there to measure what channels-last buys.
CONVS = ("auto", "winograd", "direct", "direct_nchw")


def winograd_available(device: torch.device | str) -> bool:
    """Whether NNPACK's Winograd convolution can run the stem (CPU builds with NNPACK)."""
    if torch.device(device).type != "cpu":
        return False
    try:
        return bool(torch._nnpack_available())  # also initialises NNPACK
    except (AttributeError, RuntimeError):
        return False


def choose_conv(conv: str, device, dtype: torch.dtype) -> str:
    """Resolve ``conv`` (one of :data:`CONVS`) for a device and compute dtype.

    "auto" picks Winograd on the CPU for float32 and bfloat16 (run in float32: faster than a
    direct bf16 convolution there and more accurate), direct convolutions everywhere else.
    """
    if conv not in CONVS:
        raise UsageError(f"conv must be one of {', '.join(CONVS)}, got {conv!r}")
    if conv.startswith("direct"):
        return conv
    ok = winograd_available(device) and dtype in (torch.float32, torch.bfloat16)
    if conv == "winograd" and not ok:
        raise UsageError(
            f"Winograd convolutions need NNPACK on the CPU in float32 or bfloat16; not for "
            f"{device}/{dtype}: use conv='auto' or 'direct'"
        )
    return "winograd" if ok else "direct"


@torch.no_grad()
def fuse(
    model, dtype: torch.dtype | None = None, conv: str = "auto", align: int | None = None
) -> FusedWeights:
    """Fold ``model`` (a LoftUp) into :class:`FusedWeights` in ``dtype`` (default: its own),
    with stem convolutions of kind ``conv`` (see :func:`choose_conv`) and token and encoding
    rows mean-padded to multiples of ``align`` (default: :func:`default_align`)."""
    device = model.stem.conv1.weight.device
    dtype = dtype or model.stem.conv1.weight.dtype
    conv = choose_conv(conv, device, dtype)
    align = align or default_align(device)

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype).contiguous()

    def ln(norm, to=dtype):
        return norm.weight.to(to), norm.bias.to(to), norm.eps

    cfg = model.config
    heads = cfg.num_heads
    d = cfg.width
    hd = d // heads
    hdp = -(-(hd + 1) // HEAD_MULTIPLE) * HEAD_MULTIPLE  # room for the constant channel
    dp = padded(d, align)
    blocks = [fuse_block(blk, heads, hdp, dtype, dp) for blk in model.blocks]
    stem = model.stem
    enc = model.image_encoder
    order = encoding_order(enc.in_channels, enc.n_freqs, cfg.coords)
    e = len(order)
    ep = padded(e, align)
    w1, b1 = fold_batchnorm(stem.conv1.weight, stem.conv1.bias, stem.bn1)
    w2, b2 = fold_batchnorm(stem.conv2.weight, stem.conv2.bias, stem.bn2)
    # zero rows and columns: the extra channels of the stem are 0 until decode mean-pads them
    w1 = zero_pad(zero_pad(w1[:, order], ep, 1), dp, 0)
    w2 = zero_pad(zero_pad(w2, dp, 1), dp, 0)
    b1, b2 = zero_pad(b1, dp, 0), zero_pad(b2, dp, 0)
    if conv == "winograd":
        w1, b1, w2, b2 = (t.contiguous() for t in (w1, b1, w2, b2))
    elif conv == "direct_nchw":
        w1, b1, w2, b2 = (cast(t) for t in (w1, b1, w2, b2))
    else:
        cl = torch.channels_last
        w1, w2 = (cast(w1).contiguous(memory_format=cl), cast(w2).contiguous(memory_format=cl))
        b1, b2 = cast(b1), cast(b2)
    hw, hb = fold_layernorm(model.norm, model.head.conv.weight.flatten(1), model.head.conv.bias)
    hw = read_padded(hw, dp)
    sw, sb = stem.norm.weight.float()[order], stem.norm.bias.float()[order]
    return FusedWeights(
        dtype=dtype,
        width=dp,
        real_width=d,
        enc_width=e,
        enc_padded=ep,
        heads=heads,
        head_dim=hdp,
        coords=cfg.coords,
        channel_norm=ln(model.channel_norm),
        grid_freqs=model.grid_encoder.freqs.float(),
        grid_phases=model.grid_encoder.phases.float().reshape(2, -1, 2),
        image_freqs=enc.freqs.float(),
        image_phases=enc.phases.float().reshape(2, enc.n_freqs, enc.in_channels),
        stem_norm=(
            zero_pad(sw * math.sqrt(e / ep), ep, 0),
            zero_pad(sb, ep, 0),
            stem.norm.eps * e / ep,
        ),
        conv=conv,
        conv1=(w1, b1),
        conv2=(w2, b2),
        blocks=blocks,
        kv=(
            (torch.cat([b.wkv for b in blocks]), torch.cat([b.bkv for b in blocks]))
            if len({b.eps_kv for b in blocks}) == 1
            else None
        ),
        eps_final=model.norm.eps * d / dp,
        head=(cast(hw), cast(hb)),
        head_norm=ln(model.head.norm),
        window=cfg.attention_window,
    )
