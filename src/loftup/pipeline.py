"""A backbone and the upsampler trained on its features, run together: :class:`FeaturePipeline`
and :func:`load_pipeline`, which builds one from names, files or modules.

Precision: ``dtype`` (float32 by default, the reference's numbers) runs the backbone and the
upsampler in bfloat16 or float16 instead (the GPU's fast path: about 4x float32 on an H200).
The guidance image stays float32 whatever the precision: the Fourier encoding multiplies the
colours by up to e^10, so a half-precision image would turn its rounding into phase noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from .checks import (
    Size,
    backbone_input,
    check_images,
    shown,
)
from .early_start import start_upsample
from .errors import UsageError, WeightsNotFoundError
from .featurizers import Featurizer, get_featurizer, imagenet_normalize
from .featurizers.sizes import resize_images
from .hub import check_source, load_upsampler
from .image_input import PIXEL_MAX
from .input_checks import require_eval
from .mismatch import (  # noqa: F401  (BackboneMismatchWarning: importable from here)
    BackboneMismatchWarning,
    _warn_if_other_backbone,
    _warn_if_other_norm,
    refuse_other_width,
    warn_if_own_weights,
)
from .model import LoftUp
from .pipeline_checks import (  # (checked_options: importable from here too)
    check_backbone_name,
    check_backbone_recorded,
    check_passed_backbone,
    checked_options,
    require_eval_backbone,
    run_device,
    with_missing_backbone,
)
from .pipeline_placement import (
    Placements,
    check_meta,
    check_placement,
    placement,
    register,
    warn_if_converted_under,
)
from .stops import first


@dataclass
class FeaturePipeline:
    """A backbone and the upsampler trained on its features.

    Arguments:
      upsampler: a :class:`loftup.LoftUp` (from :func:`loftup.load_upsampler`).
      featurizer: the backbone whose features it upsamples (:func:`loftup.get_featurizer`).
      backbone_size: shorter side of the image the backbone sees (None: the image's own size).

    Both models run in their own dtype (:func:`load_pipeline` sets it); the guidance image is
    always float32 and the features come out in the upsampler's dtype.
    """

    upsampler: LoftUp
    featurizer: Featurizer
    backbone_size: int | None = 224
    #: where the two models were as last checked (:func:`check_placement`)
    _placed: Placements | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._placed = Placements.of(self.upsampler, self.featurizer)
        register(self)

    def __setstate__(self, state: dict) -> None:
        """Unpickled or deep-copied: a live pipeline too (:func:`register`)."""
        self.__dict__.update(state)
        register(self)

    @property
    def device(self) -> torch.device:
        return first(self.upsampler.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The upsampler's dtype: that of the features it returns."""
        return first(self.upsampler.parameters()).dtype

    # no_grad, not inference_mode: inference tensors cannot be changed in place or saved for
    # a backward outside it (features normalised in place, a probe trained on them)
    @torch.no_grad()
    def __call__(
        self, images: torch.Tensor, size: Size = None, *, callback=None, progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """RGB images (B, 3, H0, W0) in [0, 1] (or uint8, 0-255) -> (low-res (B, C, h, w),
        upsampled (B, C, H, W)).

        ``callback``: ``fn(tile, feats)`` gets the upsampled features tile by tile instead
        (``feats`` (b, C, th, tw) on the device for images ``tile.batch``, rows ``tile.rows``,
        columns ``tile.cols``; see :func:`loftup.tiling.upsample`) and None is returned in
        their place: features of any size in the memory of one tile, the same values.
        ``progress``: a bar over the tiles of an output of several.

        Both models must be in eval mode (:func:`load_pipeline` puts them there; a training
        loop that goes on training the upsampler calls ``.train()`` again): an upsampler in
        training mode normalises by the batch's statistics and changes its running ones, a
        backbone is refused in training mode where that changes its output (dropout, DropPath,
        batch norm); either is a :class:`UsageError`.
        """
        why = (
            ", depends on the images batched together, and each call changes its running statistics"
        )
        require_eval(self.upsampler, "a FeaturePipeline", why, name="pipeline.upsampler")
        require_eval_backbone(self.featurizer)
        check_placement(self)
        if not isinstance(images, torch.Tensor):  # an array's shape passed check_batch
            raise UsageError(
                f"a pipeline takes a (B, 3, H, W) tensor, got {shown(images)}; for a path, a "
                "PIL image or an array use loftup.upsample(image, model=pipeline)"
            )
        # both sizes checked before any work (tile by tile, the output is not held whole)
        out_hw = check_images(images, size, streamed=callback is not None)
        h0, w0 = images.shape[-2:]
        bb_hw = backbone_input(h0, w0, self.featurizer.patch_size, self.backbone_size)
        x = images.to(self.device, torch.float32)
        if images.dtype in PIXEL_MAX:  # as upsample reads them, and check_pixels advises
            x = x / PIXEL_MAX[images.dtype]
        guide = _normalized(x, out_hw)
        # the image's half of the upsampler first: on a GPU it runs while the backbone's
        # kernels are being launched (the same output as self.upsampler(lr_feats, guide))
        try:
            pending = start_upsample(self.upsampler, guide)
            lr_feats = self.featurizer(_normalized(x, bb_hw))
            return lr_feats, pending.finish(lr_feats, callback=callback, progress=progress)
        except Exception:  # a submodule moved to meta since the last call (check_placement
            check_meta(self)  # sees no such move): its refusal, not the mismatch it gave
            raise


def _normalized(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``imagenet_normalize(resize_images(x, size))``, the same values, with one tensor of that
    size made instead of two or three: a resized copy is normalised in place (``x`` itself,
    the caller's at its own size, is copied once): 137 MB less for a 12-megapixel photo's
    guide while it is made."""
    resized = resize_images(x, size)
    return imagenet_normalize(resized, inplace=resized is not x)


def load_pipeline(
    model: str | os.PathLike | LoftUp = "loftup_dinov2s",
    *,
    backbone: str | Featurizer | None = None,
    backbone_weights: str | os.PathLike | None = None,
    backbone_size: int | None = 224,
    backbone_norm: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> FeaturePipeline:
    """The upsampler ``model`` with its backbone: a LoftUp, or what
    :func:`loftup.load_upsampler` reads (a file or folder, a released name, or the hub id
    ``ORG/NAME[@REVISION]`` of a ``save_pretrained`` folder pushed to the hub).

    The backbone is ``backbone`` when given, else the one the upsampler records (every released
    name does, and so does a ``save_pretrained`` folder, local or on the hub);
    ``backbone_weights`` is a hub id or a
    local Hugging Face folder (default: the backbone's official hub id). A ``backbone`` other
    than the one the upsampler records runs (of its width; another is an error) with a
    :class:`BackboneMismatchWarning`, once per pairing. ``backbone_norm``:
    what a backbone trained with other constants than ImageNet's (CLIP, SigLIP) is given,
    "imagenet" (the ImageNet-normalised image as it is, as the paper's code gives it: the
    features the released upsamplers were trained on) or "own" (its own normalisation; see
    :func:`loftup.get_featurizer`'s ``input_norm``); None: what the upsampler records (its
    training run's), else "imagenet". It applies to a backbone built here: beside a Featurizer
    passed in, one other than its own is a :class:`UsageError`, as are any ``backbone_weights``.

    ``device``: where both models run (see :func:`resolve_device`). None: where a LoftUp or a
    featurizer passed in already is (two on different devices are a :class:`UsageError`), else
    the auto device (CUDA when available) for what is loaded here.
    ``dtype``: the precision of both models (float32, bfloat16 or float16; see
    :func:`as_dtype`). None: float32 for what is loaded here; a module passed in keeps its own.
    On the CPU, bfloat16 has fast kernels and float16 does not (it runs, slowly).

    A LoftUp or a featurizer passed in is changed in place, not copied: moved to ``device`` and
    converted to ``dtype`` where those are given, and put in eval mode (call ``.train()`` on a
    model you go on training; the pipeline refuses an upsampler in training mode, and a backbone
    whose output depends on it, until ``.eval()``). Both models of a pipeline built earlier,
    converted so, are converted under it too: a warning says so.
    """
    check_model(model)
    options = checked_options(backbone_size, backbone_norm, device, dtype)
    return build_pipeline(model, backbone, backbone_weights, *options)


def check_model(model, also: tuple[str, ...] = ("a LoftUp",)) -> None:
    """A one-line :class:`UsageError` unless ``model`` is a LoftUp, a released name, a
    weights path or a hub id (``also``: what else the caller takes), saying where a backbone
    or a pipeline passed as ``model`` goes instead, and naming a module or tensor in a few
    words."""
    if isinstance(model, (str, os.PathLike, LoftUp)):
        return
    if isinstance(model, Featurizer):
        raise UsageError(
            f"model is the upsampler, got the backbone {model.name} ({shown(model)}); pass it "
            "as backbone=, and as model the upsampler (a released name, weights, a LoftUp)"
        )
    if isinstance(model, FeaturePipeline):
        raise UsageError(
            "model is the upsampler, got a FeaturePipeline, which is built already: run it as "
            "it is, pipeline(images), or upsample(image, model=pipeline)"
        )
    check_source(model, "model", also)  # a module or a tensor in a few words, as shown() has it


def build_pipeline(
    model: str | os.PathLike | LoftUp,
    backbone: str | Featurizer | None,
    backbone_weights: str | os.PathLike | None,
    backbone_size: int | None,
    backbone_norm: str | None,
    device: torch.device | None,
    dtype: torch.dtype | None,
    *,
    fits=None,
) -> FeaturePipeline:
    """:func:`load_pipeline` of arguments checked already (by :func:`checked_options`, and
    ``model`` a LoftUp or a name or path): for a caller that checks them at its own boundary
    (:func:`loftup.upsample`, the command line), so that each is checked once. The models are
    built on the CPU and moved to ``device`` in ``dtype`` in one step (``device`` None: see
    :func:`run_device`). ``fits``: the caller's own refusal of what depends on the backbone (an
    image's patches), ``fits(featurizer)``, run before a module passed in is converted."""
    # a typo said first, not inside the upsampler's missing file
    check_backbone_name(backbone, model)
    check_passed_backbone(backbone, backbone_weights, backbone_norm)
    device = run_device(device, model, backbone)
    # every refusal before any conversion: a module passed in is converted in place, and one
    # refused after it would have lost its float32 weights to the rounding
    if isinstance(model, LoftUp):
        upsampler = model
    else:
        upsampler = read_upsampler(model, backbone, backbone_weights)
    if isinstance(backbone, Featurizer):
        featurizer = backbone
    else:
        featurizer = named_featurizer(upsampler, backbone, backbone_weights, backbone_norm)
    refuse_other_width(upsampler, featurizer, backbone_weights)
    if fits is not None:
        fits(featurizer)
    before = (placement(upsampler), placement(featurizer))
    # what is loaded here in float32 unless dtype says otherwise; a module passed in keeps its own
    upsampler = upsampler.to(device, dtype or (None if upsampler is model else torch.float32))
    upsampler = upsampler.eval()
    featurizer = featurizer.to(device, dtype or (None if featurizer is backbone else torch.float32))
    featurizer = featurizer.eval()
    if upsampler is model and featurizer is backbone:  # both another pipeline's, maybe
        warn_if_converted_under(upsampler, featurizer, before)
    if backbone is not None:
        _warn_if_other_backbone(upsampler, featurizer.name)
    _warn_if_other_norm(upsampler, featurizer)
    return FeaturePipeline(upsampler, featurizer, backbone_size)


def named_featurizer(
    upsampler: LoftUp, backbone: str | None, backbone_weights, backbone_norm, said_as=None
):
    """The backbone named ``backbone``, else the one ``upsampler`` records (an error where it
    records none, :func:`check_backbone_recorded`, worded as ``said_as`` says), built on the
    CPU in float32 with the normalisation ``backbone_norm``, else the upsampler's: what
    :func:`build_pipeline` runs, for a caller that needs it before the pipeline is built
    (:func:`loftup.extract.upsample_folder` records it first)."""
    check_backbone_recorded(upsampler, backbone, said_as)
    name = backbone or upsampler.backbone
    warn_if_own_weights(upsampler, name, backbone_weights)  # trained on fine-tuned weights
    norm = backbone_norm or getattr(upsampler, "backbone_norm", None) or "imagenet"
    return get_featurizer(name, weights=backbone_weights, input_norm=norm)


def read_upsampler(model: str | os.PathLike, backbone, backbone_weights) -> LoftUp:
    """:func:`loftup.load_upsampler` of ``model`` (on the CPU, in float32), weights not found
    said with the backbone's where those are missing too (:func:`with_missing_backbone`): what
    :func:`build_pipeline` loads, for a caller that needs the module before it is built (its
    digest as loaded, :func:`loftup.extract.upsample_folder`) and passes it in."""
    try:
        return load_upsampler(model)
    except WeightsNotFoundError as e:
        raise with_missing_backbone(e, model, backbone, backbone_weights) from None
