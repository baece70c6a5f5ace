"""What a transformers backbone folder's weight files hold, where transformers would load them
without a word or fail with a traceback:

- a quantized model (``quantization_config`` in config.json): its loader needs other packages,
  and loftup runs a backbone in float32 from full-precision weights;
- a Git LFS pointer in place of the weights (a clone of the hub repo without Git LFS);
- weights stored as integers or booleans: transformers casts them to float32;
- NaN or infinite weights (every feature would be NaN).

:func:`check_before_load` and :func:`check_after_load` are :func:`loftup.featurizers.
hf_loading.load_strict`'s; each raises a one-line CheckpointError naming the file and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import CheckpointError, WeightsNotFoundError
from ..escaping import printable
from ..hub.files import check_not_lfs_pointer, shard_names
from ..read_refusal import read_refused
from .hf_weights import WEIGHTS_FILE, backbone_fix, read_config, where_from

INDEX_FILE = "model.safetensors.index.json"
PICKLE_FILE = "pytorch_model.bin"
PICKLE_INDEX_FILE = "pytorch_model.bin.index.json"


def index_file(folder: Path) -> Path | None:
    """The shard index transformers reads from ``folder`` (model.safetensors.index.json, or
    pytorch_model.bin.index.json where there is no safetensors and no pytorch_model.bin), or
    None where it reads a single file or finds none."""
    if (folder / WEIGHTS_FILE).is_file():
        return None
    if (folder / INDEX_FILE).is_file():
        return folder / INDEX_FILE
    if not (folder / PICKLE_FILE).is_file() and (folder / PICKLE_INDEX_FILE).is_file():
        return folder / PICKLE_INDEX_FILE
    return None


def weight_files(folder: Path) -> list[Path]:
    """The weight files transformers reads from ``folder`` that are there: model.safetensors,
    the shards that model.safetensors.index.json names, pytorch_model.bin (where there is no
    safetensors), or the shards that pytorch_model.bin.index.json names, in that order."""
    if (folder / WEIGHTS_FILE).is_file():
        return [folder / WEIGHTS_FILE]
    index = index_file(folder)
    if index is not None:
        return [p for p in shards(index) if p.is_file()]
    return [folder / PICKLE_FILE] if (folder / PICKLE_FILE).is_file() else []


def shards(index: Path) -> list[Path]:
    """The shards a shard index names (none where it cannot be read: transformers' own error
    names the index)."""
    return [index.parent / n for n in shard_names(index)]


def damaged_file(folder: Path) -> Path:
    """The weight file of ``folder`` that is damaged (a cut shard, say), for a message that
    names it; model.safetensors where none is seen."""
    from ..hub.damaged import damage

    return next((p for p in weight_files(folder) if damage(p)), folder / WEIGHTS_FILE)


def check_before_load(folder: Path, name: str) -> None:
    """A CheckpointError where ``folder`` holds a quantized model, or a Git LFS pointer where a
    weight file should be."""
    quant = read_config(folder, name).get("quantization_config")
    if quant is not None:
        method = quant.get("quant_method", "unknown") if isinstance(quant, dict) else quant
        raise CheckpointError(
            f"{folder} holds a quantized model ({method}, its config.json's quantization_config), "
            f"but backbone {name} runs from full-precision weights (float32, float16 or "
            f"bfloat16): pass the folder of the model it was quantized from, or "
            f"{where_from(name)}"
        )
    index = index_file(folder)
    if index is not None:
        _check_index(index, name)
        named = shards(index)
        missing = [p.name for p in named if not p.is_file()]
        if missing:
            raise WeightsNotFoundError(
                f"{folder} lacks {missing[0]}, one of the weight files its {index.name} names "
                f"({len(missing)} of {len(named)} missing: a copy cut short?); copy "
                f"them all, or {where_from(name)}"
            )
    for path in weight_files(folder):
        check_not_lfs_pointer(path, where_from(name, path))


def _check_index(index: Path, name: str) -> None:
    """A CheckpointError naming shard index ``index`` where it is not JSON or has no
    ``weight_map`` of weight names to shard files (transformers' error, a KeyError or a JSON
    decoding error, was said to be config.json's)."""
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (ValueError, AttributeError) as e:  # not JSON, or JSON but not an object
        problem = (
            f"is corrupt ({printable(str(e))})"
            if isinstance(e, ValueError)
            else "is not a JSON object"
        )
        raise CheckpointError(f"{index} {problem}; {where_from(name, index)}") from None
    except PermissionError as e:  # another user's, of mode 600: said with its chmod
        raise read_refused(index, e, "shard index") or e from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(
            f'{index} has no "weight_map" (each weight\'s shard file), as save_pretrained '
            f"writes it; {where_from(name, index)}"
        )


def check_after_load(folder: Path, model: torch.nn.Module, name: str) -> None:
    """A CheckpointError where a file of ``folder`` stored one of ``model``'s floating-point
    weights as integers or booleans (transformers cast it), or a loaded weight is not finite."""
    check_stored_floats(folder, model, name)
    for key, tensor in model.state_dict().items():
        # a NaN or an infinity makes the sum one (and finite weights' sums stay far below
        # float32's range): one pass, no mask, a few times faster than isfinite().all()
        if tensor.is_floating_point() and not torch.isfinite(tensor.sum()):
            raise CheckpointError(
                f"{folder}: weight {key} of backbone {name} holds NaN or infinite values, so "
                f"every feature would be NaN; {where_from(name, _first(folder))}"
            )


def check_stored_floats(folder: Path, model: torch.nn.Module, name: str) -> None:
    """A CheckpointError where a file of ``folder`` stores one of ``model``'s floating-point
    weights as integers or booleans (``model`` may be on the meta device: only its dtypes are
    read). transformers 5 casts them; transformers 4 fails to copy them, a RuntimeError."""
    floats = {n for n, t in model.state_dict().items() if t.is_floating_point()}
    for path in weight_files(folder):
        for key, (dtype, _) in _stored(path).items():
            if not _is_float(dtype) and _weight_of(key, floats):
                raise CheckpointError(
                    f"{path} stores {key} as {dtype}, not as floating-point numbers: not the "
                    f"weights of backbone {name} (a quantized or converted copy?); "
                    f"{where_from(name, path)}"
                )


def mismatch_shapes(entry, folder: Path, model: torch.nn.Module) -> tuple[str, tuple, tuple]:
    """(weight name, shape in the file, shape the config gives) of one of transformers'
    ``mismatched_keys``: transformers 5 gives all three, transformers 4 the name alone (the
    shapes went to its log), read here from the files' headers and the model."""
    if not isinstance(entry, str):
        key, stored, wanted = entry[:3]
        return key, tuple(stored), tuple(wanted)
    stored = next((v[1] for p in weight_files(folder) for k, v in _stored(p).items()
                   if k == entry or k.endswith("." + entry)), ())  # fmt: skip
    wanted = model.state_dict().get(entry, torch.empty(0)).shape
    return entry, tuple(stored), tuple(wanted)


def _first(folder: Path) -> Path | None:
    """The first weight file of ``folder`` (what a message's fix names), or None."""
    files = weight_files(folder)
    return files[0] if files else None


def missing_fix(folder: Path, name: str) -> str:
    """The fix for a folder that lacks some of backbone ``name``'s weights: another folder, or
    where it is the Hugging Face cache's copy of a hub repo, that copy deleted and fetched
    again (nothing else passed it)."""
    first = _first(folder)
    cached = backbone_fix(first, name) if first is not None else None
    return cached or "pass the folder of the matching model"


def _is_float(dtype: str) -> bool:
    """Whether a safetensors dtype ("F32", "BF16", "F8_E4M3", ...) or a torch dtype's name
    ("torch.float16") is a floating-point one."""
    return dtype.startswith(("F", "BF", "torch.float", "torch.bfloat"))


def _weight_of(key: str, floats: set[str]) -> bool:
    """Whether file key ``key`` is one of the model's floating-point weights ``floats``: the same
    name, or one with a prefix more or less (a full model's file, a tower's own)."""
    return any(key == n or key.endswith("." + n) or n.endswith("." + key) for n in floats)


def _stored(path: Path) -> dict[str, tuple[str, list[int]]]:
    """Each tensor's (dtype, shape) as stored in ``path``, without reading the tensors' data (a
    safetensors header; a torch file memory-mapped)."""
    if path.suffix == ".safetensors":
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        return {k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"}
    with open(path, "rb") as f:
        archive = f.read(4) == b"PK\x03\x04"  # torch.save's zip: memory-mapped, else read
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=archive)
    if not isinstance(state, dict):
        return {}
    return {
        k: (str(t.dtype), list(t.shape)) for k, t in state.items() if isinstance(t, torch.Tensor)
    }
