"""The hyper-parameters of a LoftUp upsampler (:class:`LoftUpConfig`), saved with its weights as
``config.json``'s ``config`` and checked where they are read.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

from .errors import UsageError


@dataclass
class LoftUpConfig:
    """Hyper-parameters of a LoftUp upsampler; the defaults are the released models'.

    Arguments:
      dim: channels C of the backbone features (384 for DINOv2 ViT-S/14).
      depth: number of cross-attention blocks.
      num_heads: attention heads over the width D = dim + 4 * grid_freqs. No weight's shape
        shows it: a saved config records it, and weights without one are read with 4 unless
        ``load_upsampler(..., num_heads=)`` says otherwise.
      n_freqs: Fourier frequencies of the image encoding.
      grid_freqs: Fourier frequencies of the low-resolution grid's positional encoding.
      mlp_dim: hidden width of each block's FFN (default: dim).
      coords: encode pixel coordinates with the colour (False: colour features only).
      attention_window: None for global cross-attention (the paper's); k for attention over the
        k x k low-resolution tokens nearest each pixel (the local alternative).

    Each integer's least value is its field's ``metadata["least"]`` (:func:`integer_bounds`),
    which the training config's ``model.*`` keys are checked against too; a field whose default
    is None may be None (:data:`NULLABLE`).
    """

    dim: int = field(default=384, metadata={"least": 1})
    depth: int = field(default=2, metadata={"least": 1})
    num_heads: int = field(default=4, metadata={"least": 1})
    n_freqs: int = field(default=20, metadata={"least": 0})
    grid_freqs: int = field(default=5, metadata={"least": 0})
    mlp_dim: int | None = field(default=None, metadata={"least": 1})
    coords: bool = True
    attention_window: int | None = field(default=None, metadata={"least": 1})

    def __post_init__(self) -> None:
        for name, least in integer_bounds().items():
            value = getattr(self, name)
            if value is None and name in NULLABLE:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                null = " or null" if name in NULLABLE else ""
                raise UsageError(
                    f"LoftUp config {name} must be an integer >= {least}{null}, got {value!r}"
                )
        if not isinstance(self.coords, bool):
            raise UsageError(f"LoftUp config coords must be true or false, got {self.coords!r}")
        if self.mlp_dim is None:
            self.mlp_dim = self.dim

    @property
    def width(self) -> int:
        """Token width D."""
        return self.dim + 4 * self.grid_freqs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LoftUpConfig:
        """The config a dict (a saved ``config.json``'s ``config``) describes; a
        :class:`~loftup.errors.UsageError` (a ValueError) names a key of the wrong type or
        range, an unknown key, and heads that do not divide the token width."""
        if not isinstance(d, dict):
            raise UsageError(f"a LoftUp config is a mapping of its keys, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known, key=str)
        if unknown:
            raise UsageError(f"unknown LoftUp config keys {unknown}; known: {sorted(known)}")
        config = cls(**d)
        config.check_heads()
        return config

    def check_heads(self) -> None:
        """A :class:`~loftup.errors.UsageError` unless num_heads divides the token width."""
        if self.width % self.num_heads:
            raise UsageError(
                f"LoftUp config num_heads={self.num_heads} does not divide the token width "
                f"{self.width} (dim {self.dim} + 4 x grid_freqs {self.grid_freqs}); use one of "
                f"{', '.join(map(str, heads_dividing(self.width)))}"
            )


def integer_bounds() -> dict[str, int]:
    """The integer fields of :class:`LoftUpConfig` and the least value each may take."""
    return {f.name: f.metadata["least"] for f in dataclasses.fields(LoftUpConfig) if f.metadata}


def heads_dividing(width: int) -> list[int]:
    """The head counts up to 16 that divide a token ``width`` (for an error's suggestion)."""
    return [h for h in range(1, min(width, 16) + 1) if width % h == 0]


#: the fields that may be None (mlp_dim: dim's value; attention_window: global attention)
NULLABLE = frozenset(f.name for f in dataclasses.fields(LoftUpConfig) if f.default is None)
