"""``upsample_folder(resume=True)`` under torchrun: whether a run its record lists is still
writing is judged by rank 0, whose process the record lists, and said by every rank alike."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from processes import src_env
from upsample_helpers import noise_picture

#: Each rank: a run that fails on both ranks (as a Python session's call that raised), then,
#: in the same processes, its --resume; then a --resume over a record that lists a process of
#: this host still running (argv[3]).
RUNS = """
import json, os, sys
from pathlib import Path
import loftup.extract
from loftup.errors import LoftUpError
from loftup.extract import upsample_folder

folder, model, live = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
rank, out = os.environ["RANK"], folder / "out"
kw = dict(model=model, backbone_size=28, size=32, progress=False)

def say(what, call):
    try:
        said = f"{call().done} done"
    except LoftUpError as e:
        said = f"refused: {e}"
    with open(folder / f"said{rank}.txt", "a") as f:  # (the ranks' stderr lines interleave)
        f.write(f"{what}: {said}\\n")

def boom(*a, **k):
    raise LoftUpError("failed")

real, loftup.extract.run = loftup.extract.run, boom
say("first", lambda: upsample_folder([str(folder / "in")], out, **kw))
loftup.extract.run = real
say("resumed", lambda: upsample_folder([str(folder / "in")], out, **kw, resume=True))
if rank == "0":
    record = json.loads((out / "upsample.json").read_text())
    record.pop("finished")
    (out / "upsample.json").write_text(json.dumps({**record, "running": [live]}))
    (out / "a.pt").unlink()
say("over a live run", lambda: upsample_folder([str(folder / "in")], out, **kw, resume=True))
"""

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")


def test_a_resume_under_torchrun_is_not_refused_for_its_own_ranks(upsampler, tmp_path):
    """Rank 1 judged the record's entry of rank 0's process (a run of this host, alive) a run
    still writing and refused the --resume, while rank 0 went on and was left alone in its
    collectives: the ranks split. Rank 0 judges, and every rank says its verdict: both go on
    after their own failed run, and both refuse over a run still writing on this host."""
    (tmp_path / "in").mkdir()
    for name in "ab":
        noise_picture(tmp_path / "in" / f"{name}.png")
    script = tmp_path / "runs.py"
    script.write_text(RUNS)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        with open(f"/proc/{live.pid}/stat", "rb") as f:
            stat = f.read()
        started = int(stat[stat.rindex(b")") + 2 :].split()[19])
        entry = {"id": "live", "host": socket.gethostname(), "pid": live.pid, "started": started}
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd = [*torchrun, "--nproc_per_node=2", str(script), str(tmp_path), str(upsampler)]
        env = {**src_env(), "OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            [*cmd, json.dumps(entry)], env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        live.kill()
        live.wait()
    said = {
        f"{what} RANK={rank}": line
        for rank in "01"
        if (tmp_path / f"said{rank}.txt").exists()
        for what, line in re.findall(
            r"^(\w[\w ]*): (.*)$", (tmp_path / f"said{rank}.txt").read_text(), re.M
        )
    }
    assert said.get("resumed RANK=0") == said.get("resumed RANK=1") == "2 done", (said, done.stderr)
    refusal = (
        f"refused: resume=True: a run is still writing in {tmp_path / 'out'}: process "
        f"{live.pid} on this host"
    )
    for rank in "01":
        assert said.get(f"over a live run RANK={rank}", "").startswith(refusal), said
