"""What :func:`~loftup.extract.upsample_folder` settles of its options before any file is
read or model loaded: the options checked (:func:`check_run_options`), and the precision and
the device of a run whose modules were passed in (kept as they are by default)."""

from __future__ import annotations

import numbers

import torch

from ..errors import printable
from ..escaping import quoted


def _own_dtype(model) -> str:
    """The precision a run of ``model`` with no ``dtype`` given computes in: a LoftUp's own
    (not converted in place), float32 for what is loaded by name or path."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return str(p.dtype).removeprefix("torch.")
    return "float32"


def _modules(model, backbone) -> bool:
    """Whether a module was passed in (kept where it is, in its own precision, by default)."""
    return any(isinstance(m, torch.nn.Module) for m in (model, backbone))


def _run_device(device, model, backbone, local_rank: int | None) -> torch.device:
    """Where the run computes: ``device`` when given; None: where a LoftUp (or Featurizer)
    passed in is (:func:`loftup.pipeline_checks.run_device`; not moved in place), else the
    auto device; under torchrun (``local_rank``) a CUDA device is the process's own GPU. A
    module passed in on the meta device is refused (:func:`~loftup.pipeline_checks.refuse_meta`)
    with a ``device`` too: its weights' digest, taken before it is moved, failed deep inside."""
    from ..checks import resolve_device
    from ..pipeline_checks import on_meta, refuse_meta, run_device

    for name, module in (("model", model), ("backbone", backbone)):
        if on_meta(module):  # (unsaid: "device meta is not supported", or the digest's failure)
            refuse_meta(name)
    if device is None and _modules(model, backbone):
        device = run_device(None, model, backbone)
        if local_rank is None or device.type != "cuda":
            return device
    return resolve_device(device, local_rank)


def _plain_ints(value):
    """``value`` with any integer of another type (NumPy's, say; not a bool) as an ``int``,
    inside a tuple or list too; anything else as it is, for the checks to name."""
    if isinstance(value, (tuple, list)):
        return type(value)(_plain_ints(v) for v in value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def check_run_options(
    fmt: str, dtype, save_dtype, size, batch_size: int, writers: int, said_as: dict | None = None
) -> tuple[str, str]:
    """:func:`upsample_folder`'s options that need no file or model, checked before any work:
    a :class:`~loftup.errors.UsageError` naming the first that cannot be used (as ``said_as``
    calls it: a command line's options). Returns the computing and the stored precision by
    their names (``"bf16"`` is ``"bfloat16"``, as ``upsample.json`` records it); the stored one
    is ``dtype``'s by default, float32 for bfloat16 in ``.npy`` (NumPy has no bfloat16)."""
    from ..checks import as_dtype, check_size
    from ..errors import UsageError, is_int
    from ..outputs import FORMATS
    from ..words import said, said_with

    if fmt not in FORMATS:
        raise UsageError(
            f"unknown {said('fmt', said_as)} {quoted(fmt)}; choose one of {', '.join(FORMATS)}"
        )
    for name, value in (("batch_size", batch_size), ("writers", writers)):
        if not is_int(value) or value < 1:
            raise UsageError(f"{said(name, said_as)} must be >= 1, got {value!r}")
    check_size(size)
    names = []
    for name, value in (("dtype", dtype), ("save_dtype", save_dtype or dtype)):
        try:
            names.append(str(as_dtype(value)).removeprefix("torch."))
        except UsageError as e:
            raise UsageError(f"{said(name, said_as)}: {printable(str(e))}") from None
    dtype, stored = names
    if fmt == "npy" and stored == "bfloat16":
        if save_dtype is not None:
            raise UsageError(
                f"{said('fmt', said_as)} npy cannot store bfloat16 (NumPy has no such type); use "
                f"{said_with('save_dtype', 'float16', said_as, 'float32')}, or "
                f"{said_with('fmt', 'pt', said_as, 'safetensors')}"
            )
        stored = "float32"
    return dtype, stored


def input_specs(inputs, said_as: dict | None = None) -> list:
    """``inputs`` (a path or glob, or an iterable of them: a list, a set, ``Path.glob``'s
    generator) as a list of them, each as ``os.fsdecode`` gives it (named in messages as a
    string; bytes as the file system's names): one path or glob is one input (a string's
    letters were taken as inputs). An image in memory (a PIL image, an array, a tensor, alone
    or in the iterable) is a :class:`~loftup.errors.UsageError` saying what it takes and what
    takes images in memory (``os.fspath``'s TypeError said neither), as is anything else that
    is no path. A set's are sorted (its order differs between processes)."""
    import os

    from ..checks import shown
    from ..errors import UsageError
    from ..words import said

    paths = (str, bytes, os.PathLike)
    specs = [inputs] if isinstance(inputs, paths) or _in_memory(inputs) else inputs
    try:
        specs = list(specs)
    except TypeError:  # not iterable: refused as the one input it is
        specs = [inputs]
    for spec in specs:
        if not isinstance(spec, paths):
            memory = (
                "; for images in memory use loftup.upsample(image, ...), or a pipeline "
                "(loftup.load_pipeline)"
                if _in_memory(spec)
                else ""
            )
            raise UsageError(
                f"{said('inputs', said_as)} takes paths, folders or globs of image files (one, "
                f"or a list of them), got {printable(shown(spec))}{memory}"
            )
    specs = [os.fsdecode(spec) for spec in specs]
    # a set's order is its hash seed's, another in each of torchrun's ranks: the first input
    # to reach a file names it (a folder, a link to it), so the jobs, which each rank shares
    # out by their order, were sorted otherwise and some images computed twice, some never
    return sorted(specs) if isinstance(inputs, (set, frozenset)) else specs


def _in_memory(value) -> bool:
    """Whether ``value`` is an image in memory: a PIL image, a NumPy array or a tensor."""
    import numpy as np
    from PIL import Image

    return isinstance(value, (Image.Image, np.ndarray, torch.Tensor))
