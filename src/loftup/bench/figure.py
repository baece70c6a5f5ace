"""The forward table as a figure (matplotlib PNG): time and peak memory against the output side,
LoftUp in each precision next to bilinear/bicubic and the paper's implementation where timed.

:func:`forward_figure` draws a :func:`loftup.bench.forward.bench_forward` report,
:func:`suite_figure` a suite's ``forward`` and ``forward_4096`` sections as one.
"""

from __future__ import annotations

from pathlib import Path

#: inches at 100 dots per inch: a 1200 x 500 PNG
FIGSIZE, DPI = (12.0, 5.0), 100

_COLOURS = {"loftup": "C0", "loftup_graph": "C2", "reference": "C3",
            "bilinear": "0.55", "bicubic": "0.25"}  # fmt: skip
_STYLES = {"float32": "-", "tf32": ":", "bfloat16": "--", "float16": "-."}


#: The sections of a suite that its figure draws (a run of none of them draws no figure).
FIGURE_SECTIONS = ("forward", "forward_4096")


def is_bench_report(obj: dict) -> bool:
    """Whether ``obj`` (a JSON object) is a report ``loftup bench`` wrote, of a table or a
    suite: its ``machine`` records ``load_average_start``, as every report has since loftup
    bench first drew figures (an earlier version's figure beside one bears no mark)."""
    machine = obj.get("machine")
    return (
        isinstance(machine, dict)
        and "load_average_start" in machine
        and ("results" in obj or "sections" in obj)
    )


def suite_rows(report: dict) -> dict | None:
    """A suite report's forward sections (``forward``, ``forward_4096``; those that ran) as one
    forward-table report, or None where neither has rows."""
    sections = [report.get("sections", {}).get(k) for k in FIGURE_SECTIONS]
    ran = [s for s in sections if isinstance(s, dict) and s.get("results")]
    if not ran:
        return None
    return {
        "machine": ran[0]["machine"],
        "settings": ran[0]["settings"],
        "results": [r for s in ran for r in s["results"]],
        "failed": [f for s in ran for f in s.get("failed", [])],
    }


def suite_figure(report: dict, path) -> Path | None:
    """:func:`forward_figure` of a suite report's forward sections; None (nothing written)
    where none of them has rows (not run, or failed)."""
    table = suite_rows(report)
    if table is None:
        return None
    return forward_figure(table, path, title=f"loftup bench --suite {report.get('suite')}")


def forward_figure(report: dict, path, title: str = "loftup bench") -> Path:
    """Write the figure of ``report`` (a forward table) to ``path`` (PNG, atomically; a link
    named there stays one) and return the path: left, median time per call (ms, log scale);
    right, peak memory (MB, log scale; a case whose memory read 0 has no point there); against
    the output side, one line per method and precision."""
    from ..eval.figures import _plt
    from ..figure_mark import save_figure

    plt = _plt()
    fig, (t_ax, m_ax) = plt.subplots(1, 2, figsize=FIGSIZE, dpi=DPI)
    try:
        _draw(report, t_ax, m_ax)
        fig.suptitle(f"{title}: {_settings_line(report)}\n{_machine_line(report)}", fontsize=9)
        fig.tight_layout()
        path = Path(path)
        save_figure(fig, path, DPI, follow_links=True)  # marked loftup's
    finally:
        plt.close(fig)
    return path


def _draw(report: dict, t_ax, m_ax) -> None:
    lines: dict[tuple, list] = {}
    for r in report["results"]:
        lines.setdefault((r["method"], r.get("dtype", "float32")), []).append(r)
    sizes = sorted({r["size"] for r in report["results"]})
    order = list(_COLOURS) + list(_STYLES)
    for (method, dtype), rows in sorted(
        lines.items(), key=lambda kv: [_rank(order, k) for k in kv[0]]
    ):
        rows.sort(key=lambda r: r["size"])
        style = dict(color=_COLOURS.get(method, "C4"), linestyle=_STYLES.get(dtype, "-"),
                     marker="o", markersize=4, label=f"{method} {dtype}")  # fmt: skip
        t_ax.plot([r["size"] for r in rows], [r["median_s"] * 1e3 for r in rows], **style)
        mem = [
            (r["size"], r["peak_memory_bytes"] / 1e6) for r in rows if r["peak_memory_bytes"] > 0
        ]
        if mem:
            m_ax.plot(*zip(*mem), **style)
    for ax, label in ((t_ax, "median time per call (ms)"), (m_ax, "peak memory (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        if ax.lines:
            ax.set_yscale("log")
        ax.set_xlabel("output side (pixels)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    t_ax.legend(fontsize=7, ncol=2)
    failed = report.get("failed") or []
    if failed:
        said = "; ".join(f"{f['method']} {f['dtype']} {f['size']}" for f in failed[:6])
        more = f" and {len(failed) - 6} more" if len(failed) > 6 else ""
        t_ax.set_title(f"failed (no point): {said}{more}", fontsize=8, color="C3")


def _rank(order: list, name: str) -> tuple:
    return (order.index(name) if name in order else len(order), name)


def _settings_line(report: dict) -> str:
    s = report.get("settings", {})
    return f"C = {s.get('dim')}, grid {s.get('grid')}, batch {s.get('batch')}"


def _machine_line(report: dict) -> str:
    m = report.get("machine", {})
    load = [m.get("load_average_start"), m.get("load_average_end")]
    said = " -> ".join(f"{v[0]:.1f}" for v in load if v)  # over the last minute
    return (
        f"{m.get('gpu') or m.get('processor')}, {m.get('torch_threads')} threads, torch "
        f"{m.get('torch')}, {m.get('date')}" + (f", load {said}" if said else "")
    )
