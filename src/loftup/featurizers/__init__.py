"""Backbones (featurizers): ImageNet-normalised images (B, 3, H, W) -> patch features (B, C, h, w).

One registry maps names (``dinov2_vits14``, ...) to builders. Family modules register their
entries with :func:`register`; :func:`get_featurizer` builds one by name. Every featurizer is a
:class:`Featurizer`: an ``nn.Module`` exposing ``name``, ``patch_size``, ``dim`` and its
preprocessing (``mean``, ``std``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UnknownNameError, UsageError, did_you_mean
from ..escaping import quoted
from ..norms import IMAGENET_MEAN, IMAGENET_STD, INPUT_NORMS  # noqa: F401 (re-exported)
from ..words import said_with


class Featurizer(nn.Module):
    """Base class: maps an ImageNet-normalised (B, 3, H, W) batch to (B, dim, h, w).

    ``(h, w) = snap_to_patches(H, W, patch_size) / patch_size`` (sizes that are not a multiple
    of the patch are resized, see :mod:`loftup.featurizers.sizes`). ``mean``/``std`` are the
    constants the backbone was trained with. Every featurizer takes the same tensor as the
    upsampler's guidance image; a backbone whose constants are not ImageNet's (CLIP, SigLIP)
    is given it as it is (``input_norm="imagenet"``, what the paper's code does, so the
    features the released upsamplers were trained on), or converted to its own constants
    (``input_norm="own"``). See :data:`INPUT_NORMS`.
    """

    name: str = "featurizer"
    patch_size: int = 14
    dim: int = 384
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_norm: str = "imagenet"
    #: A tag for a change in how loftup computes this backbone's features (None: never
    #: changed), so that features cached by an earlier version are not taken for these.
    revision: str | None = None

    def converts_input(self) -> bool:
        """Whether the backbone is given other pixels than the ImageNet-normalised input."""
        return self.input_norm_key() == "own"

    def input_norm_key(self) -> str | None:
        """``input_norm`` where it changes the features (a backbone whose constants are not
        ImageNet's), else None: for cache keys and records that must tell the two apart."""
        own = (tuple(self.mean), tuple(self.std)) != (IMAGENET_MEAN, IMAGENET_STD)
        return self.input_norm if own else None

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> the input ``forward`` takes (ImageNet-normalised)."""
        return imagenet_normalize(images01)


def imagenet_normalize(images01: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> ImageNet-normalised (the upsampler's guidance image), in
    one new tensor (``inplace``: in ``images01`` itself, a tensor the caller may spend).
    Integer pixels are refused (the constants cast to uint8 are 0: every value was inf or NaN)."""
    if not images01.is_floating_point():
        raise UsageError(
            f"normalize takes RGB values in [0, 1] as floating point, got "
            f"{str(images01.dtype).removeprefix('torch.')}; convert uint8 pixels with "
            "images.float() / 255"
        )
    mean = torch.tensor(IMAGENET_MEAN, device=images01.device, dtype=images01.dtype)
    std = torch.tensor(IMAGENET_STD, device=images01.device, dtype=images01.dtype)
    mean, std = mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1)
    return (images01.sub_(mean) if inplace else images01 - mean).div_(std)


@dataclass(frozen=True)
class FeaturizerSpec:
    """A registered backbone: ``builder(weights, device) -> Featurizer``."""

    name: str
    builder: Callable[..., Featurizer]
    patch_size: int
    dim: int
    default_weights: str | None = None
    description: str = ""
    #: The hub repo of ``default_weights`` asks for its terms to be accepted and a login.
    gated: bool = False
    #: config.json's ``image_size`` of ``default_weights``, where a model of the same width
    #: with another is another checkpoint (trained at that resolution: other positional
    #: embeddings and weights, other features); None where the family has one resolution
    #: or none (rotary embeddings, NaFlex).
    image_size: int | None = None


FEATURIZERS: dict[str, FeaturizerSpec] = {}
ALIASES: dict[str, str] = {}

#: Family modules that register their backbones, imported at the end of this package (light).
_FAMILY_MODULES: list[str] = [
    "loftup.featurizers.dinov2",
    "loftup.featurizers.dinov3",
    "loftup.featurizers.clip",
    "loftup.featurizers.siglip",
    "loftup.featurizers.scenes_vit",
]


def register(spec: FeaturizerSpec, *, aliases: tuple[str, ...] = ()) -> FeaturizerSpec:
    """Add a backbone to the registry (a name registered twice is an error)."""
    if spec.name in FEATURIZERS:
        raise UsageError(
            f"featurizer {quoted(spec.name)} is registered already; register yours under another "
            "name"
        )
    FEATURIZERS[spec.name] = spec
    for alias in aliases:
        ALIASES[alias] = spec.name
    return spec


def resolve(name: str) -> FeaturizerSpec:
    """The registry entry for ``name`` or an alias; UnknownNameError lists the known names."""
    key = ALIASES.get(name, name)
    refuse_blank(name, error=UnknownNameError)
    if key not in FEATURIZERS:
        raise UnknownNameError(
            f"unknown backbone {quoted(name)}{did_you_mean(name, FEATURIZERS)}; known backbones "
            "are: "
            f"{', '.join(sorted(FEATURIZERS))}"
        )
    return FEATURIZERS[key]


def refuse_blank(
    name,
    said_as: dict | None = None,
    *,
    arg: str = "backbone",
    absent: str = "",
    error=UsageError,
    example: str = "dinov2_vits14",
) -> None:
    """An ``error`` where the backbone ``name`` is an empty or blank string, an unset variable
    most likely: not "unknown backbone ''" with every name listed, nor taken as none given. The
    fix as its caller writes it (:func:`loftup.words.said_with`): ``--backbone dinov2_vits14``
    where ``said_as`` names the argument ``arg`` (a command line, where the variable was
    ``"$BB"``), else ``backbone='dinov2_vits14'`` (``example``: one of the upsampler's width,
    where the caller knows it); then ``absent``, what leaving it out does where the caller may
    (", or leave it out for ...")."""
    if not isinstance(name, str) or name.strip():
        return
    flag = (said_as or {}).get(arg)
    unset = f', as in {flag} "$BB"' if flag else " or an empty string"
    raise error(
        f"the backbone is empty or blank (an unset variable{unset}?): pass a backbone's name "
        f"(e.g. {said_with(arg, example, said_as)}){absent}"
    )


def backbones_of_dim(dim: int) -> list[str]:
    """The names of the registered backbones whose features are ``dim``-d."""
    return [name for name, spec in FEATURIZERS.items() if spec.dim == dim]


def example_of_dim(dim: int | None) -> str:
    """A backbone to name in an example for an upsampler of ``dim``-d features: the first
    registered of that width, else (none, or no width known) dinov2_vits14."""
    fits = backbones_of_dim(dim) if dim is not None else []
    return fits[0] if fits else "dinov2_vits14"


def check_input_norm(value: str, flag: str = "input_norm") -> str:
    """``value`` if it names an :data:`INPUT_NORMS` entry, else a UsageError listing them."""
    from ..errors import UsageError

    if not isinstance(value, str) or value not in INPUT_NORMS:  # a list is no key of it either
        raise UsageError(
            f"{flag} must be one of {', '.join(INPUT_NORMS)} (what the backbone is given), "
            f"got {value!r}"
        )
    return value


def get_featurizer(
    name: str, weights: str | None = None, device=None, *, input_norm: str = "imagenet"
) -> Featurizer:
    """Build the backbone ``name`` (weights: hub id or local folder; default the official one).

    ``input_norm``: how a backbone trained with other constants than ImageNet's (CLIP, SigLIP)
    is given the ImageNet-normalised input: "imagenet" (as it is, what the paper's code does:
    the features the released upsamplers were trained on) or "own" (converted to its own
    constants). The same for every other backbone."""
    check_input_norm(input_norm)
    refuse_blank(name, arg="name", error=UnknownNameError)  # (resolve's would say backbone=)
    spec = resolve(name)
    if device is not None:  # before loading: "cuda" on a machine without one is said in a line
        from ..checks import resolve_device

        device = resolve_device(device)
    model = spec.builder(weights, device)
    check_size(spec, model, weights)
    model.input_norm = input_norm
    return model.eval()


def check_size(spec: FeaturizerSpec, model: Featurizer, weights) -> None:
    """A CheckpointError where the weights hold another backbone than ``spec`` names: another
    patch size (the grid everything else plans with), or the width of another registered
    size of the same family (a ViT-B folder given as ``dinov2_vits14``), or, of the name's own
    width, another resolution than its official weights' (:func:`check_image_size`). A width
    that no released backbone of the family has (a small model of the same architecture, as
    the tests build) is accepted."""
    from ..errors import CheckpointError

    weights = weights if weights is not None else spec.default_weights
    if model.patch_size != spec.patch_size:
        raise CheckpointError(
            f"{weights} holds a model with patch size {model.patch_size}, but backbone "
            f"{spec.name} has patch size {spec.patch_size}; pass the folder of {spec.name} or "
            "the backbone name that matches the folder"
        )
    if model.dim == spec.dim:
        check_image_size(spec, model, weights)
        return
    family = spec.builder.__module__
    others = [
        n
        for n, s in FEATURIZERS.items()
        if s.builder.__module__ == family
        and s.default_weights is not None  # a released backbone, not a seeded test model
        and (s.dim, s.patch_size) == (model.dim, spec.patch_size)
    ]
    if others:
        raise CheckpointError(
            f"{weights} holds a {model.dim}-d model, but backbone {spec.name} is {spec.dim}-d; "
            f"pass the backbone name that matches the folder ({', '.join(others)}) or the "
            f"folder of {spec.name}"
        )


#: Set to 1 to run a backbone's folder of another config.json ``image_size`` than its official
#: weights' (:func:`check_image_size`) as that backbone all the same.
ANY_IMAGE_SIZE_ENV = "LOFTUP_BACKBONE_ANY_IMAGE_SIZE"


def check_image_size(spec: FeaturizerSpec, model: Featurizer, weights) -> None:
    """A CheckpointError where ``model``, of backbone ``spec``'s width, was trained at another
    resolution than ``spec``'s official weights (config.json's ``image_size``: a folder of
    google/siglip-base-patch16-384 given as ``siglip_vitb16``, whose official weights are the
    224-px model): the same architecture, but another checkpoint, whose features the upsampler
    paired with the name was not trained on. ``LOFTUP_BACKBONE_ANY_IMAGE_SIZE=1`` runs it all
    the same (an upsampler trained on it)."""
    import os

    from ..errors import CheckpointError
    from ..hub import RELEASED

    config = getattr(getattr(model, "model", None), "config", None)
    got = getattr(config, "image_size", None)
    if spec.image_size is None or got is None or got == spec.image_size:
        return
    if os.environ.get(ANY_IMAGE_SIZE_ENV, "0").upper() in {"1", "ON", "YES", "TRUE"}:  # as HF_
        return
    trained = [c.name for c in RELEASED.values() if c.backbone == spec.name]
    what = f", the features {trained[0]} was trained on" if trained else ""
    raise CheckpointError(
        f"{weights} holds a model of image_size {got} (its config.json), but backbone "
        f"{spec.name} is {spec.default_weights}, of image_size {spec.image_size}{what}: the "
        f"same architecture, another checkpoint with other features; pass the folder of "
        f"{spec.default_weights} (or no backbone weights, for the official ones), or set "
        f"{ANY_IMAGE_SIZE_ENV}=1 to run this one as {spec.name} all the same"
    )


# every backbone registered once the package is imported, so that loftup.FEATURIZERS lists them
# before any lookup (the family modules import no backbone library: transformers loads on use)
for _module in _FAMILY_MODULES:
    importlib.import_module(_module)
