"""``loftup upsample`` under torchrun: two gloo processes write the files one writes, a rank
that fails ends every rank in one line, and a world of one is one process."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
import torch
from PIL import Image

from loftup.cli import main
from model_helpers import ROWS_ROUND_BY_COUNT
from processes import GLOO_THREADS, REPO, run_torchrun
from upsample_helpers import noise_picture, outputs, upsample_small

#: The runs of ``loftup upsample`` each process of one torchrun job makes, one after the other
#: (each start of two processes costs seconds of imports): the crops held whole, streamed tile
#: by tile two a batch, resumed after rank 0's im2.pt was moved aside, then after every input
#: changed, and last a run whose rank 1 fails (as a node without the weights would) once rank
#: 0 waits for it in the final sum.
#: After each, a process says its status and how many of gloo's threads still run: none, or
#: they run into the interpreter's teardown (processes.GLOO_THREADS).
TORCHRUN_RUNS = (
    GLOO_THREADS
    + """
import json, os, sys, time
from pathlib import Path
import loftup.extract
from loftup.cli import main
from loftup.errors import LoftUpError

args, out = json.loads(sys.argv[1]), Path(sys.argv[2])
rank = os.environ["RANK"]

def upsample(name, *extra):
    status = main(["upsample", *args, "-o", str(out / name), *extra])
    print(f"{name}: RANK={rank} ended {status}, gloo threads left: {gloo_threads()}",
          file=sys.stderr, flush=True)
    return status

upsample("two", "--viz")
upsample("two_streamed", "--viz", "--stream-above", "0", "--batch-size", "2")
if rank == "0":  # rank 0 has im0 and im2, rank 1 im1
    os.replace(out / "two" / "im2.pt", out / "im2_of_the_first_run.pt")
upsample("two", "--viz", "--resume")
for i in range(3):  # every input changed since (one time for both ranks): all computed again
    os.utime(out / f"im{i}.png", (4102444800, 4102444800))
upsample("two", "--viz", "--resume")

def fail(jobs, pipeline, out_dir, **kw):  # rank 1, once rank 0 waits in the sum
    while not all((out_dir / f"im{i}.pt").exists() for i in (0, 2)):
        time.sleep(0.05)
    time.sleep(1)
    raise LoftUpError("no weights on this node")

if rank == "1":
    loftup.extract.run = fail
status = main(["upsample", *args, "-o", str(out / "fails")])
import torch.distributed as dist
left = dist.get_rank() if dist.is_initialized() else None
print(f"rank {left} left, gloo threads: {gloo_threads()}", file=sys.stderr)
sys.exit(status)
"""
)


@pytest.fixture(scope="module")
def torchrun_runs(photos, upsampler, tmp_path_factory) -> tuple:
    """One torchrun job of two gloo processes making :data:`TORCHRUN_RUNS` on three small
    crops of a photo: (its result, the folder of its outputs, the upsample arguments)."""
    folder = tmp_path_factory.mktemp("torchrun")
    big = Image.open(photos / "astronaut.png")
    for i in range(3):
        big.crop((60 * i, 40 * i, 60 * i + 70, 40 * i + 56)).save(folder / f"im{i}.png")
    args = [str(folder / "im*.png"), "-m", str(upsampler), "--backbone-size", "56"]
    path = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    script = folder / "runs.py"
    script.write_text(TORCHRUN_RUNS)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd = [*torchrun, str(script), json.dumps(args), str(folder)]
    done = run_torchrun(cmd, env)
    return done, folder, args


def test_torchrun_two_processes_write_what_one_writes(torchrun_runs, tmp_path):
    """Two processes write the bytes one writes, whole or streamed, and resume each its own
    batches; each leaves the process group with gloo's threads ended (a group that outlived
    destroy_process_group, kept by a torch module imported with the backbone, took them into
    the interpreter's teardown, where rank 0 once aborted: "terminate called without an active
    exception")."""
    done, folder, args = torchrun_runs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's processes run (OMP_NUM_THREADS=1)
    try:
        assert main(["upsample", *args, "--viz", "-o", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    one = outputs(tmp_path / "one")
    assert len(one) == 6
    err = done.stderr
    assert "upsample [rank 1]" in err, err  # really two processes
    # each run ended well in both processes, gloo's threads gone (parsed: the two ranks' lines
    # may interleave), the resumed one's after the others
    ended = re.findall(r"(two\w*): RANK=(\d) ended (\d+), gloo threads left: (\d+)", err)
    assert sorted(ended) == sorted(
        (run, rank, "0", "0") for run in ("two", "two", "two", "two_streamed") for rank in "01"
    ), err
    # the changed images of every rank counted once, by rank 0 (each said its own count)
    assert re.findall(r"--resume: \d+ image\(s\) changed", err) == ["--resume: 3 image(s) changed"]
    # held whole; and every output streamed tile by tile into its file, two images a batch
    for out in ("two", "two_streamed"):
        assert one == outputs(folder / out), out
        for name in one:
            alone, here = tmp_path / "one" / name, folder / out / name
            if out == "two_streamed" and ROWS_ROUND_BY_COUNT:  # batches of two: a few ulps
                if name.endswith(".pt"):  # the features (the --viz pictures' pixels may move)
                    torch.testing.assert_close(torch.load(here, weights_only=True),
                                               torch.load(alone, weights_only=True),
                                               rtol=0, atol=1e-5)  # fmt: skip
                continue
            assert alone.read_bytes() == here.read_bytes(), (out, name)
    # the first run's im2.pt, moved aside before the resume, is one's too; resumed by two
    # processes, each skips its own batches that are done, and rank 0 reports the total kept
    first = (folder / "im2_of_the_first_run.pt").read_bytes()
    assert first == (tmp_path / "one" / "im2.pt").read_bytes()
    assert f"features of 1 image(s) to {folder / 'two'} (2 already there)" in done.stdout


def test_a_rank_that_fails_under_torchrun_ends_every_rank_in_one_line(torchrun_runs):
    """One process of a torchrun run fails (here rank 1, as a node without the weights would)
    while the other waits for it at the end: each says what ended it in one line, with no
    traceback (the waiting one's gloo error, "Connection closed by peer", was one), and each
    leaves the process group on its way out."""
    done, _, _ = torchrun_runs
    assert done.returncode != 0
    err = done.stderr
    assert "[rank 1] error: no weights on this node\n" in err, err
    # rank 0 is told its peer ended (or torchrun's SIGTERM, on rank 1's exit, comes first)
    told = "[rank 0] error: another process of this run has ended (Connection closed by peer"
    assert told in err or "[rank 0] terminated (SIGTERM)" in err, err
    assert "[rank0]:" not in err and "RuntimeError" not in err, err  # no rank's traceback
    # both left the group (parsed: the two ranks' lines may interleave)
    assert re.findall(r"rank None left, gloo threads: (\d+)", err) == ["0", "0"], err


def test_a_world_of_one_is_one_process_whatever_rank_says(upsampler, tmp_path, monkeypatch):
    """RANK=1 with WORLD_SIZE=1 (a job script's exports) took batches[1::1]: the first image
    was never computed, yet the run said it had written both."""
    for name in ("a.png", "b.png"):
        noise_picture(tmp_path / name)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "1")
    out = tmp_path / "out"
    assert upsample_small([tmp_path / "a.png", tmp_path / "b.png"], upsampler, out) == 0
    assert outputs(out) == ["a.pt", "b.pt"]
