"""Released checkpoints, safe loading, layout conversion and ``save_pretrained``.

One registry (:data:`RELEASED`) drives :func:`load_upsampler`, ``loftup info``, ``loftup download``
and the pairing of each upsampler with its backbone. Weights are found in this order: a local
path, the Hugging Face cache, a download (``HF_HUB_OFFLINE=1`` is honoured). Nothing is ever
unpickled beyond plain tensors and containers (``torch.load(..., weights_only=True)`` or
safetensors).

One idea a file: :mod:`.registry` (the table), :mod:`.files` (reading weight files safely),
:mod:`.remote` (the cache, downloads and what offline says), :mod:`.released` (a released
checkpoint's file: cached, downloaded, listed), :mod:`.reach` (whether the hub may and can be
asked), :mod:`.user_repos` (upsamplers of one's own by hub id),
:mod:`.damaged` (a damaged download and its fix), :mod:`.loading` (the one loader),
:mod:`.folders` (a folder's weights read with its record), :mod:`.saving`
(``save_pretrained``), :mod:`.record` (the record save_pretrained writes and how it is read
back), :mod:`.checks` (what loads but is not the upsampler asked for); the key layouts are
:mod:`loftup.key_layouts`', building a model from any of them :mod:`loftup.convert`'s. Every
name is importable from ``loftup.hub`` itself.
"""

from __future__ import annotations

from ..convert import build_from_state, infer_config, to_native
from ..key_layouts import native_to_reference, reference_to_native, training_to_reference
from .files import read_safetensors, read_weights, torch_load
from .loading import (
    CONFIG_NAME,
    FORMAT_TAG,
    WEIGHTS_NAME,
    check_source,
    load_upsampler,
    load_with_record,
)
from .registry import ALIASES, RELEASED, ReleasedCheckpoint, resolve_name
from .released import cached_path, download, released_file, released_table
from .remote import (
    damaged_in_cache,
    hub_file,
    hub_folder,
    hub_folder_beside,
    looks_like_path,
)
from .saving import save_pretrained
from .user_repos import hub_id, upsampler_repo

__all__ = [
    "ALIASES",
    "CONFIG_NAME",
    "FORMAT_TAG",
    "RELEASED",
    "WEIGHTS_NAME",
    "ReleasedCheckpoint",
    "build_from_state",
    "cached_path",
    "check_source",
    "damaged_in_cache",
    "download",
    "hub_file",
    "hub_folder",
    "hub_folder_beside",
    "hub_id",
    "infer_config",
    "load_upsampler",
    "load_with_record",
    "looks_like_path",
    "native_to_reference",
    "read_safetensors",
    "read_weights",
    "reference_to_native",
    "released_file",
    "released_table",
    "resolve_name",
    "save_pretrained",
    "to_native",
    "torch_load",
    "training_to_reference",
    "upsampler_repo",
]
