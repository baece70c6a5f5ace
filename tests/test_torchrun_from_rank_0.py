"""``extract.torchrun.from_rank_0``: rank 0's verdict (a refusal naming the output folder) said
by every rank of a torchrun job, whatever the text holds."""

from __future__ import annotations

import subprocess
import sys

from processes import src_env

#: Each rank: the group joined, rank 0's text taken by both, written to a file of its own
SAYS = """
import os, sys
import torch.distributed as dist
from loftup.extract.torchrun import from_rank_0, join_process_group

folder, rank = sys.argv[1], int(os.environ["RANK"])
join_process_group("gloo")
text = os.fsdecode(b"in /data/caf\\xe9-\\xff: r\\xc3\\xa9sum\\xc3\\xa9 " * 300)
got = [from_rank_0(text if rank == 0 else "rank 1's own", 2), from_rank_0(None if rank == 0 else "x", 2)]
with open(os.path.join(folder, f"got{rank}.txt"), "w", encoding="utf-8", errors="surrogateescape") as f:
    f.write(repr(got == [text, None]))
dist.destroy_process_group()
"""


def test_rank_0s_text_of_a_folder_name_no_encoding_can_hold_reaches_every_rank(tmp_path):
    """A path of bytes that are no UTF-8 (os.fsdecode's surrogates: a folder of an old Latin-1
    disk) named in rank 0's refusal failed its encoding (UnicodeEncodeError) before the
    broadcast: rank 0 said a traceback instead of the refusal, and the others that their peer
    had ended. Every rank says rank 0's text, as it is, and None stays None."""
    script = tmp_path / "says.py"
    script.write_text(SAYS)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd = [*torchrun, "--nproc_per_node=2", str(script), str(tmp_path)]
    env = {**src_env(), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    got = [(tmp_path / f"got{rank}.txt") for rank in "01"]
    assert [p.read_text() if p.exists() else None for p in got] == ["True", "True"], done.stderr
