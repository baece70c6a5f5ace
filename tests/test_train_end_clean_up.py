"""Two ranks at the end of a complete run. What is left of a torchrun job's `loftup train` once
its ranks voted no stop (letting go of its folder and of the process group, saying its result,
the process's exit) is clean-up, which a SIGTERM or SIGHUP to one rank does not cut short (it
ended that rank alone, and torchrun failed the job of a complete run); a Python caller's run
still stops on one, and lets go of the process group first."""

from __future__ import annotations

import pytest

from processes import forked_ranks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

#: the start of a script of two ranks (rank 1 forked from rank 0, ``rank``; ``child``: rank 1's
#: pid on rank 0) training a tiny run, data and out its argv
_TWO_RANKS = """
import os, signal, sys
import torch
# imported once, before the fork (each rank importing them took 10 s of two shared cores)
import loftup.cli.train, loftup.train.build, loftup.train.start
from transformers import Dinov2Model

torch.set_num_threads(1)
child = os.fork()
rank = 0 if child else 1
os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                  LOFTUP_DIST_TIMEOUT="60")
"""

#: (after :data:`_TWO_RANKS`) two ranks running `loftup train`, as the console script does on
#: rank 0 (SIGTERM and SIGHUP left as the command left them) and as an in-process caller of main
#: does on rank 1 (its handlers put back): rank 0 gets a SIGTERM after the end's vote and another
#: at the process group's teardown, a SIGHUP after train() returned and a SIGTERM after main
#: returned; rank 1 a SIGTERM and a SIGHUP after train() returned. Each says main's status and
#: the handlers it left
_CLEAN_UP = """
import loftup.cli as cli
import loftup.train
from loftup.train import loop
from train_fixtures import tiny_overrides

real_end, torn, real_train = loop.end_run, loop.teardown, loftup.train.train

def signal_self(*signums):
    for signum in signums:
        os.kill(os.getpid(), signum)
        for _ in range(100):  # its handler's turn comes here
            pass

def end_run(*args):
    real_end(*args)
    if rank == 0:
        signal_self(signal.SIGTERM)

def teardown(info, error=None):
    if error is None and rank == 0:  # (the run's own end)
        signal_self(signal.SIGTERM)
    torn(info, error)

def train(*args, **kwargs):
    result = real_train(*args, **kwargs)
    signal_self(*[signal.SIGHUP] if rank == 0 else [signal.SIGTERM, signal.SIGHUP])
    return result

loop.end_run, loop.teardown, loftup.train.train = end_run, teardown, train
overrides = tiny_overrides(sys.argv[1], sys.argv[2], 2)
status = cli.main(["train", "--stage", "1", *overrides], _console_script=rank == 0)
if rank == 0:
    signal_self(signal.SIGTERM)  # (to the interpreter's exit)
handlers = [getattr(signal.getsignal(s), "name", "?") for s in (signal.SIGTERM, signal.SIGHUP)]
print(f"{rank} status {status}, SIGTERM and SIGHUP: {handlers}", flush=True)
if child:
    print(f"0 rank 1's status: {os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])}")
"""


@pytest.mark.slow  # two processes start and train two steps (about 10 s)
def test_a_torchrun_jobs_complete_run_ignores_a_sigterm_or_sighup_to_one_rank_to_its_end(
    sa1b, tmp_path
):
    """A SIGTERM or SIGHUP to one rank of `loftup train` under torchrun after its ranks voted
    no stop at the end of the complete run ended that rank alone (143; a SIGHUP after train()
    returned: killed), and torchrun failed the job of a complete run. Every rank ignores them
    from the vote to the process's end, rank 0 saying its result; main, called in-process,
    puts the caller's handlers back. (One process, a demo's or an experiment's run: a stop
    stops it, tests/test_train_end_stops.py.)"""
    out = tmp_path / "run"
    said, text, returncode = forked_ranks(_TWO_RANKS + _CLEAN_UP, [str(sa1b), str(out)], tmp_path)
    assert said["0"] == [
        "status 0, SIGTERM and SIGHUP: ['SIG_IGN', 'SIG_IGN']",
        "rank 1's status: 0",
    ], text
    assert said["1"] == ["status 0, SIGTERM and SIGHUP: ['SIG_DFL', 'SIG_DFL']"], text
    assert f"checkpoint: {out / 'checkpoint.pt'}" in text and returncode == 0, text


#: (after :data:`_TWO_RANKS`) two ranks calling train() from Python, rank 0 getting a SIGTERM
#: as it lets go of the process group (loftup's handler put back): each says how train() ended
#: and whether the group is destroyed
_TEARDOWN_STOP = """
import torch.distributed as dist
from loftup.errors import Terminated, terminate
from loftup.train import loop
from train_fixtures import tiny_config

torn = loop.teardown

def teardown(info, error=None):
    if error is None and rank == 0:  # (the run's own end, not an error's)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            pass
    torn(info, error)

loop.teardown = teardown
signal.signal(signal.SIGTERM, terminate)  # the command line's
try:
    loop.train(tiny_config(sys.argv[1], sys.argv[2], 1, 2))
    ended = "done"
except Terminated:
    ended = "terminated"
print(f"{rank} {ended}, group destroyed: {not dist.is_initialized()}", flush=True)
if child:
    print(f"0 rank 1's status: {os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])}")
"""


@pytest.mark.slow  # two processes start and train two steps (about 10 s)
def test_a_stop_as_train_lets_go_of_the_process_group_still_destroys_it(sa1b, tmp_path):
    """Under torchrun, a SIGTERM as a complete run let go of the process group (the final
    teardown, before destroy_process_group) said the run was complete and ended it, the group
    never destroyed: left to the interpreter's exit and the last DDP wrapper, where a SIGTERMed
    run hung (see teardown). The group is destroyed before the stop goes on."""
    script = _TWO_RANKS + _TEARDOWN_STOP
    said, out, returncode = forked_ranks(script, [str(sa1b), str(tmp_path / "run")], tmp_path)
    assert said["0"] == ["terminated, group destroyed: True", "rank 1's status: 0"], out
    assert said["1"] == ["done, group destroyed: True"], out
    assert returncode == 0, out
