"""What ``benchmarks/gpu.sh``'s one call is judged by: every section of the suite taken whole
and without an error, the CUDA and kernel tests run to their end and passed, and all of it,
the figures, the tests and the merge, in under :data:`GPU_SH_BOUND_S` seconds. Also what the
script reads off each part it has just written (:func:`flagged`): the sections that failed,
whole or in some of their cases or rows."""

from __future__ import annotations

import json
import re

GPU_SH_BOUND_S = 360  # the issue: one prepared script runs everything in under 6 minutes


def _row(target: str, measured: str | None, met: bool | None) -> dict:
    """One target's row (:mod:`.targets`): what it asks, the figure measured, met or not."""
    return {"target": target, "measured": measured or "-", "met": met}


def _raised(section) -> bool:
    """Whether a section raised whole (the suite caught it: ``{"error": ...}``)."""
    return isinstance(section, dict) and "error" in section


def _ok(section) -> bool:
    """Whether a section ran and did not raise whole."""
    return section is not None and not _raised(section)


def section_rows(section) -> list:
    """A section's rows: a list of them (and big_output and backbones before their failed
    cases were kept), or a dict's ``results`` (then its ``failed`` lists cases without a
    row); none for a section that failed whole or did not run."""
    if isinstance(section, list):
        return section
    if isinstance(section, dict) and not _raised(section):
        return section.get("results", [])
    return []


def section_errors(section) -> list[str]:
    """Every error a section recorded: its own (it raised; the suite caught it), each failed
    case's (``failed``: the forward table, big_output, the backbones, whose ``attempt`` catches
    every exception, a launch failure too), each row's (``error``: an ablation variant whose
    compilation, capture or pre-flight raised; ``errors``: a backbone row's ways of running
    LoftUp that raised)."""
    if _raised(section):
        return [str(section["error"])]
    failed = section.get("failed", []) if isinstance(section, dict) else []
    found = [str(f.get("error")) for f in failed]
    for r in section_rows(section):
        if isinstance(r, dict):
            found += [str(r["error"])] if "error" in r else []
            found += [str(e) for e in (r.get("errors") or {}).values()]
    return found


def failures(sections: dict) -> dict[str, str]:
    """``{section: why}`` for each section that failed: ``section-error`` (it raised) or
    ``cases-failed-N`` (N of its cases or rows raised, the others kept)."""
    out = {}
    for key, value in sections.items():
        if key == "_seconds":
            continue
        if _raised(value):
            out[key] = "section-error"
        elif errors := section_errors(value):
            out[key] = f"cases-failed-{len(errors)}"
    return out


def flagged(part: str) -> str:
    """For gpu.sh, of a part it has just written: its failed sections as ``section=why`` words
    (it then logs the card's ECC and Xid reports)."""
    with open(part) as f:
        sections = json.load(f)["sections"]
    return " ".join(f"{k}={why}" for k, why in failures(sections).items())


def script_target(report: dict) -> dict:
    from .suite import SECTIONS  # here: the suite module imports the targets

    target = f"benchmarks/gpu.sh: everything in one call < {GPU_SH_BOUND_S} s"
    walls = report.get("gpu_sh_seconds")
    if not walls or "total" not in walls:
        return _row(target, None, None)
    cut = report.get("gpu_sh_cut") or {}
    parts = [f"{k} {walls[k]} s" for k in ("figures", "tests") if k in walls]
    measured = f"{walls['total']} s" + (f" ({', '.join(parts)})" if parts else "")
    if cut:
        measured += "; cut by its budget or failed: " + ", ".join(
            f"{g} ({why})" for g, why in cut.items()
        )
    # a section that raised or lost cases (caught by the suite, its process exiting 0), was
    # stopped halfway (its rows saved as they came) or never ran is a figure the call did not
    # take; tests stopped before their end (pytest's session timeout, or killed: no count
    # line) did not all run, and tests pytest never started did not run
    sec = report.get("sections", {})
    named = {k for what in cut for k in what.split(",")}  # said above
    failed = [k for k in SECTIONS["gpu"] if k in sec and section_errors(sec[k]) and k not in named]
    partial = [
        k for k in SECTIONS["gpu"] if isinstance(sec.get(k), dict) and "incomplete" in sec[k]
    ]
    missing = [k for k in SECTIONS["gpu"] if k not in sec and k not in named]
    tests = report.get("gpu_sh_tests")
    if tests and "tests" not in cut:
        if _never_ran(tests):  # pytest missing, say: none ran, none was stopped
            missing.append("tests")
        elif not tests.get("summary") or tests.get("stopped"):
            partial.append("tests")
    for what, keys in (("sections failed", failed), ("stopped halfway", partial)):
        if keys:
            measured += f"; {what}: " + ", ".join(keys)
    if missing:
        measured += "; not run: " + ", ".join(missing)
    whole = not (cut or failed or partial or missing)
    return _row(target, measured, walls["total"] < GPU_SH_BOUND_S and whole)


def _never_ran(tests: dict) -> bool:
    """Whether the tests' log (``report["gpu_sh_tests"]``) shows pytest never started (a
    missing module, say): no count line, no test's progress, a last line saying why."""
    return (
        tests.get("summary") is None
        and tests.get("progress") is False
        and bool(tests.get("last_line"))
    )


def tests_target(report: dict) -> dict:
    target = "CUDA and kernel tests pass on the GPU"
    t = report.get("gpu_sh_tests")
    if t is None:
        return _row(target, None, None)
    summary = t.get("summary")
    if _never_ran(t):
        return _row(target, f"pytest ran no test; its log ends: {t['last_line']}", False)
    if summary is None:
        return _row(target, "no count line (killed by its timeout?)", False)
    if re.search(r"\b\d+ (failed|errors?)\b", summary):
        return _row(target, summary, False)
    if t.get("stopped"):  # the tests after it never ran
        return _row(target, f"{summary}; stopped: {t['stopped']}", False)
    if not re.search(r"\b[1-9]\d* passed\b", summary):  # all skipped: nothing ran on the GPU
        return _row(target, f"{summary}: none passed", None)
    return _row(target, summary, True)
