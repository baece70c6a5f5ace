"""``loftup demo``'s report: the table, one sentence per learned stage, ``report.md``'s text
and the figure (image | labels | PCA of each upsampler's features | its probe's prediction).
"""

from __future__ import annotations

from pathlib import Path

from .config import DemoConfig


def write_figure(path: Path, images, labels, preds: dict, pcas: dict, classes: int, rows: int):
    """Per row: image | labels | then, per upsampler, its features' PCA and its probe's labels."""
    from ..eval.figures import _grid, _plt, _save, colourise

    plt = _plt()
    fig, axes = _grid(rows, 2 + 2 * len(preds), plt)
    for r in range(rows):
        panels = [("image", images[r].permute(1, 2, 0).numpy())]
        panels.append(("labels", colourise(labels[r], classes)))
        for name in preds:
            panels.append((f"{name} PCA", pcas[name][r].permute(1, 2, 0).numpy()))
            panels.append((f"{name} probe", colourise(preds[name][r], classes)))
        for c, (title, arr) in enumerate(panels):
            axes[r, c].imshow(arr, interpolation="nearest")
            if r == 0:
                axes[r, c].set_title(title, fontsize=9)
    return _save(fig, plt, path)


def markdown_table(results: dict) -> str:
    lines = [
        "| upsampler | mIoU | pixel accuracy | boundary F (2 px) |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['miou']:.3f} | {r['pixel_accuracy']:.3f} | {r['boundary_f_2px']:.3f} |"
        )
    return "\n".join(lines)


def verdict(results: dict) -> str:
    """One honest sentence per learned stage: its difference from bilinear and bicubic."""
    lines = []
    for name in ("stage1", "stage2"):
        r = results[name]
        parts = [
            f"{r[k] - results[base][k]:+.3f} {label} vs {base}"
            for base in ("bilinear", "bicubic")
            for k, label in (("miou", "mIoU"), ("boundary_f_2px", "boundary F"))
        ]
        lines.append(f"- {name}: " + ", ".join(parts))
    return "\n".join(lines)


def counted(count: int, word: str) -> str:
    """``count`` and ``word``, plural unless it is one ("1 step", "2 steps")."""
    return f"{count} {word}{'s' * (count != 1)}"


def report_markdown(
    cfg: DemoConfig, results: dict, scenes: int, seconds: dict, lost: bool = False
) -> str:
    """``report.md``: the settings in a sentence, the table, the verdict and the figure;
    ``lost``: a run of it lost seconds (killed outright), its time said as the least it was."""
    import torch

    threads = torch.get_num_threads()
    return (
        "# loftup demo\n\n"
        f"Held-out scenes: {scenes} at {cfg.size} px ({scenes // 2} fit the probes, the rest "
        f"score them); stage 1: {counted(cfg.stage1_steps, 'step')}, stage 2: "
        f"{counted(cfg.stage2_steps, 'step')} of batch {cfg.batch_size}; "
        f"{'at least ' * lost}{sum(seconds.values()):.0f} s in all on "
        f"{counted(threads, 'thread')}"
        f"{' (a run before this one lost some of its seconds: killed outright, or begun by an' * lost}"
        f"{' earlier loftup)' * lost}.\n\n"
        + markdown_table(results) + "\n\n" + verdict(results) + "\n\n![figure](figure.png)\n"
    )  # fmt: skip
