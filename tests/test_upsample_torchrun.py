"""``loftup upsample`` under torchrun: two gloo processes write the files one writes, a rank
that fails ends every rank in one line, and a world of one is one process."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import torch
from PIL import Image

from loftup.cli import main
from model_helpers import ROWS_ROUND_BY_COUNT
from processes import GLOO_THREADS, REPO, gloo_left
from upsample_helpers import noise_picture, outputs, upsample_small

#: ``python -m loftup`` that says, once the command has returned, how many of gloo's threads
#: are still running: none, or they run into the interpreter's teardown (processes.GLOO_THREADS)
LOFTUP_COUNTING_GLOO_THREADS = (
    GLOO_THREADS
    + """
import sys
from loftup.cli import main

status = main(sys.argv[1:])
print(f"gloo threads left: {gloo_threads()}", file=sys.stderr)
sys.exit(status)
"""
)


def test_torchrun_two_processes_write_what_one_writes(photos, upsampler, tmp_path):
    """Two processes write the bytes one writes, whole or streamed, and resume each its own
    batches; each leaves the process group with gloo's threads ended (a group that outlived
    destroy_process_group, kept by a torch module imported with the backbone, took them into
    the interpreter's teardown, where rank 0 once aborted: "terminate called without an active
    exception")."""
    big = Image.open(photos / "astronaut.png")
    for i in range(3):
        big.crop((60 * i, 40 * i, 60 * i + 70, 40 * i + 56)).save(tmp_path / f"im{i}.png")
    args = [str(tmp_path / "im*.png"), "-m", str(upsampler), "--viz", "--backbone-size", "56"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's processes run (OMP_NUM_THREADS=1)
    try:
        assert main(["upsample", *args, "-o", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    path = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    loftup_cli = tmp_path / "loftup_cli.py"
    loftup_cli.write_text(LOFTUP_COUNTING_GLOO_THREADS)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(loftup_cli)]  # fmt: skip
    one = outputs(tmp_path / "one")
    assert len(one) == 6
    # held whole; and every output streamed tile by tile into its file, two images a batch
    for out, extra in (("two", []), ("two_streamed", ["--stream-above", "0", "--batch-size", "2"])):
        cmd = [*torchrun, "upsample", *args, *extra, "-o", str(tmp_path / out)]
        multi = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert multi.returncode == 0, multi.stderr
        assert "rank 1" in multi.stderr  # really two processes
        assert gloo_left(multi.stderr) == [0, 0], multi.stderr
        assert one == outputs(tmp_path / out), out
        for name in one:
            alone, here = tmp_path / "one" / name, tmp_path / out / name
            if extra and ROWS_ROUND_BY_COUNT:  # batches of two there: a few ulps from one's
                if name.endswith(".pt"):  # the features (the --viz pictures' pixels may move)
                    torch.testing.assert_close(torch.load(here, weights_only=True),
                                               torch.load(alone, weights_only=True),
                                               rtol=0, atol=1e-5)  # fmt: skip
                continue
            assert alone.read_bytes() == here.read_bytes(), (out, name)
    # resumed by two processes: each skips its own batches that are done (rank 0 has im0 and
    # im2, rank 1 im1), and rank 0 reports the total kept
    (tmp_path / "two" / "im2.pt").unlink()
    cmd = [*torchrun, "upsample", *args, "-o", str(tmp_path / "two"), "--resume"]
    multi = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr
    assert gloo_left(multi.stderr) == [0, 0], multi.stderr
    assert f"features of 1 image(s) to {tmp_path / 'two'} (2 already there)" in multi.stdout
    for name in one:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_a_rank_that_fails_under_torchrun_ends_every_rank_in_one_line(photos, upsampler, tmp_path):
    """One process of a torchrun run fails (here rank 1, as a node without the weights would)
    while the other waits for it at the end: each says what ended it in one line, with no
    traceback (the waiting one's gloo error, "Connection closed by peer", was one), and each
    leaves the process group on its way out."""
    big = Image.open(photos / "astronaut.png")
    for i in range(3):
        big.crop((60 * i, 40 * i, 60 * i + 70, 40 * i + 56)).save(tmp_path / f"im{i}.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "im*.png"), "-m", str(upsampler), "-o", str(out),
            "--backbone-size", "56"]  # fmt: skip
    script = tmp_path / "one_rank_fails.py"
    script.write_text(
        GLOO_THREADS + "import os, sys, time\n"
        "import torch.distributed as dist\n"
        "import loftup.extract\n"
        "from loftup.cli import main\n"
        "from loftup.errors import LoftUpError\n"
        "def fail(jobs, pipeline, out_dir, **kw):  # rank 1, once rank 0 waits in the sum\n"
        "    while not all((out_dir / f'im{i}.pt').exists() for i in (0, 2)):\n"
        "        time.sleep(0.05)\n"
        "    time.sleep(1)\n"
        "    raise LoftUpError('no weights on this node')\n"
        "if os.environ['RANK'] == '1':\n"
        "    loftup.extract.run = fail\n"
        f"status = main({args!r})\n"
        "rank = dist.get_rank() if dist.is_initialized() else None\n"
        "print(f'rank {rank} left, gloo threads: {gloo_threads()}', file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    path = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*torchrun, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
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
