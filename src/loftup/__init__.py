"""loftup: sharp, pixel-resolution features from vision foundation models with LoftUp.

    >>> import loftup
    >>> model = loftup.load_upsampler("loftup_dinov2s")        # or a local path
    >>> hr = model(lr_feats, image)                             # (B, C, H, W)

Heavy parts (backbones, training, evaluation) are imported on first use, never at import time.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import CheckpointError, LoftUpError, UnknownNameError, WeightsNotFoundError
from .hub import RELEASED, load_upsampler, save_pretrained
from .model import LoftUp, LoftUpConfig

_LAZY = {
    "get_featurizer": "loftup.featurizers",
    "FEATURIZERS": "loftup.featurizers",
    "upsample": "loftup.api",
    "load_pipeline": "loftup.api",
    "load_image": "loftup.io",
    "get_upsampler": "loftup.baselines",
    "upsample_to_npy": "loftup.tiling",
    "start_upsample": "loftup.tiling",
    "compile_upsampler": "loftup.compiled",
    "upsample_frames": "loftup.compiled",
    "graph_upsampler": "loftup.compiled",
}

__all__ = [
    "LoftUp",
    "LoftUpConfig",
    "load_upsampler",
    "save_pretrained",
    "RELEASED",
    "LoftUpError",
    "WeightsNotFoundError",
    "CheckpointError",
    "UnknownNameError",
    *_LAZY,
]


#: Subpackages reachable as attributes after a plain ``import loftup`` (``loftup.io.load_image``),
#: imported on first use.
_SUBMODULES = (
    "api", "baselines", "bench", "compiled", "data", "eval", "experiments", "extract",
    "featurizers", "io", "kernels", "outputs", "tiling", "train", "viz", "world",
)  # fmt: skip


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"loftup.{name}")
    raise AttributeError(f"module 'loftup' has no attribute {name!r}")
