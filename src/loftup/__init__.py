"""loftup: sharp, pixel-resolution features from vision foundation models with LoftUp.

    >>> import loftup, torch
    >>> model = loftup.load_upsampler("loftup_dinov2s")        # or a local path
    >>> with torch.inference_mode():                            # no autograd graph kept
    ...     hr = model(lr_feats, image)                         # (B, C, H, W)

Heavy parts (backbones, training, evaluation) are imported on first use, never at import time.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    CheckpointError,
    LoftUpError,
    Terminated,
    UnknownNameError,
    WeightsNotFoundError,
)

#: Names imported on first use: ``import loftup`` loads no torch, so the command line answers
#: ``--help`` and argument errors at once.
_LAZY = {
    "LoftUp": "loftup.model",
    "LoftUpConfig": "loftup.model",
    "load_upsampler": "loftup.hub",
    "save_pretrained": "loftup.hub",
    "RELEASED": "loftup.hub",
    "get_featurizer": "loftup.featurizers",
    "FEATURIZERS": "loftup.featurizers",
    "upsample": "loftup.api",
    "clear_cache": "loftup.api",
    "load_pipeline": "loftup.pipeline",
    "BackboneMismatchWarning": "loftup.mismatch",
    "load_image": "loftup.io",
    "get_upsampler": "loftup.baselines",
    "upsample_to_npy": "loftup.tiling",
    "start_upsample": "loftup.early_start",
    "compile_upsampler": "loftup.compiled",
    "upsample_frames": "loftup.compiled",
    "graph_upsampler": "loftup.graphs",
}

__all__ = [
    "LoftUpError",
    "WeightsNotFoundError",
    "CheckpointError",
    "UnknownNameError",
    "Terminated",
    *_LAZY,
]


#: Subpackages reachable as attributes after a plain ``import loftup`` (``loftup.io.load_image``),
#: imported on first use.
_SUBMODULES = (
    "acl", "api", "atomic", "bars", "baselines", "bench", "checks", "cli", "compiled",
    "compiled_weights", "convert", "cpu", "data", "downloads", "early_start", "errors", "escaping",
    "eval", "exif", "experiments", "extract", "fast_stem", "fastpath", "feature_file",
    "featurizers", "figure_mark", "file_lock", "finite", "folding", "fused", "graphs", "holders",
    "hub", "image_input", "input_checks", "io", "kernels", "key_layouts", "layers", "listing",
    "local_attention", "memo", "mismatch", "model", "model_config", "norms", "npy_stream",
    "odd_width", "outputs", "paths", "pipeline", "pipeline_checks", "pipeline_placement", "ranks",
    "read_refusal", "stops", "tile_plan", "tiling", "train", "untiled", "viz", "weight_changes",
    "weights", "words", "world",
)  # fmt: skip


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"loftup.{name}")
    raise AttributeError(f"module 'loftup' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names with those imported on first use: ``dir(loftup)`` and tab completion
    listed neither ``upsample`` nor ``load_pipeline``."""
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
