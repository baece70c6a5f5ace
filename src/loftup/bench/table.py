"""The forward table as fixed-width text, and the number formats the reports' text shares."""

from __future__ import annotations

import math


def format_table(report: dict) -> str:
    """The report as a fixed-width table."""
    lines = [
        f"{'method':<10} {'dtype':<9} {'size':>5} {'median':>10} {'best':>10} {'GFLOP/s':>8} "
        f"{'%peak':>6} {'peak mem':>9} {'max dev':>8}"
    ]
    for r in report["results"]:
        gf = f"{r['gflops_per_s']:.0f}" if "gflops_per_s" in r else ""
        frac = f"{100 * r['fraction_of_peak']:.0f}%" if "fraction_of_peak" in r else ""
        dev = fmt_dev(r["max_abs_dev_vs_float32"]) if "max_abs_dev_vs_float32" in r else ""
        lines.append(
            f"{r['method']:<10} {r.get('dtype', ''):<9} {r['size']:>5} {fmt_s(r['median_s']):>10} "
            f"{fmt_s(r['best_s']):>10} {gf:>8} {frac:>6} {r['peak_memory_bytes'] / 1e6:>7.0f}MB "
            f"{dev:>8}"
        )
    limit = report.get("settings", {}).get("reference_max_size")
    above = sorted(
        {r["size"] for r in report["results"] if limit is not None and r["size"] > limit}
    )
    if above:  # not a row that failed: one not asked for
        lines.append(
            f"# reference not timed at {', '.join(map(str, above))}: above --reference-max-size "
            f"{limit}"
        )
    if "float32" not in report.get("settings", {}).get("dtypes", ["float32"]):
        lines.append("# max dev: from our float32 output, not timed here (add float32 to --dtypes)")
    for f in report.get("failed", []):
        lines.append(f"# failed: {f['method']} {f['dtype']} {f['size']}: {f['error']}")
    if any(r.get("fraction_of_peak", 0) > 1 for r in report["results"]):
        lines.append(
            "# %peak over 100%: faster than the matrix product measured in that precision (the "
            "machine was busy then, or the CPU emulates it and the forward computes parts in "
            "float32)"
        )
    m = report["machine"]
    peaks = ", ".join(f"{k} {v:.3g}" for k, v in report.get("peak_gflops_per_s", {}).items())
    lines.append(
        f"# {m.get('gpu') or m['processor']}, {m['torch_threads']} threads, torch {m['torch']}, "
        f"{m['date']}" + (f"; matmul peak GFLOP/s: {peaks}" if peaks else "")
    )
    return "\n".join(lines)


def fmt_dev(d: float | None) -> str:
    """A deviation as text; ``None`` is how a stored report holds a NaN or an infinity (its
    JSON is strict), which is what a broken output gives."""
    return "not finite" if d is None or not math.isfinite(d) else f"{d:.1e}"


def fmt_s(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def format_stream(st: dict) -> str:
    """A :func:`loftup.bench.scale.bench_stream` result as one line."""
    gpu = st.get("peak_device_bytes")  # None on the CPU (and in reports before it was kept)
    return (
        f"stream {st['size']}x{st['size']}: {st['seconds']:.1f} s, "
        f"{st['file_bytes'] / 1e9:.1f} GB file, peak own memory "
        f"{st['peak_anon_memory_bytes'] / 1e9:.2f} GB"
        + (f", peak GPU memory {gpu / 1e9:.2f} GB" if gpu is not None else "")
    )
