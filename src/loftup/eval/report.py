"""How a run was made, next to its numbers: settings, package version, git commit, machine."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from pathlib import Path

from ..atomic import write_json  # noqa: F401  (eval's numbers are written with it)

#: Seconds each git command of :func:`git_commit` may take.
GIT_TIMEOUT = 5


def git_commit() -> str | None:
    """The commit of the checkout this package runs from (None outside a git checkout, and
    where the repository around it does not track it: an install in a user's own checkout,
    a virtual environment there, is not that checkout's code). ``-dirty`` is added where
    ``git status`` shows changes, ``-unchecked`` where it could not tell: it failed, or took
    longer than :data:`GIT_TIMEOUT` (a huge checkout, one on a network disk); a tree that may
    differ from the commit is never recorded as the commit itself."""
    here = Path(__file__).resolve()
    git = ["git", "-C", str(here.parent)]
    try:
        tracked = subprocess.run(
            [*git, "ls-files", "--error-unmatch", "--", here.name],
            capture_output=True,
            timeout=GIT_TIMEOUT,
        )
        if tracked.returncode != 0:
            return None
        out = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=GIT_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    try:  # a slow status (a huge or network checkout): the commit marked unchecked, no traceback
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError):
        return f"{commit}-unchecked"
    if dirty.returncode != 0:
        return f"{commit}-unchecked"
    return commit + ("-dirty" if dirty.stdout.strip() else "")


#: The libraries whose versions can move a score: image resizing (pillow), the boundary
#: measure (scipy), the backbones (transformers), the readers (numpy, h5py, safetensors).
LIBRARIES = ("numpy", "pillow", "scipy", "transformers", "safetensors", "h5py")


def library_versions() -> dict:
    """{distribution: version} of :data:`LIBRARIES` (None for one not installed)."""
    from importlib import metadata

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def run_info(device: str = "cpu") -> dict:
    """Package version, git commit, torch, python, the libraries that can move a score
    (:func:`library_versions`), machine and date of this run."""
    import torch

    from .. import __version__

    info = {
        "loftup_version": __version__,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "libraries": library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def summary(results: dict) -> str:
    """The scores of an evaluation run in one line, as ``loftup eval`` prints them: the
    fractions of the JSON as percentages with their sign, as in the paper (``miou`` 0.0037 is
    ``mIoU 0.37%``), depth's RMSE in metres and AbsRel as stored, normals' errors in degrees."""
    m = results["metrics"]
    what = f"{results['dataset']} {results['backbone']} + {results['upsampler']}"

    def pc(key: str) -> str:
        return percent(m[key])

    if results["task"] == "seg":
        return f"{what}: mIoU {pc('miou')}  pixel accuracy {pc('pixel_accuracy')}"
    if results["task"] == "depth":
        line = f"{what}: delta1 {pc('delta1')}  RMSE {m['rmse']:.4f} m  AbsRel {m['abs_rel']:.4f}"
        if "si_delta1" in m:  # results written before the scale-invariant figures lack them
            line += f"  (scale-invariant: delta1 {pc('si_delta1')}  RMSE {m['si_rmse']:.4f} m)"
        return line
    if results["task"] == "normals":
        return (
            f"{what}: within 11.25/22.5/30 deg {pc('within_11.25')} / {pc('within_22.5')} / "
            f"{pc('within_30')}  RMSE {m['rmse']:.2f} deg  mean {m['mean']:.2f} deg"
        )
    return f"{what}: J&F {pc('J&F_mean')}  J {pc('J_mean')}  F {pc('F_mean')}"


def percent(fraction: float) -> str:
    """A fraction of the JSON as ``loftup eval`` shows it: ``0.0037`` -> ``0.37%``."""
    return f"{100 * fraction:.2f}%"


def figure_title(task: str, what: str, m: dict) -> str:
    """The title of ``task``'s figure, its headline scores as :func:`summary` prints them (with
    their units: the figure said ``mIoU 0.37`` beside a printed ``mIoU 0.37%``)."""
    if task == "seg":
        return f"{what}: mIoU {percent(m['miou'])}"
    if task == "depth":
        return f"{what}: delta1 {percent(m['delta1'])}, RMSE {m['rmse']:.4f} m"
    if task == "normals":
        return f"{what}: within 30 deg {percent(m['within_30'])}, RMSE {m['rmse']:.2f} deg"
    return f"{what}: J&F {percent(m['J&F_mean'])}"
