"""A stop at a training run's very end: as ``final/`` is written, as the process group is let
go, as ``loftup train`` says its result; and what the stop says where a command wraps the run
(``loftup demo``, ``loftup experiment``: their own ``go_on``)."""

from __future__ import annotations

import pytest

from processes import forked_ranks

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
    pytest.mark.usefixtures("one_thread"),
]

#: two ranks (rank 1 forked from rank 0) training a tiny run (data, out: argv), rank 0 getting
#: a SIGTERM as train() lets go of the process group (the command line's handler put back):
#: each says how train() ended and whether the group is destroyed
_TEARDOWN_STOP = """
import os, signal, sys
import torch
import torch.distributed as dist
from loftup.errors import Terminated, terminate
from loftup.train import loop
from train_fixtures import tiny_config
# imported once, before the fork (each rank importing them took 10 s of two shared cores)
import loftup.train.build, loftup.train.start
from transformers import Dinov2Model

torch.set_num_threads(1)
child = os.fork()
rank = 0 if child else 1
os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                  LOFTUP_DIST_TIMEOUT="60")
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
    said, out, returncode = forked_ranks(_TEARDOWN_STOP, [str(sa1b), str(tmp_path / "run")],
                                         tmp_path)  # fmt: skip
    assert said["0"] == ["terminated, group destroyed: True", "rank 1's status: 0"], out
    assert said["1"] == ["done, group destroyed: True"], out
    assert returncode == 0, out
