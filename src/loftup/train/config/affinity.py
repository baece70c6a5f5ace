"""Stage 2's views, checked against the sizes they are given: at least two positions for the
affinity loss to compare in the smallest global view (:func:`check_affinity_positions`), and
room for the teacher's crops to move (:func:`check_crop_room`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import UsageError

if TYPE_CHECKING:
    from .schema import TrainConfig


def check_affinity_positions(cfg: TrainConfig, smallest: int) -> None:
    """Stage 2's affinity loss compares the similarities among the positions of the central
    ``stage2.central`` of a region (a crop's footprint in the global view, at most
    ``stage2.affinity_max_side`` px): one position alone is similar to itself whatever the
    features, so a loss of 0 every step, which trained without the distillation without a word.
    The smallest global view gives the smallest region; a weight of 0 asks for no such loss."""
    from ..batches import region_side
    from ..losses import central_side

    s2 = cfg.stage2
    if s2.affinity_weight == 0:
        return
    region = region_side(smallest, s2.load_size)
    side = min(region, s2.affinity_max_side)
    if central_side(side, s2.central) >= 2:
        return
    # the fixes that would change it: the cap where it is what is small, else the region; a
    # larger central part where the side compared has two positions to give
    capped = s2.affinity_max_side < region
    fixes = (
        ["raise stage2.affinity_max_side"]
        if capped
        else ["raise the smallest of stage2.global_sizes or lower stage2.load_size"]
    )
    if central_side(side, 1.0) >= 2:
        fixes.append("raise stage2.central")
    compared = f", compared at {side} px (stage2.affinity_max_side)" if capped else ""
    raise UsageError(
        f"stage 2's affinity loss would be 0 at every step on the {smallest} px global view "
        f"(the smallest of stage2.global_sizes): the teacher's region there is {region} px "
        f"({smallest}^2 / stage2.load_size {s2.load_size}){compared}, whose central "
        f"stage2.central={s2.central:g} holds a single position; {', or '.join(fixes)} "
        "(stage2.affinity_weight=0 trains without it)"
    )


def check_crop_room(cfg: TrainConfig, sizes: list[int]) -> None:
    """A crop of ``size`` px is drawn at an offset in [0, load_size - size] rounded down to a
    multiple of ``stage2.crop_align``: where that room is some pixels but less than the
    alignment, every such crop sat at the top-left corner, the teacher seeing one part of
    every image, without a word. (No room at all, a crop of the whole image, is meant.)"""
    s2 = cfg.stage2
    for size in sorted(set(sizes)):
        room = s2.load_size - size
        if 0 < room < s2.crop_align:
            raise UsageError(
                f"stage 2's {size} px crops have {room} px of room in the {s2.load_size} px "
                f"image (stage2.load_size), less than stage2.crop_align={s2.crop_align}, so "
                f"every one would sit at the top-left corner; set stage2.crop_align to at most "
                f"{room}, or make stage2.load_size and stage2.global_sizes further apart"
            )
