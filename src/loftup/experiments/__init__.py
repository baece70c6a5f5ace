"""``loftup experiment NAME``: the paper's open questions, answered with numbers over seeds.

=============  ===================================================================
coords         with vs without the coordinate encoding (stage 1)
attention      global cross-attention vs local k x k windows, k = 3, 5 (stage 1)
stages         stage 1 only vs stages 1 + 2 vs stage 1 trained as long as both
mask-noise     each mask-noise kind at levels 0, 0.25, 0.5, 1 (scores, loss curves)
distill-view   stage-2 teacher on crops vs the full image vs both (small/large regions)
grid           low-res grids of 4-32 cells, ratios 2x-32x, vs bilinear and bicubic
=============  ===================================================================

Each runs in the offline world by default (the demo's scenes and the shipped backbone
``scenes_vit_p8``) and writes a folder with ``report.md``, ``results.json`` and PNG figures;
:class:`ExperimentSettings` points it at real data and backbones instead. In Python::

    from loftup.experiments import ExperimentSettings, run_experiment
    results = run_experiment(ExperimentSettings("coords", quick=True, out="/tmp/coords"))
"""

from __future__ import annotations

from ..escaping import quoted
from .settings import DEFAULT_STEPS, ExperimentSettings

EXPERIMENTS = tuple(DEFAULT_STEPS)


def run_experiment(settings: ExperimentSettings, json_path: str | None = None) -> dict:
    """Run the experiment ``settings.name`` (settings left unset are resolved first);
    ``json_path``: a copy of ``results.json`` there too."""
    import os

    import torch

    from ..paths import check_file_output, check_folder_output

    s = settings.resolved()
    check_folder_output(s.out, "--out")  # before any work, naming the option
    if json_path:  # (the command line checks its --json so too) not after 20 minutes' work
        json_path = os.path.expanduser(os.fspath(json_path))
        check_file_output(json_path, "--json", example="results.json")
    _check_other_report(s)
    _check_out_outside_data(s, given=settings.out is not None)
    from .data import check_eval_dataset

    check_eval_dataset(s)  # a wrong --eval-root or --eval-dataset: before the scenes are written
    threads = torch.get_num_threads()
    if s.threads:
        torch.set_num_threads(s.threads)
    try:
        if s.name == "grid":
            from .grid import run_grid

            return run_grid(s, json_path)
        from .designs import DESIGNS
        from .variants import run_design

        return run_design(s, DESIGNS[s.name](s), json_path)
    finally:  # a setting of this run, not of the process that called it
        torch.set_num_threads(threads)


def _check_out_outside_data(s: ExperimentSettings, given: bool = True) -> None:
    """A UsageError if ``s.out`` is ``s.data`` or lies inside it: training would read the
    report's figures and held-out scenes as training images, and the data would differ each
    run (every run folder refused on the next as trained on other data). ``given``: whether
    the user gave the --out (else it is said as the default one, which they typed nowhere)."""
    import os

    from ..errors import UsageError

    if not s.data:
        return
    out, data = (os.path.realpath(os.path.expanduser(p)) for p in (s.out, s.data))
    if os.path.commonpath([out, data]) == data:
        raise UsageError(
            f"{'' if given else 'the default '}--out {s.out} lies inside --data {s.data}: the "
            "experiment's figures and scenes would be read as training images; choose an "
            "--out outside the training data"
        )


def _check_other_report(s: ExperimentSettings) -> None:
    """A UsageError if ``s.out`` holds the report of another experiment, or a demo: it would be
    overwritten at the end, its runs mixed with this one's (the same experiment again reuses
    its finished runs and rewrites its report)."""
    from pathlib import Path

    from ..atomic import read_json_object
    from ..errors import UsageError

    try:
        saved = read_json_object(Path(s.out) / "results.json", another="--out")
    except ValueError as e:
        raise UsageError(f"{e}; choose another --out") from None
    if saved is not None and "experiment" not in saved:  # another command's --json
        raise UsageError(
            f"{s.out} holds a results.json that is not an experiment's (it would be "
            "overwritten); choose another --out"
        )
    if saved is not None and saved["experiment"] != s.name:
        raise UsageError(
            f"{s.out} holds the report of experiment {quoted(saved['experiment'])}, not "
            f"{quoted(s.name)}; choose another --out"
        )
    from ..world.demo import RECORD

    if any((Path(s.out) / name).exists() for name in (RECORD, "report.json")):
        raise UsageError(  # its report.md would be overwritten, its scenes written over
            f"{s.out} holds a `loftup demo` (its {RECORD} or report.json); choose another --out"
        )
    if saved is None:
        _check_no_other_files(s)


def _check_no_other_files(s: ExperimentSettings) -> None:
    """A UsageError where ``s.out``, holding no experiment's results.json, holds a file of the
    name of one the experiment writes (report.md, a figure): a user's own report.md or
    bars.png was overwritten without a word. A figure loftup drew (its mark,
    :mod:`loftup.figure_mark`) is an interrupted run's, drawn before its results.json."""
    import os
    from pathlib import Path

    from ..errors import UsageError
    from ..figure_mark import is_loftup_png
    from ..listing import special_at
    from .report import figure_names

    for name in ("report.md", *figure_names(s.name)):
        path = Path(s.out) / name
        special = special_at(path)
        if special:  # never opened: a pipe's read waits for a writer (the experiment hung)
            raise UsageError(
                f"{path} is {special}, not a file, and the experiment would write its {name} "
                f"there; choose another --out, or remove {name}"
            )
        if not os.path.lexists(path) or (name.endswith(".png") and is_loftup_png(path)):
            continue  # (a link, to nothing too, or a folder of that name: refused)
        raise UsageError(
            f"{path} is not an experiment's (there is no results.json in {s.out}), and the "
            f"experiment would overwrite it; choose another --out, or move {name} away"
        )


__all__ = ["EXPERIMENTS", "ExperimentSettings", "run_experiment"]
