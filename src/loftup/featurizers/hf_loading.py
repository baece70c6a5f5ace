"""Loading a transformers backbone's weights strictly: every parameter from the file, in
float32, transformers' own load report silenced; and where transformers fails or would load
without a word, a one-line error naming the file and the fix (a cut or unsafe pickle, a
config.json that does not describe its weights, weights missing or stored as integers).

What a folder's files hold is checked by :mod:`loftup.featurizers.hf_files`; where the weights
are found, by :mod:`loftup.featurizers.hf_weights`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..errors import CheckpointError, WeightsNotFoundError, first_line, one_line
from ..escaping import printable
from .hf_weights import CONFIG_FILE, WEIGHTS_FILE, where_from

#: What a backbone's forward returns, whatever its config.json says: its outputs are read by
#: name (``last_hidden_state``), and nothing else is kept. A config.json exported for tracing
#: ("return_dict": false: a tuple) failed on every call with an AttributeError, and one asking
#: for every layer's hidden states (or attention maps) had them kept at each call, unused.
_OUTPUTS = {
    "return_dict": True,
    "torchscript": False,
    "output_attentions": False,
    "output_hidden_states": False,
}


def load_strict(cls, folder: Path, name: str, **config_overrides):
    """``cls.from_pretrained(folder)`` in float32; every parameter must come from the file.

    transformers' own load report is silenced: a missing or misshapen weight is raised here as a
    CheckpointError instead (weights of other parts, e.g. a text tower, are ignored).
    """
    with quiet_transformers():
        return _load_strict(cls, folder, name, **config_overrides)


@contextlib.contextmanager
def quiet_transformers():
    """transformers' load report and progress bars off inside the block (our errors say what
    went wrong; a bar per model load would scroll past training's own)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_strict(cls, folder: Path, name: str, **config_overrides):
    import pickle

    from safetensors import SafetensorError

    from ..hub.files import check_torch_file
    from .hf_files import (
        check_after_load,
        check_before_load,
        damaged_file,
        mismatch_shapes,
        missing_fix,
        weight_files,
    )

    check_before_load(folder, name)
    # the torch pickles transformers reads (pytorch_model.bin or its shards): a zip archive's
    # checksums, which torch.load does not check
    pickled = [p for p in weight_files(folder) if p.suffix == ".bin"]
    for path in pickled:
        check_torch_file(path, fix=where_from(name, path))
    if pickled:
        _check_torch_reads_pickles(pickled[0], name)
    config = None
    try:
        # the overrides go into the config itself: passed to from_pretrained, one that the
        # config class does not declare (vision_use_head before transformers 5) would reach
        # the model's constructor instead and fail there
        config = cls.config_class.from_pretrained(folder, local_files_only=True)
        _check_sizes_are_integers(config)
        for key, value in {**_OUTPUTS, **config_overrides}.items():
            setattr(config, key, value)
        model, info = cls.from_pretrained(
            folder,
            config=config,
            local_files_only=True,
            output_loading_info=True,
            # a weight of another shape is reported below, naming it: transformers' own error
            # points at a load report that is silenced here
            ignore_mismatched_sizes=True,
            dtype=torch.float32,
        )
    except OSError as e:
        first = printable(first_line(e, 300))
        # a cut zip archive (transformers' mmap: "[Errno 22] Invalid argument", naming no
        # file), or a pickle transformers 4 could not read (its OSError names the file)
        _name_damaged_pickle([p for p in pickled if str(p) in str(e) or _cut_zip(p)], name)
        files = weight_files(folder)
        if files:  # the weights are there: what failed is said, not that they are missing
            raise CheckpointError(
                f"cannot load backbone {name} from {folder} ({first}); {where_from(name, files[0])}"
            ) from None
        raise WeightsNotFoundError(
            f"cannot load backbone {name} from {folder} ({first}); it needs {WEIGHTS_FILE} (or "
            f"pytorch_model.bin) beside {CONFIG_FILE}: {where_from(name)}"
        ) from None
    except SafetensorError as e:  # a truncated or corrupt model.safetensors (or shard)
        bad = damaged_file(folder)
        raise CheckpointError(
            f"{bad} is truncated or corrupt ({printable(first_line(e))}); {where_from(name, bad)}"
        ) from None
    except (RuntimeError, pickle.UnpicklingError, EOFError) as e:  # a damaged or unsafe .bin
        # torch.load's own text suggests weights_only=False: ours names the file
        _name_damaged_pickle(pickled, name)
        _name_integer_weights(cls, config, folder, name)  # transformers 4 cannot copy them
        raise CheckpointError(
            f"{folder} does not fit backbone {name}: {printable(first_line(e, 300))}"
        ) from None
    except (ValueError, KeyError, *_field_type_errors()) as e:  # a config.json it rejects
        raise CheckpointError(
            f"{folder} cannot be loaded as backbone {name} "
            f"({printable(one_line(e, 300, typed=True))}); "
            f"check its {CONFIG_FILE}, or pass the folder save_pretrained wrote"
        ) from None
    mismatched = sorted(
        info.get("mismatched_keys") or [], key=lambda m: m if isinstance(m, str) else m[0]
    )
    if mismatched:
        key, stored, wanted = mismatch_shapes(mismatched[0], folder, model)
        raise CheckpointError(
            f"{folder / CONFIG_FILE} does not describe its weights: {key} is "
            f"{tuple(stored)} in the file, {tuple(wanted)} by the config "
            f"({len(mismatched)} weight(s) differ); {where_from(name)}"
        )
    missing = sorted(k for k in info.get("missing_keys", []) if k)
    if missing:
        raise CheckpointError(
            f"{folder} does not hold complete {name} weights (missing {missing[:3]}); "
            f"{missing_fix(folder, name)}"
        )
    check_after_load(folder, model, name)
    return model


#: Sizes every backbone's config.json holds as integers, which transformers 4 does not check
#: (a number written as text failed deep in the model's constructor, a TypeError traceback).
_INTEGER_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def _check_sizes_are_integers(config) -> None:
    """A ValueError naming the field of ``config`` among :data:`_INTEGER_SIZES` that is no
    integer (``"hidden_size": "384"``, ``null``), which :func:`_load_strict` says as it says
    a config.json transformers rejects (transformers 5's own check of field types too)."""
    for field in _INTEGER_SIZES:
        value = getattr(config, field, 0)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{field!r} is {repr(value)[:100]}, not an integer")


def _field_type_errors() -> tuple[type[Exception], ...]:
    """huggingface_hub's error for a config field of the wrong type (``"hidden_size": "384"``,
    ``null``): transformers 5 checks each field's type with it, and it is no ValueError, so it
    came out as a traceback of several lines. None where the installed huggingface_hub has
    no such error (an older release, with which no transformers checks so)."""
    try:
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:
        return ()
    return (StrictDataclassError,)


def _check_torch_reads_pickles(path: Path, name: str) -> None:
    """A CheckpointError naming ``path`` (a pytorch_model.bin or shard) where this torch is older
    than :data:`SAFE_PICKLE_TORCH`: transformers 4 runs there but refuses to unpickle the file,
    and its ValueError was said as a config.json that transformers rejects."""
    from ..hub.files import SAFE_PICKLE_TORCH, torch_release  # here: hub imports the backbones

    if torch_release() >= SAFE_PICKLE_TORCH:
        return
    need = ".".join(map(str, SAFE_PICKLE_TORCH))
    raise CheckpointError(
        f"{path} is a PyTorch pickle, which transformers reads only with torch {need} or newer "
        f"(torch.load could run code from the file before it, CVE-2025-32434), and this is "
        f"torch {torch.__version__}: upgrade torch (pip install 'torch>={need}'), or give "
        f"backbone {name} a folder with model.safetensors ({where_from(name)})"
    )


def _name_integer_weights(cls, config, folder: Path, name: str) -> None:
    """:func:`check_stored_floats` against the model ``config`` describes, built on the meta
    device (no memory, no weights): transformers 4 fails to copy a weight stored as integers or
    booleans into a float parameter, a RuntimeError that named no file."""
    from .hf_files import check_stored_floats

    if config is None:
        return
    try:
        with torch.device("meta"):
            skeleton = cls(config)
    except Exception:  # noqa: BLE001 - a model that cannot be built there: transformers' error
        return
    check_stored_floats(folder, skeleton, name)


def _name_damaged_pickle(pickled: list[Path], name: str) -> None:
    """The CheckpointError :func:`loftup.hub.files.torch_load` raises for the first of the
    torch pickles ``pickled`` that it cannot read (cut, corrupt, or holding code), naming it;
    nothing where all are read. Each is read whole: given only where a load failed."""
    from ..hub.files import torch_load

    for path in pickled:
        torch_load(path, fix=where_from(name, path))


def _cut_zip(path: Path) -> bool:
    """Whether ``path`` is a zip archive (torch.save's) without its end, as a copy cut short
    leaves it; read without its members."""
    import zipfile

    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return False
    try:
        zipfile.ZipFile(path).close()
    except (zipfile.BadZipFile, OSError):
        return True
    return False
