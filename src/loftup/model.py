"""The LoftUp feature upsampler (arXiv 2504.14032), as specified in the paper's method.

Data flow, with the letters used throughout:

    lr_feats (B, C, h, w) --channel norm--> + grid encoding (20) -> key/value tokens (B, h*w, D)
    image    (B, 3, H, W) --coords + colour, Fourier, stem--> query tokens (B, H*W, D)
    queries --depth x [cross-attention to key/values, FFN]--> LayerNorm -> head -> (B, C, H, W)

with D = C + 4 * grid_freqs (404 for C = 384). It imports only its own parts: its
hyper-parameters (model_config.py, :class:`LoftUpConfig` importable from here too), the checks
of its inputs (input_checks.py), the layers (layers.py, local_attention.py), the folded
inference weights and their forward (fused.py, fast_stem.py, fastpath.py), what tells that the
weights they were folded from changed (weight_changes.py) and the tiled inference driver
(tiling.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .cpu import warn_if_emulated
from .errors import UsageTypeError
from .fused import FusedWeights, fuse
from .input_checks import check_inputs
from .layers import (
    ChannelNorm,
    CrossAttentionBlock,
    FourierFeatures,
    Head,
    Stem,
    coordinate_grid,
    flat_neighbours,
    minmax_scale,
)
from .local_attention import local_attention
from .model_config import LoftUpConfig
from .tiling import check_settings, compute_dtype, upsample
from .weight_changes import weights_key

#: Pixels decoded at once by the differentiable path: bounds the attention's working memory.
DEFAULT_CHUNK = 16384


class LoftUp(nn.Module):
    """Coordinate-based cross-attention feature upsampler.

    Arguments (keyword-only, see :class:`LoftUpConfig`): dim, depth, num_heads, n_freqs,
    grid_freqs, mlp_dim, coords, attention_window; or ``config=LoftUpConfig(...)``.

    ``forward(lr_feats, image)`` takes raw backbone features (B, C, h, w) and the ImageNet-normalised
    guidance image (B, 3, H, W) and returns features (B, C, H, W) at the image's size, whatever
    h, w, H, W are. Each image is encoded on its own (its colour range does not depend on the
    other images of the batch).
    """

    def __init__(
        self, dim: int | None = None, *, config: LoftUpConfig | None = None, **kwargs
    ) -> None:
        super().__init__()
        if dim is not None:  # None: the config's default (384); with config=, dim was ignored
            kwargs["dim"] = dim
        if config is None:
            config = LoftUpConfig(**kwargs)
        elif kwargs:
            raise UsageTypeError(
                f"LoftUp takes either config=... or hyper-parameters, not both (got "
                f"config and {', '.join(sorted(kwargs))}): set them in the config, e.g. "
                f"dataclasses.replace(config, {next(iter(kwargs))}=...)"
            )
        config.check_heads()
        self.config = config
        c, d = config.dim, config.width
        raw = 5 if config.coords else 3
        self.channel_norm = ChannelNorm(c, eps=1e-5)
        self.image_encoder = FourierFeatures(raw, config.n_freqs)
        self.grid_encoder = FourierFeatures(2, config.grid_freqs)
        self.stem = Stem(self.image_encoder.out_channels + 3, d)
        self.blocks = nn.ModuleList(
            CrossAttentionBlock(d, config.num_heads, config.mlp_dim) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(d)
        self.head = Head(d, c)
        #: Inference settings (None: chosen per device, see :mod:`loftup.tiling`): pixels
        #: decoded at once, and the side of the square tiles the output is computed in.
        self.chunk_size: int | None = None
        self.tile_size: int | None = None
        #: Stem convolutions of the inference path (see :func:`loftup.fused.choose_conv`):
        #: "auto", "winograd" (NNPACK, CPU), "direct" (channels-last) or "direct_nchw".
        self.conv = "auto"
        #: Token and encoding rows padded to multiples of this (None: 8 on a GPU, 1 on the
        #: CPU; see :func:`loftup.fused.default_align`). The same function either way.
        self.align: int | None = None
        self.backbone: str | None = None  # the featurizer it expects, when known
        #: what that featurizer gives its backbone (its ``input_norm``), when known
        self.backbone_norm: str | None = None
        self._fused_cache: tuple | None = None

    def __getstate__(self):
        # a copy (deepcopy, pickle) refolds on its first forward anyway: the memo's key holds
        # the original's tensor addresses; copied, it only doubled the folded weights' memory
        return {**super().__getstate__(), "_fused_cache": None}

    def save_pretrained(self, directory, **kwargs):
        """Write ``model.safetensors`` + ``config.json``; see :func:`loftup.hub.save_pretrained`."""
        from .hub import save_pretrained

        return save_pretrained(self, directory, **kwargs)

    @property
    def dim(self) -> int:
        return self.config.dim

    # -- the three steps -------------------------------------------------------------------

    def encode_image(self, image: torch.Tensor, minmax=None) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> stem output (B, D, H, W), the query map.

        ``minmax``: optional (lo, hi) colour statistics of the whole image (for exact tiling).
        """
        b, _, h, w = image.shape
        colour = minmax_scale(image.float(), *(minmax or (None, None)))  # float32 encoding
        raw = colour
        if self.config.coords:
            grid = coordinate_grid(h, w, device=image.device)
            raw = torch.cat([grid.expand(b, -1, -1, -1), colour], dim=1)
        encoded = torch.cat([self.image_encoder(raw), colour], dim=1)
        return self.stem(encoded.to(self.stem.conv1.weight.dtype))

    def encode_lowres(self, lr_feats: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) raw features -> key/value tokens (B, h*w, D)."""
        b, _, h, w = lr_feats.shape
        grid = coordinate_grid(h, w, device=lr_feats.device)
        pos = self.grid_encoder(grid.unsqueeze(0)).expand(b, -1, -1, -1)
        lr_feats = lr_feats.to(self.channel_norm.weight.dtype)
        kv = torch.cat([self.channel_norm(lr_feats), pos.to(lr_feats.dtype)], dim=1)
        return kv.flatten(2).transpose(1, 2)

    def prepare_kv(self, kv_tokens: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Project the key/value tokens once for every block (reusable for any query set)."""
        return [blk.prepare_kv(kv_tokens) for blk in self.blocks]

    def decode(
        self,
        queries: torch.Tensor,
        kvs: list[tuple[torch.Tensor, torch.Tensor]],
        neighbours: torch.Tensor | None = None,
        span: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """(B, N, D) query tokens -> output tokens (B, N, C); every pixel independently.

        ``neighbours`` (N, k*k) indexes each pixel's key/value tokens for local attention,
        all in the range ``span`` of them when given (:func:`loftup.layers.neighbour_span`).
        """
        q = queries
        for blk, (k, v) in zip(self.blocks, kvs):
            if neighbours is None:
                q = blk(q, k, v)
            else:
                q = q + _local_attend(blk, q, k, v, neighbours, span=span)
                q = q + blk.ffn(q)
        q = self.norm(q)
        conv = self.head.conv
        out = F.linear(q, conv.weight.flatten(1), conv.bias)
        norm = self.head.norm
        return F.layer_norm(out, (out.shape[-1],), norm.weight, norm.bias, norm.eps)

    # -- inference -------------------------------------------------------------------------

    def fused(
        self, dtype: torch.dtype | None = None, conv: str = "auto", align: int | None = None
    ) -> FusedWeights:
        """Folded inference weights (:mod:`loftup.fused`) in ``dtype``, rebuilt when any
        parameter or buffer has changed (in place or replaced) or ``config.attention_window``
        has since the last call, a step of a fused optimizer of its parameters included
        (``fused=True``: its writes are counted by :mod:`loftup.weight_changes`). Writes
        through ``.data`` and in-place changes to tensors created under
        ``torch.inference_mode`` cannot be seen."""
        key = (
            dtype,
            conv,
            align,
            self.config.attention_window,  # carried by the folded weights (FusedWeights.window)
            weights_key(self),  # each tensor's address, version, dtype and device
        )
        cache = self._fused_cache  # read once: another thread may replace it meanwhile
        if cache is None or cache[0] != key:
            cache = self._fused_cache = (key, fuse(self, dtype, conv, align))
        return cache[1]

    def uses_batch_statistics(self) -> bool:
        """Whether the stem's BatchNorm layers, the only ones that act differently in training
        mode, normalise by the batch's statistics (training mode) rather than the running ones."""
        stem = self.stem
        return self.training or stem.bn1.training or stem.bn2.training

    def uses_fast_path(self, *inputs: torch.Tensor) -> bool:
        """Whether ``forward`` takes the folded, tiled path: in eval mode (the BatchNorm layers
        too) when no gradient is needed (training, or a gradient through the upsampler, takes
        the differentiable one).
        Under ``torch.compile`` of the model, the differentiable steps: one graph the compiler
        can fuse (:func:`loftup.compiled.compile_upsampler` compiles the folded path)."""
        if self.uses_batch_statistics():
            return False
        if torch.compiler.is_compiling():
            return False
        if not torch.is_grad_enabled():
            return True
        return not any(t.requires_grad for t in (*self.parameters(), *inputs))

    # -- forward ---------------------------------------------------------------------------

    def forward(self, lr_feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Upsample ``lr_feats`` (B, C, h, w) guided by ``image`` (B, 3, H, W) -> (B, C, H, W).

        In eval mode without gradients this is computed on folded weights in tiles of
        ``self.tile_size`` pixels (exact, any output size in bounded memory); otherwise by the
        differentiable steps below, whole.
        """
        check_inputs(lr_feats, image, self.config.dim, self.head.conv.weight.device)
        check_settings(tile_size=self.tile_size, chunk_size=self.chunk_size, align=self.align)
        if lr_feats.device.type == "cpu":
            warn_if_emulated(compute_dtype(self, lr_feats.device))
        if not len(image):  # an empty batch: an empty output, as a batch of any size
            shape = (0, self.config.dim, *image.shape[-2:])
            return image.new_empty(shape, dtype=self.head.conv.weight.dtype)
        if self.uses_fast_path(lr_feats, image):
            with torch.no_grad():
                return upsample(
                    self,
                    lr_feats,
                    image,
                    tile_size=self.tile_size,
                    chunk_size=self.chunk_size,
                    conv=self.conv,
                )
        b, c, h, w = lr_feats.shape
        height, width = image.shape[-2:]
        kvs = self.prepare_kv(self.encode_lowres(lr_feats))
        q_map = self.encode_image(image)
        tokens = q_map.flatten(2).transpose(1, 2)
        window, n = self.config.attention_window, height * width
        out = torch.empty(b, n, c, device=image.device, dtype=tokens.dtype)
        step = self.chunk_size or DEFAULT_CHUNK  # checked: None or >= 1
        for s in range(0, n, step):
            e, nbrs, span = min(n, s + step), None, None
            if window is not None:
                nbrs, span = flat_neighbours(h, w, height, width, window, s, e, image.device)
            out[:, s:e] = self.decode(tokens[:, s:e], kvs, nbrs, span)
        return out.transpose(1, 2).reshape(b, c, height, width)


def _local_attend(
    blk, q, k, v, neighbours, dense_ratio: float | None = None, span=None
) -> torch.Tensor:
    """Attention of each query (B, N, D) to its own key/value tokens ``neighbours`` (N, K).

    ``k``, ``v``: (B, heads, M, dh); ``dense_ratio``, ``span``: see
    :func:`loftup.local_attention.local_attention`.
    """
    attn = blk.attn
    d = q.shape[-1]
    qn = blk.norm_q(q)
    qh = attn._split(F.linear(qn, attn.in_proj_weight[:d], attn.in_proj_bias[:d]))  # (B,h,N,dh)
    out = local_attention(qh, k, v, neighbours, 1 / math.sqrt(qh.shape[-1]), dense_ratio, span)
    return attn.out_proj(out.transpose(1, 2).flatten(2))
