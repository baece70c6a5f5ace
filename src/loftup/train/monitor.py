"""What a run leaves to look at: scalars (CSV + TensorBoard), PCA pictures, the run record.

Only rank 0 creates a :class:`Monitor`. Files in the run folder::

    config.yaml    the resolved TrainConfig
    run.json       package version, git commit (in a checkout), command, processes, start time
                   (a resumed run's: the first start's, and each resume's in ``resumes``)
    metrics.csv    one row per step: step, loss terms, lr, grad_norm, timings (target_seconds:
                   stage 1's mask-bicubic target, stage 2's teacher regions)
    summary.json   at the end: steps, final and mean-of-last-10 values (and how many rows each
                   mean covers), median seconds per step
    tb/            TensorBoard event files (scalars and pictures)
    viz/step_N.png image | low-res PCA | upsampled PCA for the fixed validation images
    stopped.txt    after a stop by a signal: the line it said (how to go on; see .stopping)
"""

from __future__ import annotations

import csv
import datetime as _dt
import sys
from pathlib import Path

import torch

from ..atomic import atomic_write_bytes, write_json
from ..figure_mark import save_figure
from .config.paths import as_written

#: the file a run writes last, at its end (:meth:`Monitor.summary`)
SUMMARY_NAME = "summary.json"


#: the run's record (:func:`write_run_record`)
RECORD_NAME = "run.json"

#: the run's scalars, one row a step (:class:`Monitor`)
METRICS_NAME = "metrics.csv"


def write_run_record(
    out_dir: Path,
    config_dict: dict,
    world: int,
    *,
    resumed: dict | None = None,
    step: int = 0,
    init_commit: str | None = None,
    earlier: dict | None = None,
) -> None:
    """Write ``config.yaml`` (``config_dict``) and ``run.json``: the package version, git
    commit, command, processes, torch and start time of this start of the run.

    ``init_commit``: the hub commit stage 2's ``init`` was loaded from (a hub id ORG/NAME, at
    a branch or a hash's start, or a released name, names other weights once its branch
    moves): recorded as
    ``"init": {"given": ..., "commit": ...}`` beside config.yaml's ``init`` as given.

    ``resumed``: the config of the checkpoint this start goes on from, at ``step``. The
    earlier record, ``earlier`` (``run.json`` as :func:`~.earlier.read_earlier` read it before
    the run changed its folder), is then kept (its first start's values) and this start is
    added to its ``resumes`` list, with ``step`` and ``config_changes`` ({key: [was, now]},
    the keys set otherwise than in the checkpoint's config); where there is none (missing, or
    damaged: said as it was read), the record holds this start alone, with its ``step``."""
    import yaml

    from .. import __version__
    from ..eval.report import git_commit

    record = {
        "loftup_version": __version__,
        "git_commit": git_commit(),
        "command": sys.argv,
        "processes": world,
        "torch": torch.__version__,
        # local time with its offset: comparable wherever (and in whatever TZ) it is read
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if init_commit is not None:  # the weights loaded, whatever the branch names later
        record["init"] = {"given": config_dict.get("init"), "commit": init_commit}
    if resumed is not None:
        start = {**record, "step": step, "config_changes": config_changes(resumed, config_dict)}
        record = start
        if earlier is not None:  # kept, this start added to its resumes
            resumes = earlier.get("resumes")
            resumes = resumes if isinstance(resumes, list) else []
            record = {**earlier, "resumes": [*resumes, start]}
    text = yaml.safe_dump(as_written(config_dict), sort_keys=False)
    atomic_write_bytes(out_dir / "config.yaml", text.encode())  # read back as it was loaded
    write_json(out_dir / RECORD_NAME, record)


def config_changes(was: dict, now: dict) -> dict:
    """{dotted key: [was, now]} of the values that differ between two configs (nested dicts,
    as :meth:`TrainConfig.to_dict` gives them; a key one lacks is None there)."""
    flat_was, flat_now = _flat(was), _flat(now)
    keys = list(dict.fromkeys([*flat_now, *flat_was]))
    return {
        k: [flat_was.get(k), flat_now.get(k)] for k in keys if flat_was.get(k) != flat_now.get(k)
    }


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


class Monitor:
    """Scalars to ``metrics.csv`` (and TensorBoard), pictures to ``viz/``.

    Arguments:
      out_dir: the run folder.
      start_step: the first step of this (possibly resumed) run: TensorBoard's events from
        that step on are dropped.
      rows: a resumed run's CSV rows of the steps before ``start_step`` (those from that step
        on dropped, so that its CSV has each step once), read by
        :func:`~.earlier.read_earlier` before the run changed its folder.
      tensorboard: also write TensorBoard event files under ``tb/``.
    """

    def __init__(
        self, out_dir: Path, *, start_step: int = 0, rows: list[dict] = (), tensorboard: bool = True
    ) -> None:
        self.out_dir = out_dir
        self.csv_path = out_dir / METRICS_NAME
        self._rows = list(rows)
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_step)

    def scalars(self, step: int, values: dict[str, float], tensorboard: bool = True) -> None:
        """One CSV row; also TensorBoard points when ``tensorboard``."""
        row = {"step": step, **{k: float(v) for k, v in values.items()}}
        self._rows.append(row)
        if self._writer is not None and tensorboard:
            for key, value in values.items():
                self._writer.add_scalar(f"train/{key}", value, step)

    def flush(self) -> None:
        """Rewrite ``metrics.csv`` atomically (cheap: a few numbers per step)."""
        if not self._rows:
            return
        keys = list(dict.fromkeys(k for row in self._rows for k in row))
        from io import StringIO

        buf = StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write_bytes(self.csv_path, buf.getvalue().encode())
        if self._writer is not None:
            self._writer.flush()

    def picture_path(self, step: int) -> Path:
        """Where the grid of ``step`` is (or would be) saved."""
        return self.out_dir / "viz" / f"step_{step:07d}.png"

    def pictures(self, step: int, images01: torch.Tensor, lr_feats, hr_feats) -> Path:
        """Save a grid (one row per image: image, low-res PCA, upsampled PCA); returns the PNG."""
        from ..viz import pca_pair

        lr_rgb, hr_rgb = pca_pair(lr_feats.float().cpu(), hr_feats.float().cpu())
        path = self.picture_path(step)
        save_grid(path, images01.cpu(), lr_rgb, hr_rgb, title=f"step {step}")
        if self._writer is not None:
            self._writer.add_images("viz/upsampled_pca", hr_rgb, step)
            self._writer.add_images("viz/lowres_pca", lr_rgb, step)
        return path

    def summary(self, history: list[dict], **extra) -> Path:
        """Write ``summary.json``: the run's last values, their means over the last 10 steps
        (``mean_last_10_rows``: how many rows each mean covers) and the median time per step.
        A value a row lacks (a column this version writes in the rows of a resumed older run's
        history: absent, or NaN once packed in a checkpoint) is left out of its mean (null
        where no row has one)."""
        last = history[-10:]
        terms = [k for k in (history[-1] if history else {}) if k not in ("step",)]
        given = {k: _values(last, k) for k in terms}
        seconds = sorted(_values(history, "seconds"))
        info = {
            **extra,
            "final": {k: history[-1][k] for k in terms} if history else {},
            "mean_last_10": {k: sum(v) / len(v) if v else None for k, v in given.items()},
            "mean_last_10_rows": {k: len(v) for k, v in given.items()},
            "median_seconds_per_step": seconds[len(seconds) // 2] if seconds else None,
        }
        path = self.out_dir / SUMMARY_NAME
        write_json(path, info)
        return path

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()


def _values(rows: list[dict], key: str) -> list[float]:
    """The ``key`` values of ``rows`` that hold one (a NaN: a value missing in a packed history)."""
    return [r[key] for r in rows if key in r and r[key] == r[key]]


def save_grid(path: Path, images01, lr_rgb, hr_rgb, title: str = "") -> None:
    """A matplotlib PNG with one row per image: the image, low-res PCA, upsampled PCA."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = images01.shape[0]
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for i in range(n):
        for ax, pic, name in zip(
            axes[i], (images01[i], lr_rgb[i], hr_rgb[i]), ("image", "low-res", "upsampled")
        ):
            ax.imshow(pic.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        save_figure(fig, path, 80)
    finally:
        plt.close(fig)
