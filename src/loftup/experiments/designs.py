"""The variant experiments: what each compares, its reference, its curves and its caveats.

Every design is a function of the resolved settings (some variants depend on the budget) that
returns a :class:`~loftup.experiments.variants.Design`. The reference is always the released
recipe; every other row is compared with it.
"""

from __future__ import annotations

from . import plots
from .configs import Variant
from .settings import ExperimentSettings
from .variants import Design, Panel


def coords(s: ExperimentSettings) -> Design:
    ref = "coords + colour (released)"
    return Design(
        title="coordinate encoding",
        question="Does LoftUp need the pixel coordinates in its image encoding, or do the "
        "colours (with the low-resolution grid's own positional encoding) suffice?",
        variants=[Variant(ref), Variant("colour only", {"model": {"coords": False}})],
        reference=ref,
        panels=[
            Panel("stage 1: total loss", "stage1", "loss", {ref: ref, "colour only": "colour only"})
        ],
        notes="Stage 1 only (the architecture is fixed before stage 2, which keeps it). Without "
        "coordinates a query pixel still reaches the low-resolution tokens through their "
        "positional encoding, but cannot say where it is itself; only its colour and the 3x3 "
        "stem's neighbourhood place it.",
    )


def attention(s: ExperimentSettings) -> Design:
    ref = "global (released)"
    variants = [Variant(ref)]
    variants += [Variant(f"local k={k}", {"model": {"attention_window": k}}) for k in (3, 5)]
    lines = {v.name: v.name for v in variants}
    return Design(
        title="global vs local cross-attention",
        question="Does every pixel need to attend to all low-resolution tokens (the paper's "
        "global cross-attention), or do the k x k tokens nearest it suffice?",
        variants=variants,
        reference=ref,
        panels=[Panel("stage 1: total loss", "stage1", "loss", lines)],
        notes="Stage 1 only. At the training size (an 8 x 8 grid at 64 px) a 5 x 5 window "
        "already covers most of the grid, so the question is sharper at larger grids; run "
        "with a larger --size (and more time) to ask it there. The local window is centred "
        "on the pixel's own cell and shifted to stay inside the grid.",
    )


def stages(s: ExperimentSettings) -> Design:
    s1, s2 = s.stage1_steps, s.stage2_steps
    both, one, longer = "stage 1 + 2 (released)", "stage 1 only", f"stage 1 for {s1 + s2} steps"
    return Design(
        title="does stage 2 earn its cost?",
        question="Stage 2 (self-distillation from an EMA teacher on zoomed crops) costs another "
        "training run. Is the upsampler after stage 2 better than after stage 1 alone, and "
        "better than stage 1 trained for as many steps as both stages together?",
        variants=[
            Variant(both, stage2={}, stage1_run="stage1"),
            Variant(one, stage1_run="stage1"),
            Variant(longer, stage1_run="stage1_longer", stage1_steps=s1 + s2, continues="stage1"),
        ],
        reference=both,
        panels=[
            Panel(
                "stage 1: total loss", "stage1", "loss", {f"stage 1 ({s1} + {s2} steps)": longer}
            ),
            Panel("stage 2: total loss", "stage2", "loss", {"stage 2": both}),
            Panel("stage 2: affinity (distillation) term", "stage2", "affinity", {"stage 2": both}),
        ],
        notes=f"Stage 2 starts from the same stage-1 run ({s1} steps) as 'stage 1 only'; the "
        f"longer control continues that run to {s1 + s2} steps, so it matches stage 2 in steps "
        "(a stage-2 step costs about 1.3 stage-1 steps in time). Losses of the two stages "
        "differ in their terms and are not comparable with each other.",
    )


def mask_noise(s: ExperimentSettings) -> Design:
    ref = "clean masks"
    kinds, levels = s.noise_kinds, s.noise_levels
    variants = [Variant(ref)]
    for kind in kinds:
        variants += [Variant(f"{kind} {lv:g}", {"mask_noise": {kind: lv}}) for lv in levels]
    panels = []
    for key, what in (("loss", "total loss"), ("rec", "reconstruction term")):
        for kind in kinds:
            lines = {"0 (clean)": ref, **{f"{lv:g}": f"{kind} {lv:g}" for lv in levels}}
            panels.append(Panel(f"{kind}: {what}", "stage1", key, lines))
    return Design(
        title="stage 1 with noisy masks",
        question="How does stage 1 degrade, in its final scores and in how fast it converges, "
        "when its masks are poor: boundaries eroded or dilated, masks dropped, neighbours "
        f"merged, false-positive blobs added (each kind alone, at level{'s' * (len(levels) > 1)} "
        f"{_in_words([f'{lv:g}' for lv in levels])})?",
        variants=variants,
        reference=ref,
        panels=panels,
        notes="Stage 1 only (the masks shape stage 1's mask-bicubic target; stage 2 uses masks "
        "too, but the question is the recipe's first stage). Levels as in "
        "`loftup.train.noise`: erode/dilate move every boundary by round(level x 5% of the "
        "image side) px (3 px at 64 px); drop removes each mask with probability level; merge "
        "unites each mask with its most-touching neighbour with probability level; blobs adds "
        "level x K random ellipses. The total loss contains the target term, which noisy "
        "targets raise by themselves; the reconstruction term (second row of the curves) is "
        "the one comparable across levels.",
        extra=lambda out, rows, design: _noise_levels(out, rows, design, kinds, levels),
        shown=(ref, *(f"{kind} {max(levels):g}" for kind in kinds)),
        curve_columns=len(kinds),  # a row per loss term, as the notes say
    )


def _in_words(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def _noise_levels(out, rows, design, kinds, levels) -> list:
    ref = design.reference
    cells = {
        kind: {0.0: rows[ref]["miou"], **{lv: rows[f"{kind} {lv:g}"]["miou"] for lv in levels}}
        for kind in kinds
    }
    return [plots.level_lines(out / "levels.png", cells, "mIoU", "stage-1 mIoU against mask noise")]


def distill_view(s: ExperimentSettings) -> Design:
    views = {"crops (released)": "crops", "full image": "full", "both": "both"}
    variants = [
        Variant(name, stage2={"stage2": {"teacher_view": view}}, stage1_run="stage1")
        for name, view in views.items()
    ]
    lines = {v.name: v.name for v in variants}
    return Design(
        title="the stage-2 teacher's view",
        question="Does distilling from zoomed crops (the paper) lose global context compared "
        "with a teacher on the full image, or with both? Scored separately on small and on "
        "large regions.",
        variants=variants,
        reference="crops (released)",
        panels=[
            Panel("stage 2: total loss", "stage2", "loss", lines),
            Panel("stage 2: affinity (distillation) term", "stage2", "affinity", lines),
        ],
        regions=True,
        notes="All three start from one shared stage-1 run per seed. 'full image': the teacher "
        "sees the student's own global view (the same resolution, no zoom) and its output, "
        "mask-adjusted, is compared at the same affinity size as a crop's; 'both': the mean of "
        "the two losses. Small regions: connected components of one class smaller than 4 "
        "backbone patches (2 x 2 patches could cover them), large: the rest (see "
        "`loftup.experiments.scoring`).",
    )


DESIGNS = {
    "coords": coords,
    "attention": attention,
    "stages": stages,
    "mask-noise": mask_noise,
    "distill-view": distill_view,
}
