"""The table of released checkpoints: one registry drives ``load_upsampler``, ``loftup info``,
``loftup download`` and the pairing of each upsampler with its backbone."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownNameError, UsageError, did_you_mean
from ..escaping import quoted
from ..model_config import LoftUpConfig


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """A checkpoint published with the paper."""

    name: str
    backbone: str
    dim: int
    grid: int
    repo_id: str
    filename: str = "pytorch_model.bin"
    description: str = ""

    @property
    def config(self) -> LoftUpConfig:
        """The architecture its file holds (method.md: every released checkpoint is depth 2,
        4 heads, 20 image and 5 grid frequencies, FFN width C, coordinates encoded): the
        config's defaults at its width."""
        return LoftUpConfig(dim=self.dim)


RELEASED: dict[str, ReleasedCheckpoint] = {
    c.name: c
    for c in [
        ReleasedCheckpoint(
            "loftup_dinov2s",
            "dinov2_vits14",
            384,
            16,
            "haiwen/loftup-dinov2s",
            description="DINOv2 ViT-S/14",
        ),
        ReleasedCheckpoint(
            "loftup_dinov2s_reg",
            "dinov2_vits14_reg",
            384,
            16,
            "haiwen/loftup-dinov2s_reg",
            description="DINOv2 ViT-S/14 + registers",
        ),
        ReleasedCheckpoint(
            "loftup_dinov2b",
            "dinov2_vitb14",
            768,
            16,
            "haiwen/loftup-dinov2b",
            description="DINOv2 ViT-B/14",
        ),
        ReleasedCheckpoint(
            "loftup_dinov2b_reg",
            "dinov2_vitb14_reg",
            768,
            16,
            "haiwen/loftup-dinov2b_reg",
            description="DINOv2 ViT-B/14 + registers",
        ),
        ReleasedCheckpoint(
            "loftup_clip",
            "clip_vitb16",
            512,
            14,
            "haiwen/loftup-clip",
            description="CLIP ViT-B/16 (OpenAI), MaskCLIP-style tokens",
        ),
        ReleasedCheckpoint(
            "loftup_siglip",
            "siglip_vitb16",
            768,
            14,
            "haiwen/loftup-siglip",
            description="SigLIP ViT-B/16",
        ),
        ReleasedCheckpoint(
            "loftup_siglip2",
            "siglip2_vitb16",
            768,
            14,
            "haiwen/loftup-siglip2",
            description="SigLIP2 ViT-B/16",
        ),
    ]
}

#: Other spellings users type, mapped to the registry's names (kept forever).
ALIASES = {name.replace("_", "-"): name for name in RELEASED}


def revision_refusal(name: str, names=()) -> UsageError | None:
    """The error for ``name`` written NAME@REV where NAME is a released upsampler (or an alias)
    or one of ``names`` (backbones, SAM): their files are fixed, revisions are for hub ids of
    one's own; None otherwise."""
    base, at, _ = name.partition("@")
    if at and (ALIASES.get(base, base) in RELEASED or base in names):
        return UsageError(
            f"{quoted(name)}: {base} is a registered name, whose files are fixed: pass {base} "
            "without "
            "@REV (a revision is for the hub id ORG/NAME@REV of a repo of your own)"
        )
    return None


def resolve_name(name: str) -> ReleasedCheckpoint:
    """The registry entry for ``name`` (or an alias); UnknownNameError lists the known ones."""
    key = ALIASES.get(name, name)
    refusal = revision_refusal(name)
    if refusal is not None:
        raise refusal
    if key not in RELEASED:
        raise UnknownNameError(
            f"unknown upsampler {quoted(name)}{did_you_mean(name, RELEASED)}; released names are: "
            f"{', '.join(RELEASED)} "
            "(or pass a path to a weights file or a save_pretrained folder, or the hub id "
            "ORG/NAME of one)"
        )
    return RELEASED[key]
