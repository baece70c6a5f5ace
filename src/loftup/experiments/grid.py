"""``loftup experiment grid``: how far LoftUp stretches, from 4 x 4 to 32 x 32 grids and 2x to 32x.

One upsampler per seed is trained with the demo's two stages (at the demo's size: an 8 x 8 grid,
ratio 8) and applied unchanged to every cell (g, r) of :func:`~.grid_views.grid_cells`; each
cell's held-out views come from :mod:`.grid_views`. Per cell and seed, LoftUp, bilinear and
bicubic each get their own linear probe (the seed's), fitted on half the held-out images at the
output side and scored on the other half.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import UsageError
from ..world.demo import lowres_features
from . import plots
from .begun import check_begun
from .configs import Variant, check_configs
from .data import EvalSet, load_backbone, run_inputs, training_root, weights_fingerprint
from .folder_reads import FolderReads
from .grid_views import cell_views, grid_cells, render_scenes, render_side
from .report import Clock, header, provenance, write_report
from .runs import run_configs, run_variant
from .scoring import METRICS, score_upsampler
from .settings import GRIDS, RATIOS, ExperimentSettings
from .stats import fmt, fmt_verdict, summarize, verdict

LOFTUP = "LoftUp"
METHODS = (LOFTUP, "bilinear", "bicubic")
TITLE = "coarse grids and large ratios"
QUESTION = (
    "How far does LoftUp stretch? Low-resolution grids of 4, 8, 16 and 32 cells a side, "
    "upsampled 2x to 32x, against bilinear and bicubic upsampling of the same features."
)


def cell_name(g: int, r: int) -> str:
    return f"{g}x{g} -> {g * r} px ({r}x)"


def held_out_views(s: ExperimentSettings, cells, patch: int, featurizer) -> dict:
    """{(g, r): {"evalset", "guidance", "lr_feats"}} for every cell (renders shared per side)."""
    from ..data.scenes import SceneConfig
    from .grid_views import load_dataset_renders

    renders, views = {}, {}
    source = f"{s.eval_dataset} at {s.eval_root}" if s.eval_dataset else "rendered held-out scenes"
    for g, r in cells:
        side = render_side(g, r, patch)
        key = (side, side / (patch * g))
        if key not in renders:
            if s.eval_dataset:
                renders[key] = load_dataset_renders(s.eval_dataset, s.eval_root, side, s.eval_count)
            else:
                seed = s.demo(0).seed + 1  # the demo's held-out seed
                imgs, labs = render_scenes(SceneConfig(), seed, s.eval_count, side, key[1])
                renders[key] = (imgs, labs, SceneConfig().num_classes)
        images, labels, classes = renders[key]
        v = cell_views(images, labels, g, r, patch)
        _, lr = lowres_features(featurizer, v["backbone"])
        if lr.shape[-1] != g:
            raise UsageError(
                f"backbone {s.backbone} gave a {lr.shape[-1]}-cell grid for {patch * g} px "
                f"images, not {g} cells (one per {patch} px patch): the grid experiment needs "
                "a backbone whose grid follows the image size; choose another --backbone"
            )
        evalset = EvalSet(v["guidance"], v["labels"], classes, source)
        views[(g, r)] = {
            "evalset": evalset,
            "guidance": featurizer.normalize(v["guidance"]),
            "lr_feats": lr,
        }
    return views


def run_grid(s: ExperimentSettings, json_path: str | None = None) -> dict:
    from tqdm.auto import tqdm

    from ..bars import bar_settings
    from ..baselines import get_upsampler
    from ..hub import load_upsampler

    if s.eval_root and not s.eval_dataset:
        raise UsageError("grid renders its held-out scenes; give --eval-dataset with --eval-root")
    check_configs(s, [Variant(LOFTUP, stage2={})])  # before anything is written
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    t = time.perf_counter()
    featurizer = load_backbone(s)
    cells = grid_cells(GRIDS, RATIOS, s.max_side)
    train_root = training_root(s)
    backbone = weights_fingerprint(s.backbone, s.backbone_weights)
    inputs = run_inputs(backbone, train_root, s.masks, progress=s.progress)
    reads = FolderReads()  # each checkpoint loaded and hashed once in this start
    check_begun(s, [Variant(LOFTUP, stage2={})], train_root, out / "runs", inputs, reads)
    views = held_out_views(s, cells, featurizer.patch_size, featurizer)
    clock.add("shared", time.perf_counter() - t)

    variant = Variant(LOFTUP, stage2={})
    scores = {(m, c): {k: [] for k in METRICS} for m in METHODS for c in cells}
    histories, preds, configs = {}, {}, {}
    # closed on an error too: a failed run from Python left its bar on the terminal
    with tqdm(total=s.seeds * len(cells), desc="grid", **bar_settings(shown=s.progress)) as bar:
        for seed in range(s.seeds):
            t = time.perf_counter()
            runs = run_variant(s, variant, seed, train_root, out / "runs", inputs, reads)
            clock.add("training", time.perf_counter() - t)
            for stage, r in runs.items():
                histories.setdefault(stage, []).append(r.history)
            if seed == 0:
                configs = run_configs(runs, reads)
            fns = {LOFTUP: load_upsampler(runs["stage2"].pretrained).eval()}
            fns.update({m: get_upsampler(m) for m in METHODS[1:]})
            t = time.perf_counter()
            for cell in cells:
                v = views[cell]
                for m, fn in fns.items():
                    res = score_upsampler(
                        fn, v["lr_feats"], v["guidance"], v["evalset"], s.demo(seed)
                    )
                    for k in METRICS:
                        scores[(m, cell)][k].append(res[k])
                    if seed == 0:
                        preds[(m, cell)] = res["pred"][0]
                bar.update(1)
            clock.add("evaluation", time.perf_counter() - t)

    summary = {key: {k: summarize(v) for k, v in d.items()} for key, d in scores.items()}
    any_view = next(iter(views.values()))["evalset"]
    results = {"experiment": s.name, "question": QUESTION, **provenance(s, any_view, backbone)}
    # every cell scores the same images at its own side: the first cell's size ("size" of
    # provenance) described none of the others
    results["heldout"].update(images=s.eval_count, size=None)
    results["heldout"]["output_sides"] = sorted({g * r for g, r in cells})
    results["cells"] = [
        {"grid": g, "ratio": r, "output_side": g * r, "render_side": render_side(g, r,
         featurizer.patch_size), **{m: summary[(m, (g, r))] for m in METHODS}}
        for g, r in cells
    ]  # fmt: skip
    results["verdicts"] = {
        cell_name(*c): {
            base: {k: verdict(summary[(LOFTUP, c)][k], summary[(base, c)][k]) for k in METRICS}
            for base in METHODS[1:]
        }
        for c in cells
    }
    results["training_configs"] = configs
    results["curves"] = histories
    results["figures"] = [p.name for p in _figures(out, s, cells, summary, histories, views, preds)]
    results["clock"] = clock.record()
    md = [header(TITLE, QUESTION, results), "", _notes(s, featurizer.patch_size), ""]
    for k in ("miou", "boundary_f_2px"):
        md += [f"**{METRICS[k]}**", "", _table(cells, summary, k), ""]
    md += [f"![{p}]({p})" for p in results["figures"]]
    write_report(out, "\n".join(md), results, json_path)
    return results


def _table(cells, summary, key: str) -> str:
    head = ["cell", *METHODS, f"{LOFTUP} vs bilinear", f"{LOFTUP} vs bicubic"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        row = [cell_name(*c), *(fmt(summary[(m, c)][key]) for m in METHODS)]
        row += [fmt_verdict(verdict(summary[(LOFTUP, c)][key], summary[(b, c)][key]))
                for b in METHODS[1:]]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _notes(s: ExperimentSettings, patch: int) -> str:
    return (
        f"One LoftUp per seed, trained with both stages at {s.size} px (a {s.size // patch}-cell "
        f"grid, ratio {patch}), applied to every cell unchanged. A cell g x g -> O px: the "
        f"backbone sees the scene at {patch} g px, the upsampler is guided by the scene at O px "
        "and the probe is fitted and scored at O px; each scene is rendered once at max(p g, O) "
        "px with textures at the backbone's scale and resized from there (see "
        f"`loftup.experiments.grid_views`). Cells above {s.max_side} px are left out "
        "(--max-side)."
    )


def _figures(out, s, cells, summary, histories, views, preds) -> list[Path]:
    grids = sorted({g for g, _ in cells})
    paths = []
    for k, name in (("miou", "ratio_miou.png"), ("boundary_f_2px", "ratio_boundary.png")):
        by_method = {m: {c: summary[(m, c)][k] for c in cells} for m in METHODS}
        paths.append(plots.ratio_lines(out / name, by_method, grids, METRICS[k], TITLE))
    panels = {
        f"{stage}: total loss": {LOFTUP: [[row["loss"] for row in h] for h in hs]}
        for stage, hs in histories.items()
    }
    paths.append(plots.loss_curves(out / "loss_curves.png", panels, TITLE))
    shown = sorted(cells, key=lambda c: -c[0] * c[1])[:4]
    images = [views[c]["evalset"].images[len(views[c]["evalset"].images) // 2] for c in shown]
    labels = [views[c]["evalset"].labels[len(views[c]["evalset"].labels) // 2] for c in shown]
    per_method = {m: [preds[(m, c)] for c in shown] for m in METHODS}
    classes = views[shown[0]]["evalset"].classes
    rows = [cell_name(*c) for c in shown]
    paths.append(plots.examples(out / "examples.png", images, labels, per_method, classes,
                                rows=len(shown), row_titles=rows))  # fmt: skip
    rows = _bar_rows(cells, summary)
    grey = tuple(n for n in rows if not n.startswith(LOFTUP))
    paths.append(plots.bars(out / "bars.png", rows, {"miou": "mIoU"}, TITLE, baselines=grey,
                            method=bar_method))  # fmt: skip
    return paths


def bar_method(row: str) -> str:
    """The method of a bar row of :func:`_bar_rows` ("LoftUp 8x8 8x": LoftUp): one colour."""
    return row.split(" ")[0]


def _bar_rows(cells, summary) -> dict:
    """The largest-ratio cell of each grid, as bar rows "method @ cell"."""
    best = {}
    for g, r in cells:
        best[g] = max(best.get(g, r), r)
    return {
        f"{m} {g}x{g} {best[g]}x": summary[(m, (g, best[g]))] for g in sorted(best) for m in METHODS
    }
