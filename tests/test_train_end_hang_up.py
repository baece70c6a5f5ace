"""A SIGHUP at the end of `loftup train` on one process, once its run is complete: after the end's
vote, as the process group is let go, as the command says its result and as it returns. Each
case in a process of its own (conftest's ``forked``): before, SIGHUP's default action, put back
with the run's handlers, killed the process there."""

from __future__ import annotations

import contextlib
import io
import signal
from pathlib import Path

import pytest

from train_fixtures import signal_at_the_end, tiny_overrides

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

#: what `loftup train` imports, once for every case
PREPARED = ["loftup.cli.train", "loftup.train.build", "loftup.train.start",
            "transformers.models.dinov2"]  # fmt: skip


@pytest.mark.parametrize(
    "where",
    ["after the vote", "at the teardown", "as its result is said", "as the command returns"],
)
def test_a_sighup_once_a_one_process_run_is_complete_says_so_and_ends_129(
    where, sa1b, tmp_path, forked
):
    """After the run's handlers were put back (the teardown, the result said, the command's
    return) a SIGHUP hit its default action: the process was killed (129) without a word,
    where a SIGHUP before them (after the vote), or a SIGTERM there, said that the run was
    complete. Each ends the command with HungUp's 129, the run's complete line said once,
    last; main puts SIGHUP's default back as it returns."""
    forked.run(_hung_up, tmp_path / "log", sa1b=str(sa1b), out=str(tmp_path / "run"), where=where)


def _hung_up(sa1b: str, out: str, where: str) -> None:
    import torch

    import loftup.cli as cli

    torch.set_num_threads(1)
    signal_at_the_end(where, signal.SIGHUP)  # (this process's alone: it ends with the case)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(["train", "--stage", "1", *tiny_overrides(sa1b, out, 2)])
    said = err.getvalue().splitlines()
    complete = (
        f"SIGHUP: stopped after the last step (2 of 2): the run is complete, "
        f"{Path(out) / 'checkpoint.pt'} and {Path(out) / 'final'} are written"
    )
    assert (status, said.count(complete), said[-1:]) == (129, 1, [complete]), said[-20:]
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
