"""A suite run in parts (``benchmarks/gpu.sh`` runs groups of sections in separate processes):
one report from the parts, and the tests' outcome read off their log to be kept with it."""

from __future__ import annotations

import re

from .targets import targets


def merge_reports(reports: list[dict]) -> dict:
    """One report from the reports of one suite run in parts (``only``): the first's settings,
    every part's sections and section times, and the machine as :func:`merge_machines` has it."""
    # internal checks: benchmarks/gpu.sh merges the parts it has just written, at least one
    if not reports:
        raise ValueError("nothing to merge")
    suites = {r["suite"] for r in reports}
    if len(suites) != 1:
        raise ValueError(f"reports of different suites: {sorted(suites)}")
    out = {k: v for k, v in reports[0].items() if k != "sections"}
    out["machine"] = merge_machines([r["machine"] for r in reports])
    out["sections"] = {}
    seconds = {}
    for r in reports:
        for key, value in r["sections"].items():
            if key == "_seconds":
                seconds.update(value)
            else:
                out["sections"][key] = value
    out["sections"]["_seconds"] = seconds
    out["parts"] = [r["machine"].get("date") for r in reports]
    if "targets" in out:
        out["targets"] = targets(out)
    return out


def merge_machines(machines: list[dict]) -> dict:
    """The parts' machines as one: ``date`` is the first part's (``parts`` lists them all);
    ``triton_kernels`` is every precision self-tested in any part (each part is a process of
    its own that tests only the precisions it ran) unless two parts disagree; the load average
    at the start is the first part's and at the end the last part's (how busy the machine was
    over the whole run, not a difference of set-up); any other field
    the parts disagree on is the list of their values, one a part, and is named in
    ``differs_by_part``, rather than the first part's value given as the whole run's."""
    out = dict(machines[0])
    differ = []
    for key in dict.fromkeys(k for m in machines for k in m):
        if key in ("date", "load_average_start"):  # the first part's: the run's start
            continue
        if key == "load_average_end":  # the whole run's: the last part's end
            out[key] = machines[-1].get(key)
            continue
        values = [m.get(key) for m in machines]
        if all(v == values[0] for v in values):
            continue
        if key == "triton_kernels" and all(isinstance(v, dict) for v in values):
            union = {}
            for v in values:
                union.update(v)
            if all(union.items() >= v.items() for v in values):  # no precision passed and failed
                out[key] = union
                continue
        out[key] = values
        differ.append(key)
    if differ:
        out["differs_by_part"] = differ
    return out


def pytest_outcome(log: str) -> dict:
    """What a ``pytest -q -rs --durations=N`` log says, for keeping with the figures:
    ``{"summary": its last count line ("26 passed, 3 skipped in 91.2s") or None if it has none
    (the run was killed), "skipped": the reasons given, "slowest": the durations' lines,
    "stopped": pytest's line where it stopped before the last test (a session timeout), if
    any}``; with no count line also ``"progress"``, whether any test's progress was printed
    (none: pytest did not run at all, a missing module, say), and ``"last_line"``."""
    lines = [ln.strip() for ln in log.splitlines()]
    counts = re.compile(r"\b\d+ (passed|failed|skipped|errors?|xfailed|xpassed)\b")
    ends = [ln.strip("= ") for ln in lines if counts.search(ln)]
    # "!!! session-timeout: 110.0 sec exceeded !!!", "!!! Interrupted: 1 error during
    # collection !!!": the count line then holds only the tests that ran
    stops = [ln.strip("! ") for ln in lines if re.fullmatch(r"!{3,} .+ !{3,}", ln)]
    said = [ln for ln in lines if ln]
    ran = any(re.search(r"\[\s*\d+%\]$", ln) for ln in lines)
    return {
        "summary": ends[-1] if ends else None,
        **({} if ends else {"progress": ran, "last_line": said[-1][:300] if said else None}),
        **({"stopped": stops[-1]} if stops else {}),
        "skipped": [ln for ln in lines if ln.startswith("SKIPPED ")],
        "slowest": [ln for ln in lines if re.match(r"\d+\.\d+s (call|setup|teardown) ", ln)],
    }
