"""Experiments that compare training variants: train each at every seed, probe it, tabulate.

One run of :func:`run_design`: the shared work first (scenes, held-out set, backbone features,
small-region map), then for each seed the baselines (bilinear, bicubic) and each variant's runs
(:mod:`.runs`) and probe scores (:mod:`.scoring`), then the report folder: ``report.md`` (table
with mean ± std over seeds, each row against the reference variant with the verdict of
:mod:`.stats`), ``results.json``, ``bars.png``, ``loss_curves.png`` (plus ``extra`` figures),
``examples.png`` (the seed-0 predictions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..world.demo import lowres_features
from . import plots
from .begun import check_begun
from .configs import Variant, check_configs
from .data import load_backbone, load_eval_set, run_inputs, training_root, weights_fingerprint
from .folder_reads import FolderReads
from .report import Clock, header, provenance, write_report
from .runs import run_configs, run_variant
from .scoring import METRICS, REGION_METRICS, score_upsampler, small_area, small_regions
from .settings import ExperimentSettings
from .stats import summarize, table, verdict

BASELINES = ("bilinear", "bicubic")


@dataclass(frozen=True)
class Panel:
    """One loss-curve panel: ``key`` of ``stage``'s history, a line per {label: variant}."""

    title: str
    stage: str
    key: str
    lines: dict


@dataclass
class Design:
    """What an experiment compares and how it shows it.

    Arguments:
      title, question: the report's heading and the question in one paragraph.
      variants: the arms; ``reference``: the name of the default one (the released recipe).
      panels: the loss-curve panels.
      regions: also score small and large regions (see :mod:`.scoring`).
      notes: what the design does and does not show (markdown, under the table).
      extra: ``fn(out, rows, design) -> [paths]`` for more figures.
      shown: the variants whose predictions ``examples.png`` shows (default: all).
      curve_columns: panels a row of ``loss_curves.png`` holds (default: up to 3).
    """

    title: str
    question: str
    variants: list[Variant]
    reference: str
    panels: list[Panel]
    regions: bool = False
    notes: str = ""
    extra: object = None
    shown: tuple = ()
    curve_columns: int | None = None


def run_design(s: ExperimentSettings, design: Design, json_path: str | None = None) -> dict:
    """Run every variant at every seed and write the report folder; returns the results."""
    from tqdm.auto import tqdm

    from ..bars import bar_settings
    from ..baselines import get_upsampler
    from ..hub import load_upsampler

    check_configs(s, design.variants)  # before anything is written
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    t = time.perf_counter()
    train_root = training_root(s)
    evalset = load_eval_set(s)
    featurizer = load_backbone(s)
    backbone = weights_fingerprint(s.backbone, s.backbone_weights)
    inputs = run_inputs(backbone, train_root, s.masks, progress=s.progress)
    reads = FolderReads()  # each checkpoint loaded and hashed once in this start
    check_begun(s, design.variants, train_root, out / "runs", inputs, reads)  # every seed's
    guidance, lr_feats = lowres_features(featurizer, evalset.images)
    side = evalset.images.shape[-1]
    metrics = dict(METRICS)
    small = None
    if design.regions:
        metrics.update(REGION_METRICS)
        small = small_regions(evalset.labels, small_area(featurizer.patch_size, side, side, 4))
    clock.add("shared", time.perf_counter() - t)

    names = [*(v.name for v in design.variants), *BASELINES]
    per_seed = {n: {m: [] for m in metrics} for n in names}
    histories = {v.name: {} for v in design.variants}
    configs = {}
    preds = {}
    # closed on an error too: a failed run from Python left its bar on the terminal
    with tqdm(total=s.seeds * len(names), desc=s.name, **bar_settings(shown=s.progress)) as bar:
        for seed in range(s.seeds):
            probe = s.demo(seed)
            for name in names:
                if name in BASELINES:
                    fn = get_upsampler(name)
                else:
                    v = next(v for v in design.variants if v.name == name)
                    runs = _train(s, v, seed, train_root, inputs, reads, out, clock, histories)
                    if seed == 0:
                        configs[name] = run_configs(runs, reads)
                    fn = load_upsampler(runs.get("stage2", runs["stage1"]).pretrained).eval()
                t = time.perf_counter()
                r = score_upsampler(fn, lr_feats, guidance, evalset, probe, small)
                clock.add("evaluation", time.perf_counter() - t)
                for m in metrics:
                    per_seed[name][m].append(r[m])
                if seed == 0:
                    preds[name] = r["pred"]
                bar.update(1)

    rows = {n: {m: summarize(per_seed[n][m]) for m in metrics} for n in names}
    results = {
        "experiment": s.name,
        "question": design.question,
        **provenance(s, evalset, backbone),
    }
    results["reference"] = design.reference
    results["rows"] = rows
    results["verdicts"] = {
        n: {m: verdict(rows[n][m], rows[design.reference][m]) for m in metrics}
        for n in names
        if n != design.reference
    }
    results["variants"] = {v.name: _describe(v) for v in design.variants}
    results["training_configs"] = configs
    results["curves"] = histories
    results["figures"] = [p.name for p in _figures(out, design, rows, metrics, histories,
                                                   evalset, preds)]  # fmt: skip
    results["clock"] = clock.record()
    md = [header(design.title, design.question, results), ""]
    md.append(table(rows, METRICS, design.reference, compare=("miou", "boundary_f_2px")))
    if design.regions:
        md += ["", table(rows, REGION_METRICS, design.reference, compare=tuple(REGION_METRICS))]
    md += ["", design.notes.strip(), ""]
    md += [f"![{p}]({p})" for p in results["figures"]]
    write_report(out, "\n".join(md), results, json_path)
    return results


def _train(s, v, seed, train_root, inputs, reads, out, clock, histories) -> dict:
    t = time.perf_counter()
    runs = run_variant(s, v, seed, train_root, out / "runs", inputs, reads)
    clock.add("training", time.perf_counter() - t)
    for stage, r in runs.items():
        histories[v.name].setdefault(stage, []).append(r.history)
    return runs


def _describe(v: Variant) -> dict:
    return {
        "stage1": v.stage1,
        "stage2": v.stage2,
        "stage1_run": v.run_key,
        "stage1_steps": v.stage1_steps,
        "continues": v.continues,
    }


def _figures(out, design, rows, metrics, histories, evalset, preds) -> list[Path]:
    paths = [plots.bars(out / "bars.png", rows, metrics, design.title, baselines=BASELINES)]
    panels = {}
    for p in design.panels:
        lines = {}
        for label, name in p.lines.items():
            seeds = histories[name].get(p.stage, [])
            series = [[row[p.key] for row in h if p.key in row] for h in seeds]
            if series and all(series):
                lines[label] = series
        panels[p.title] = lines
    curves = out / "loss_curves.png"
    paths.append(plots.loss_curves(curves, panels, design.title, cols=design.curve_columns))
    if design.extra is not None:
        paths += design.extra(out, rows, design)
    half = len(evalset.images) // 2
    keep = (*design.shown, *BASELINES) if design.shown else tuple(preds)
    preds = {n: p for n, p in preds.items() if n in keep}
    paths.append(
        plots.examples(
            out / "examples.png", evalset.images[half:], evalset.labels[half:], preds,
            evalset.classes,
        )
    )  # fmt: skip
    return paths
