"""Stage 2's affinity loss, checked against the sizes it is given: at least two positions to
compare in the smallest global view (:func:`check_affinity_positions`)."""

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
