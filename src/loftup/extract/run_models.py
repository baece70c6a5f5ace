"""The models of one :func:`~loftup.extract.upsample_folder` run: its ``model`` checked before
any work (:func:`_check_model`); the models read, the upsampler's checkpoint once, nothing
passed in converted or moved before the record is settled (:func:`read_models`); and how
``upsample.json`` names them: ``model`` as given (:func:`_recorded_model`), the weights by
their digests in float32 as given or read, taken before the run converts them to its
``dtype`` (:func:`.record.weights_digest`), the backbone by the precision it runs in and a
Featurizer passed in by its digest too (:func:`_backbone_record`); an earlier loftup's
digests compared as it took them (:func:`as_compared`)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from .run_options import _own_dtype


def read_models(
    model, backbone, backbone_weights, backbone_size, backbone_norm, device, dtype, said_as=None
):
    """(the upsampler, the backbone, the digest of the upsampler's weights, that of a
    Featurizer passed in or None), nothing converted or moved: a LoftUp or Featurizer passed in
    as given, a name or path read once on the CPU in float32 (the upsampler's checkpoint is not
    read again for its digest, on any rank). The digests are of the weights in float32 as
    given (:func:`.record.weights_digest`: a run in another dtype was told other weights too).
    The run's record is settled from these before :func:`loftup.api.load_pipeline` converts
    what was passed in (a refused run had converted it, in place and lossily, and the call
    refused was then refused again). load_pipeline's options (``device`` resolved, ``dtype``
    None: a module passed in keeps its own) and a backbone's name are said before a file is
    read; no backbone given or recorded, as ``said_as`` calls the argument (a command line's
    option)."""
    from ..featurizers import Featurizer
    from ..pipeline import named_featurizer, read_upsampler
    from ..pipeline_checks import check_backbone_name, check_passed_backbone, checked_options
    from .record import weights_digest

    checked_options(backbone_size, backbone_norm, device, dtype)  # (checked again there)
    check_backbone_name(backbone, model)
    check_passed_backbone(backbone, backbone_weights, backbone_norm)
    upsampler = (
        model
        if isinstance(model, torch.nn.Module)
        else read_upsampler(model, backbone, backbone_weights)
    )
    passed_in = isinstance(backbone, Featurizer)
    featurizer = (
        backbone
        if passed_in
        else named_featurizer(upsampler, backbone, backbone_weights, backbone_norm, said_as)
    )
    digest = weights_digest(upsampler)
    return upsampler, featurizer, digest, weights_digest(backbone) if passed_in else None


def _check_model(model, said_as: dict | None) -> None:
    """A :class:`~loftup.errors.UsageError` unless ``model`` is a LoftUp or names the
    upsampler (a released name, a weights file or folder, a hub id), before anything is
    loaded; a pipeline is told to pass its upsampler (it loaded, then failed in os.fspath)."""
    from ..checks import shown
    from ..errors import UsageError
    from ..hub import check_source
    from ..model import LoftUp
    from ..words import said

    if isinstance(model, LoftUp):
        return
    if isinstance(getattr(model, "upsampler", None), LoftUp):  # a FeaturePipeline
        raise UsageError(
            f"{said('model', said_as)} is the upsampler (a LoftUp, or its name or path), got "
            f"{shown(model)}; for the features it computes pass model=pipeline.upsampler, "
            f"backbone=pipeline.featurizer, backbone_size={model.backbone_size!r} (its "
            "backbone_size), and no device or dtype (each module keeps its own)"
        )
    check_source(model, said("model", said_as), ("a LoftUp",))


def _recorded_model(model) -> str | None:
    """How upsample.json records ``model``: a path resolved, a name as given
    (:func:`.record.recorded_path`), a LoftUp passed in by its class (a TypeError of
    os.fspath came after the models had loaded): its weights are recorded by their digest."""
    from .record import recorded_path

    if isinstance(model, (str, os.PathLike)):
        return recorded_path(model)
    return f"a {type(model).__name__} passed in"


def _backbone_record(digest: str | None, featurizer, dtype: str | None) -> dict:
    """The record's ``backbone_sha256`` and ``backbone_dtype``: the precision the backbone runs
    in, ``dtype`` or its own (a Featurizer passed in keeps its own; one loaded by name is
    float32), for every run (a bfloat16 LoftUp with a backbone by name and no ``dtype``
    recorded bfloat16 alone, the backbone having run in float32, and a resume with ``dtype``
    bfloat16 mixed the features of both precisions); and for a Featurizer passed in, the
    ``digest`` of its weights as given (:func:`.record.weights_digest`, taken before the run
    converts them); None for one loaded by name (``digest`` None: its weights are
    ``backbone_weights``'), as records before it. Compared by ``--resume``."""
    return {"backbone_sha256": digest, "backbone_dtype": dtype or _own_dtype(featurizer)}


def as_compared(options: dict, saved: dict | None, upsampler, backbone) -> dict:
    """``options`` as the record ``saved`` is compared with: where ``saved`` is an earlier
    loftup's (no ``digests_of``, :data:`.record.DIGESTS_OF`), its ``upsampler_sha256`` was the
    digest of the weights converted to its ``dtype``, and ``backbone_sha256`` of a Featurizer
    passed in to its ``backbone_dtype``; such a digest of ``upsampler`` (``backbone``: the
    module passed in, or None) that equals the record's stands for this run's (a record of
    ``--dtype bfloat16`` was refused as one of other weights after an upgrade). Taken of a
    copy on the CPU converted as ``.to(dtype)`` converts (a LoftUp keeps its phases and
    BatchNorm in float32), for such a record only. Others as they are; the record this run
    writes holds its own digests, of the weights in float32."""
    from ..hub.record import weights_digest as state_digest
    from .record import _as_recorded

    if not isinstance(saved, dict) or "digests_of" in saved:
        return options
    compared = dict(options)
    for key, module, dtype_key in (
        ("upsampler_sha256", upsampler, "dtype"),
        ("backbone_sha256", backbone, "backbone_dtype"),
    ):
        ran = _as_recorded("dtype", saved.get(dtype_key))
        if (
            isinstance(module, torch.nn.Module)
            and saved.get(key) not in (None, options[key])
            and ran in ("bfloat16", "float16")
        ):
            if state_digest(_converted_state(module, getattr(torch, ran)))[:16] == saved[key]:
                compared[key] = saved[key]
    return compared


class _Converted(Mapping):
    """A state dict whose tensors are converted as they are read: each to its dtype in
    ``dtypes`` on the CPU (one at a time, as :func:`loftup.hub.record.weights_digest` reads)."""

    def __init__(self, state: dict, dtypes: dict) -> None:
        self.state, self.dtypes = state, dtypes

    def __getitem__(self, key):
        return self.state[key].detach().to("cpu", self.dtypes[key])

    def __iter__(self):
        return iter(self.state)

    def __len__(self) -> int:
        return len(self.state)


def _converted_state(module: torch.nn.Module, dtype: torch.dtype) -> Mapping:
    """``module``'s state dict as ``module.to("cpu", dtype)``'s would be, read one tensor at
    a time on the CPU: which tensors the cast converts (a LoftUp keeps some in float32) is
    learnt from a copy on the meta device, which holds no memory; a copy of the module itself
    was made on its own device (a GPU's memory doubled for a moment)."""
    import copy

    memo = {}
    for t in module.parameters():
        memo[id(t)] = torch.nn.Parameter(t.detach().to("meta"), t.requires_grad)
    for t in module.buffers():
        memo[id(t)] = t.detach().to("meta")
    shapes = copy.deepcopy(module, memo).to(dtype).state_dict()
    return _Converted(module.state_dict(), {k: v.dtype for k, v in shapes.items()})
