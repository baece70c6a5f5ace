"""A suite run in parts (``benchmarks/gpu.sh`` runs groups of sections in separate processes):
one report from the parts, and the tests' outcome read off their log to be kept with it."""

from __future__ import annotations

import re

from .targets import targets


def merge_reports(reports: list[dict]) -> dict:
    """One report from the reports of one suite run in parts (``only``): the first's machine
    and settings, every part's sections and section times."""
    if not reports:
        raise ValueError("nothing to merge")
    suites = {r["suite"] for r in reports}
    if len(suites) != 1:
        raise ValueError(f"reports of different suites: {sorted(suites)}")
    out = {k: v for k, v in reports[0].items() if k != "sections"}
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


def pytest_outcome(log: str) -> dict:
    """What a ``pytest -q -rs --durations=N`` log says, for keeping with the figures:
    ``{"summary": its last count line ("26 passed, 3 skipped in 91.2s") or None if it has none
    (the run was killed), "skipped": the reasons given, "slowest": the durations' lines}``."""
    lines = [ln.strip() for ln in log.splitlines()]
    counts = re.compile(r"\b\d+ (passed|failed|skipped|errors?|xfailed|xpassed)\b")
    ends = [ln.strip("= ") for ln in lines if counts.search(ln)]
    return {
        "summary": ends[-1] if ends else None,
        "skipped": [ln for ln in lines if ln.startswith("SKIPPED ")],
        "slowest": [ln for ln in lines if re.match(r"\d+\.\d+s (call|setup|teardown) ", ln)],
    }
