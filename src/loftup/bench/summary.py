"""A suite's report as text: the figures the issues ask for, one per line, and the targets."""

from __future__ import annotations

from .table import fmt_dev
from .targets import format_targets, section_rows, targets


def summary(report: dict) -> str:
    """The figures the issues ask for, one per line."""
    sec = report["sections"]
    lines = [
        f"suite {report['suite']} on {report['machine'].get('gpu') or report['machine']['processor']}"
    ]
    for key, value in sec.items():
        if isinstance(value, dict) and "error" in value:
            lines.append(f"  {key}: FAILED {value['error']}")
        if isinstance(value, dict) and "incomplete" in value:  # its rows so far, saved
            lines.append(f"  {key}: {value['incomplete']} (the rows it finished are kept)")
        for f in value.get("failed", []) if isinstance(value, dict) else []:  # one case, one size
            case = " ".join(str(v) for k, v in f.items() if k != "error")
            lines.append(f"  {key}: {case} FAILED {f['error']}")
    fwd = sec.get("forward", {})
    if "results" in fwd:
        by = {(r["method"], r["dtype"], r["size"]): r for r in fwd["results"]}
        for (method, dt, size), r in sorted(
            by.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])
        ):
            if method not in ("loftup", "loftup_graph"):
                continue
            ref = by.get(("reference", dt, size)) or by.get(("reference", "float32", size))
            # in another precision than ours (none in ours, where it failed, say): said
            other = f" {ref['dtype']}" if ref and ref["dtype"] != dt else ""
            vs = (
                f", reference{other} {ref['best_s'] * 1e3:.1f} ms "
                f"({ref['best_s'] / r['best_s']:.1f}x)"
                if ref
                else ""
            )
            bil = by.get(("bilinear", "float32", size))
            # none where our float32 did not run there (failed): not a broken output's None
            key = "max_abs_dev_vs_float32"
            dev = fmt_dev(r[key]) if key in r else "-"
            lines.append(
                f"  {size:>5} {dt:<8} {method:<12} {r['best_s'] * 1e3:9.2f} ms, {r.get('gflops_per_s', 0):.0f} GFLOP/s, dev {dev}{vs}"
                + (f", bilinear {bil['best_s'] * 1e3:.2f} ms" if bil else "")
            )
    if isinstance(sec.get("parity"), dict) and "error" not in sec["parity"]:
        p = sec["parity"]
        lines.append(
            "  parity with CPU float32: "
            + ", ".join(
                f"{k} {fmt_dev(v['max_abs_dev'])}" for k, v in p.items() if isinstance(v, dict)
            )
        )
    for key in ("megapixels", "big_output", "batches", "ablation", "backbones"):
        for r in section_rows(sec.get(key)):
            lines.append(f"  {key}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in r.items()))
    for key in ("video", "compile", "capped_stream", "stream", "extraction"):
        v = sec.get(key)
        if isinstance(v, dict) and "error" not in v:
            lines.append(f"  {key}: " + ", ".join(f"{k}={_fmt(x)}" for k, x in v.items()))
    if report.get("suite") != "cpu":
        lines += ["the GPU issue's targets:", format_targets(targets(report))]
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
