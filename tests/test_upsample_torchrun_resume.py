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

from processes import run_torchrun, src_env
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
        done = run_torchrun([*cmd, json.dumps(entry)], env)
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


#: Each rank: a run during whose model loading on rank 0 another run, of other options, writes
#: its record and its file (those of argv[3]) in the folder
RACED = """
import os, shutil, sys
from pathlib import Path
import loftup.api
from loftup.errors import LoftUpError
from loftup.extract import upsample_folder

folder, model, other = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
rank, out = os.environ["RANK"], folder / "out"
real = loftup.api.load_pipeline

def loading(*a, **k):
    shutil.copytree(other, out, dirs_exist_ok=True)
    return real(*a, **k)

if rank == "0":
    loftup.api.load_pipeline = loading
kw = dict(model=model, backbone_size=28, size=32, progress=False)
try:
    said = f"{upsample_folder([str(folder / 'in')], out, **kw).done} done"
except LoftUpError as e:
    said = f"refused: {e}"
(folder / f"said{rank}.txt").write_text(said)
"""


# 8-12 s: slow; rank 0's refusal or failure said by every rank (judged_by_rank_0, which this
# place shares with the two others) in the default suite: test_torchrun_from_rank_0.py's
# tests, and this file's test_a_resume_under_torchrun_is_not_refused_for_its_own_ranks
@pytest.mark.slow
def test_a_record_written_while_rank_0_loaded_its_models_is_said_by_every_rank(upsampler, tmp_path):
    """Rank 0's refusal of a record another run wrote while it loaded its models (its look
    once they are loaded), or any error of its writing the record (no room left), was rank 0's
    alone: the other ranks, waiting for it at a barrier, said only that it had ended. Every
    rank says it, as they say rank 0's look before the models load."""
    from loftup.extract import upsample_folder

    (tmp_path / "in").mkdir()
    noise_picture(tmp_path / "in" / "a.png")
    other = tmp_path / "other"
    upsample_folder([str(tmp_path / "in")], other, model=upsampler, backbone_size=28, size=64)
    script = tmp_path / "runs.py"
    script.write_text(RACED)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd = [*torchrun, "--nproc_per_node=2", str(script), str(tmp_path), str(upsampler)]
    env = {**src_env(), "OMP_NUM_THREADS": "1"}
    done = run_torchrun([*cmd, str(other)], env)
    said = [(tmp_path / f"said{rank}.txt") for rank in "01"]
    said = [p.read_text() if p.exists() else done.stderr for p in said]
    refused = f"refused: another run began writing in {tmp_path / 'out'} while this one loaded"
    assert said[0].startswith(refused), said[0]
    assert said[1] == said[0]
