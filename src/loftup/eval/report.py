"""How a run was made, next to its numbers: settings, package version, git commit, machine."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from pathlib import Path

from ..atomic import write_json  # noqa: F401  (eval's numbers are written with it)


def git_commit() -> str | None:
    """The commit of the checkout this package runs from (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
    )
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def run_info(device: str = "cpu") -> dict:
    """Package version, git commit, torch, python, machine and date of this run."""
    import torch

    from .. import __version__

    info = {
        "loftup_version": __version__,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
