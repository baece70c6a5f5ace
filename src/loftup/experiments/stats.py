"""Means, spreads over seeds, and the rule that turns a difference into a finding or not.

The rule (printed under every table): a variant differs from the reference when the difference
of their means is larger than the pooled standard deviation over seeds,
``sqrt((s_a^2 + s_b^2) / 2)`` (sample standard deviations, ddof 1); otherwise the table says
"no difference detected". With one seed there is no spread and no verdict.
"""

from __future__ import annotations

import math
import statistics

NO_DIFFERENCE = "no difference detected"
RULE = (
    "Verdict rule: a difference of means larger than the pooled standard deviation over seeds, "
    "sqrt((s_a^2 + s_b^2) / 2), is reported as better or worse; a smaller one as "
    f'"{NO_DIFFERENCE}". Spreads are sample standard deviations over seeds.'
)


def summarize(values: list[float]) -> dict:
    """{"mean", "std" (ddof 1; NaN for one value), "n", "values"} of per-seed numbers.

    A NaN value (a score over no pixels) makes the mean and std NaN (statistics.stdev raises
    on it)."""
    values = [float(v) for v in values]
    if not values:  # internal: every variant runs at least one seed (settings check --seeds)
        raise ValueError("summarize needs at least one value")
    finite = all(math.isfinite(v) for v in values)
    std = statistics.stdev(values) if len(values) > 1 and finite else math.nan
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}


def pooled_std(a: dict, b: dict) -> float:
    """sqrt((s_a^2 + s_b^2) / 2) of two summaries (NaN if either has one value)."""
    return math.sqrt((a["std"] ** 2 + b["std"] ** 2) / 2)


def verdict(variant: dict, reference: dict, higher_is_better: bool = True) -> dict:
    """Compare two summaries: {"diff", "pooled_std", "verdict"}.

    ``verdict`` is "better" / "worse" (for the variant) when |diff| > pooled std, else
    :data:`NO_DIFFERENCE`; "one seed: no spread" when a summary has a single value; "not
    measured" when a mean is NaN (a score over no pixels, e.g. no small regions).
    """
    diff = variant["mean"] - reference["mean"]
    pooled = pooled_std(variant, reference)
    if math.isnan(diff):
        text = "not measured"
    elif min(variant["n"], reference["n"]) < 2:
        text = "one seed: no spread"
    elif abs(diff) <= pooled:
        text = NO_DIFFERENCE
    else:
        text = "better" if (diff > 0) == higher_is_better else "worse"
    return {"diff": diff, "pooled_std": pooled, "verdict": text}


def fmt(summary: dict, digits: int = 3) -> str:
    """ "0.712 ± 0.010" (the ± part left out for one seed)."""
    if math.isnan(summary["std"]):
        return f"{summary['mean']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"


def fmt_verdict(v: dict, digits: int = 3) -> str:
    """ "+0.021 (better)" / "-0.004 (no difference detected)"."""
    return f"{v['diff']:+.{digits}f} ({v['verdict']})"


def table(
    rows: dict[str, dict[str, dict]],
    metrics: dict[str, str],
    reference: str | None = None,
    compare: tuple[str, ...] = (),
) -> str:
    """A markdown table: one row per entry of ``rows`` ({name: {metric: summary}}).

    ``metrics`` maps metric keys to column titles. For each metric in ``compare``, a column
    with each row's difference from the ``reference`` row and its verdict.
    """
    head = ["variant", *metrics.values()]
    head += [f"Δ {metrics[m]} vs {reference}" for m in compare]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, scores in rows.items():
        cells = [name, *(fmt(scores[m]) if m in scores else "" for m in metrics)]
        for m in compare:
            if name == reference or reference is None:
                cells.append("(reference)" if name == reference else "")
            else:
                cells.append(fmt_verdict(verdict(scores[m], rows[reference][m])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
