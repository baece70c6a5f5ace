"""The experiments' PNG figures: bars with error bars, loss curves, example predictions, grids.

Inputs are plain numbers (summaries from :mod:`.stats`, per-seed loss lists) and CPU tensors;
every function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..eval.figures import _grid, _plt, _save, colourise

BASELINE_COLOUR = "0.6"


def bar_colours(names, baselines: tuple = (), method=None) -> list:
    """A colour per bar: grey for ``baselines``, else one of tab10 per method (``method(name)``;
    default: each name its own), so that one method's bars share a colour."""
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    method = method or (lambda name: name)
    order: dict = {}
    for n in names:
        if n not in baselines:
            order.setdefault(method(n), len(order))
    return [BASELINE_COLOUR if n in baselines else palette(order[method(n)] % 10) for n in names]


def bars(path, rows: dict, metrics: dict, title: str, baselines: tuple = (), method=None) -> Path:
    """One panel per metric: a bar per row (mean, error bar: std over seeds).

    ``rows``: {name: {metric: summary}}; ``metrics``: {key: title}; rows in ``baselines`` grey;
    ``method``: see :func:`bar_colours`.
    """
    plt = _plt()
    keys = [m for m in metrics if any(m in r for r in rows.values())]
    width = max(3.0, 0.45 * len(rows) + 1.0)
    cols = 1 if len(rows) > 8 else min(3, len(keys))  # many bars: one metric per line
    lines = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(width * cols, 3.5 * lines), squeeze=False)
    axes = axes.ravel()
    for ax in axes[len(keys) :]:
        ax.axis("off")
    for ax, key in zip(axes, keys):
        names = [n for n in rows if key in rows[n]]
        means = [rows[n][key]["mean"] for n in names]
        stds = [0.0 if math.isnan(rows[n][key]["std"]) else rows[n][key]["std"] for n in names]
        colours = bar_colours(names, baselines, method)
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=colours)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(metrics[key], fontsize=9)
        finite = [m for m in means if math.isfinite(m)]
        if finite:
            lo = min(m - s for m, s in zip(means, stds) if math.isfinite(m))
            hi = max(m + s for m, s in zip(means, stds) if math.isfinite(m))
            pad = 0.15 * max(hi - lo, 0.01)
            ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) if hi <= 1 else hi + pad)
    fig.suptitle(title, fontsize=10)
    return _save(fig, plt, path)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = [values[: i + 1].mean() for i in range(window - 1)]
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def seed_band(seeds: list) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean, sample std, steps) over seeds of per-step losses, smoothed, cut to the shortest
    run: the band's spread is the tables' (ddof 1; 0 for one seed), not numpy's default."""
    length = min(len(x) for x in seeds)
    window = max(1, length // 20)
    runs = np.stack([_smooth(np.asarray(x[:length], float), window) for x in seeds])
    std = runs.std(0, ddof=1) if len(runs) > 1 else np.zeros(length)
    return runs.mean(0), std, length


def loss_curves(path, panels: dict, title: str, cols: int | None = None) -> Path:
    """Mean over seeds (line) and its sample std (band) of per-step losses, smoothed.

    ``panels``: {panel title: {line name: [per-seed list of losses]}}; ``cols``: panels a row
    (default: up to 3).
    """
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    n = len(panels)
    cols = min(cols or 3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (panel, lines) in zip(axes.flat, panels.items()):
        longest = 0
        for name, seeds in lines.items():
            if min(len(x) for x in seeds) == 0:
                continue
            mean, std, length = seed_band(seeds)
            steps = np.arange(1, length + 1)
            # one step (a stage-2 run of one): a line of one point draws nothing, a dot does
            dot = {"marker": "o", "ms": 5} if length == 1 else {}
            (line,) = ax.plot(steps, mean, label=name, lw=1.2, **dot)
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            longest = max(longest, length)
        if longest <= 10:  # steps are whole: no "step 1.5" (nor 0.96 around a single one)
            ax.set_xticks(range(1, longest + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, plt, path)


def examples(
    path, images, labels, preds: dict, classes: int, rows: int = 3, row_titles=None
) -> Path:
    """Per row: image | labels | each entry of ``preds`` ({name: (N, H, W) probe labels}).

    ``images`` (N, 3, H, W), ``labels`` (N, H, W), or lists of such items of different sizes;
    ``row_titles``: a title per row (shown over its image).
    """
    plt = _plt()
    rows = min(rows, len(images))
    fig, axes = _grid(rows, 2 + len(preds), plt)
    for r in range(rows):
        panels = [("image", images[r].permute(1, 2, 0).clamp(0, 1).numpy())]
        panels.append(("labels", colourise(labels[r], classes)))
        panels += [(name, colourise(p[r], classes)) for name, p in preds.items()]
        for c, (name, arr) in enumerate(panels):
            axes[r, c].imshow(arr, interpolation="nearest")
            if r == 0 or row_titles:
                title = f"{row_titles[r]}: {name}" if row_titles and c == 0 else name
                axes[r, c].set_title(title, fontsize=8)
    return _save(fig, plt, path)


def ratio_lines(path, cells: dict, grids, metric_title: str, title: str) -> Path:
    """One panel per grid: the metric against the upsampling ratio, a line per method.

    ``cells``: {method: {(grid, ratio): summary}}.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(grids), figsize=(3.6 * len(grids), 3.2), squeeze=False)
    for ax, g in zip(axes[0], grids):
        for method, by_cell in cells.items():
            pts = sorted((r, s) for (gg, r), s in by_cell.items() if gg == g)
            if not pts:
                continue
            x = [r for r, _ in pts]
            y = [s["mean"] for _, s in pts]
            e = [0.0 if math.isnan(s["std"]) else s["std"] for _, s in pts]
            ax.errorbar(x, y, yerr=e, marker="o", ms=3, capsize=3, label=method, lw=1.2)
        ax.set_xscale("log", base=2)
        ratios = sorted({r for by_cell in cells.values() for (gg, r) in by_cell if gg == g})
        ax.set_xticks(ratios, [f"{r}x" for r in ratios])
        ax.minorticks_off()
        ax.set_title(f"{g} x {g} grid", fontsize=9)
        ax.set_xlabel("upsampling ratio", fontsize=8)
        ax.set_ylabel(metric_title, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, plt, path)


def level_lines(path, cells: dict, metric_title: str, title: str) -> Path:
    """The metric against a level in [0, 1], a line per kind: ``cells`` {kind: {level: summary}}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for kind, by_level in cells.items():
        pts = sorted(by_level.items())
        e = [0.0 if math.isnan(s["std"]) else s["std"] for _, s in pts]
        ax.errorbar([lv for lv, _ in pts], [s["mean"] for _, s in pts], yerr=e, marker="o",
                    ms=3, capsize=3, label=kind, lw=1.2)  # fmt: skip
    ax.set_xlabel("noise level", fontsize=8)
    ax.set_ylabel(metric_title, fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return _save(fig, plt, path)
