"""The report folder of an experiment: ``report.md``, ``results.json`` and the PNG figures.

``results.json`` remembers how the numbers were made: the resolved settings, the command, the
package version and git commit, the backbone's weights file and sha256, the held-out set, torch
threads, the machine's load average at the start and the end, and seconds per phase.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from ..world.report import counted as _n
from .data import EvalSet
from .settings import ExperimentSettings
from .stats import RULE

#: The figures every experiment draws into its folder (:mod:`.variants`, :mod:`.grid`), and
#: those some of them add: with ``report.md``, the files a run there overwrites.
FIGURES = ("bars.png", "loss_curves.png", "examples.png")
MORE_FIGURES = {"mask-noise": ("levels.png",), "grid": ("ratio_miou.png", "ratio_boundary.png")}


def figure_names(name: str) -> tuple[str, ...]:
    """The figures experiment ``name`` draws (file names in its folder)."""
    return (*FIGURES, *MORE_FIGURES.get(name, ()))


class Clock:
    """Seconds per phase and the load average at start and end (the machine is shared)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.load_start = _load()
        self.phases: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def record(self) -> dict:
        return {
            "seconds": {
                "total": round(time.perf_counter() - self.start, 1),
                **{k: round(v, 1) for k, v in self.phases.items()},
            },
            "load_average_1min": {"start": self.load_start, "end": _load()},
            "threads": torch.get_num_threads(),
        }


def _load() -> float | None:
    """The 1-minute load average; None where the OS keeps none (Windows has no
    ``os.getloadavg``: an experiment there ended in an AttributeError before any work)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def provenance(s: ExperimentSettings, evalset: EvalSet, backbone: dict) -> dict:
    """Settings, command, version, commit, backbone weights hash (``backbone``: the
    :func:`~.data.weights_fingerprint` its caller worked out), held-out set."""
    from ..eval.report import run_info

    return {
        "settings": s.to_dict(),
        "command": command(s.name),
        "run": run_info("cpu"),
        "backbone": backbone,
        "heldout": {
            "source": evalset.source,
            "images": len(evalset.images),
            "size": list(evalset.images.shape[-2:]),
            "classes": evalset.classes,
            "fit": len(evalset.images) // 2,
            "scored": len(evalset.images) - len(evalset.images) // 2,
        },
    }


def command(name: str) -> list[str]:
    """The ``loftup experiment`` command line that runs this process, or [] when it was not
    one (``run_experiment`` from Python: a notebook's or pytest's arguments are no command of
    ours; the settings say what ran)."""
    argv = sys.argv[1:]
    if argv[:1] == ["experiment"] and name in argv:
        return ["loftup", *argv]
    return []


def header(title: str, question: str, results: dict) -> str:
    """The top of ``report.md``: question, setting, provenance and time in a few lines."""
    s, b, run = results["settings"], results["backbone"], results["run"]
    clock = results["clock"]
    sha = (b["sha256"] or "not a local file")[:16]
    held = results["heldout"]
    load = clock["load_average_1min"]
    lines = [
        f"# Experiment `{s['name']}`: {title}",
        "",
        question,
        "",
        f"- command: `{' '.join(results['command'])}`"
        if results["command"]
        else "- run from Python (`loftup.experiments.run_experiment`; settings in results.json)",
        f"- {_n(s['seeds'], 'seed')}; stage 1: {_n(s['stage1_steps'], 'step')}"
        + (f", stage 2: {_n(s['stage2_steps'], 'step')}" if s["stage2_steps"] else "")
        + f" of batch {s['batch_size']} at {s['size']} px; backbone `{b['name']}` "
        f"(weights sha256 {sha}...)",
        f"- held-out: {held['images']} images ({held['fit']} fit each probe, {held['scored']} "
        f"score it), {held['classes']} classes, from {held['source']}",
        f"- loftup {run['loftup_version']}, commit {run['git_commit']}, "
        f"{clock['seconds']['total']:.0f} s on {_n(clock['threads'], 'thread')}, "
        + (
            f"load average {load['start']} at the start and {load['end']} at the end"
            if load["start"] is not None and load["end"] is not None
            else "load average not known (the OS keeps none)"
        ),
    ]
    return "\n".join(lines)


def write_report(out: Path, markdown: str, results: dict, json_path: str | None = None) -> None:
    """``results.json`` and ``report.md`` in ``out`` (and a copy of the JSON at ``json_path``):
    the JSON first, which says the folder is this experiment's (a report.md without it is
    not an experiment's: :func:`loftup.experiments._check_no_other_files`)."""
    from ..atomic import atomic_write_bytes
    from ..eval.report import write_json

    text = markdown.rstrip() + "\n\n" + RULE + "\n"
    write_json(out / "results.json", results)
    atomic_write_bytes(out / "report.md", text.encode())
    if json_path:
        write_json(json_path, results, follow_links=True)  # the user's link stays one
