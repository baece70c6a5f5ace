"""Outputs streamed tile by tile into their files: the same files as held whole, never held
whole, and no temporary file left by a run ended while it streams."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image

import loftup
from loftup.cli import main
from loftup.extract import collect_inputs
from processes import src_env
from upsample_helpers import outputs


def test_streamed_outputs_are_the_same_files(photos, upsampler, tmp_path, capsys, tiles_of_64):
    """--stream-above 0 writes every output tile by tile through a memory map: the same bytes
    as holding it whole, in every format and stored dtype, batched or not, pictures too."""
    args = ["upsample", str(photos), "-m", str(upsampler), "--viz", "--size", "80"]
    runs = [  # 80 x 80 and 80 x 120 outputs: 2 x 2 tiles of 64 each
        ["--format", "pt", "--batch-size", "2"],
        ["--format", "npy", "--save-dtype", "float16"],
        ["--format", "safetensors", "--save-dtype", "bfloat16"],
    ]
    for i, extra in enumerate(runs):
        whole, streamed = tmp_path / f"whole{i}", tmp_path / f"streamed{i}"
        assert main([*args, *extra, "-o", str(whole)]) == 0
        assert main([*args, *extra, "-o", str(streamed), "--stream-above", "0"]) == 0
        names = outputs(whole)
        assert len(names) == 4 and names == outputs(streamed)
        for name in names:  # no temporary file left either
            assert (whole / name).read_bytes() == (streamed / name).read_bytes(), (extra, name)
    # an output that cannot be put in place (a folder there) fails its image only
    (tmp_path / "blocked" / "coffee.pt").mkdir(parents=True)
    capsys.readouterr()
    code = main([*args, "-o", str(tmp_path / "blocked"), "--stream-above", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "coffee.jpg: could not write its outputs" in err
    assert "Traceback" not in err
    left = outputs(tmp_path / "blocked")
    assert left == ["astronaut.pt", "astronaut_viz.png", "coffee.pt"]  # and nothing half-written
    assert main([*args, "-o", str(tmp_path / "x"), "--stream-above", "-1"]) == 2


def test_a_streamed_output_is_never_held_whole(photos, upsampler, tmp_path, tiles_of_64):
    """Streamed, the pipeline hands the output over tile by tile and never returns it whole;
    above the threshold only (the default, 1 GB, is far above these outputs)."""
    from loftup.extract import collect_inputs, run

    pipe = loftup.load_pipeline(upsampler, device="cpu")
    returned, tiles = [], []

    def spy(images, size=None, callback=None, progress=False):
        def counted(tile, feats):
            tiles.append((tile.rows, tile.cols))
            callback(tile, feats)

        counted_or_none = None if callback is None else counted
        lr, hr = pipe(images, size, callback=counted_or_none, progress=progress)
        returned.append(hr)
        return lr, hr

    spy.upsampler, spy.dtype, spy.featurizer = pipe.upsampler, pipe.dtype, pipe.featurizer
    spy.backbone_size = pipe.backbone_size
    jobs, _ = collect_inputs([str(photos / "coffee.jpg")])
    assert run(jobs, spy, tmp_path / "a", size=80, stream_above=32 * 80 * 120 * 4 - 1).written
    assert returned == [None] and len(tiles) == 4  # 2 x 2 tiles of 64
    assert run(jobs, spy, tmp_path / "b", size=80).written  # 1.2 MB: held whole
    assert returned[1].shape == (1, 32, 80, 120) and len(tiles) == 4
    a = torch.load(tmp_path / "a" / "coffee.pt", weights_only=True)
    assert torch.equal(a, torch.load(tmp_path / "b" / "coffee.pt", weights_only=True))
    assert not run(jobs, spy, tmp_path / "c", size=80, stream_above=32 * 80 * 120 * 4).failed
    assert returned[2] is not None  # exactly at the threshold: held whole


# 5-8 s: slow; a SIGTERM as a streamed output is made, handed on and written, exit status 143
# and nothing half-written left, in the default suite: test_stream_interrupts.py::test_sigterm_
# at_each_hand_over_of_a_streamed_output_leaves_no_temporary_file
@pytest.mark.slow
def test_sigterm_while_streaming_leaves_no_temporary_file(photos, upsampler, tmp_path):
    """A job scheduler's cancel (SIGTERM) in the middle of an output streamed into its file:
    the half-written temporary file (gigabytes, for a large one) is removed on the way out,
    as with Ctrl-C, and the exit status says why (it was left behind, hidden)."""
    import signal
    import time

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "loftup", "upsample", str(photos / "coffee.jpg")]
    cmd += ["-m", str(upsampler), "-o", str(out), "--size", "1500", "--stream-above", "0"]
    proc = subprocess.Popen(
        cmd, env=src_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (out.is_dir() and list(out.glob(".coffee.pt.*.tmp"))):  # streaming has begun
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err, err[-2000:]
    assert outputs(out) == []


def test_a_run_ended_while_it_waits_for_a_writer_leaves_no_temporary_file(
    upsampler, tmp_path, monkeypatch
):
    """Streamed files of a batch that were not yet handed to a writer when the run ended
    (Ctrl-C while it waited for an earlier file, delivered here through that file's writer)
    are deleted on the way out; they were left behind, each of the output's full size."""
    import loftup.outputs
    from loftup.extract import run

    for i in range(6):
        Image.new("RGB", (24, 16), (40 * i, 90, 30)).save(tmp_path / f"im{i}.png")
    jobs, _ = collect_inputs([str(tmp_path / "im*.png")])
    drawn = []

    def picture(*args, **kwargs):  # the second file's picture: the interrupted wait
        drawn.append(1)
        if len(drawn) == 2:
            raise KeyboardInterrupt
        return b"png"

    monkeypatch.setattr(loftup.outputs, "comparison_png", picture)
    pipeline = loftup.load_pipeline(upsampler, device="cpu")
    out = tmp_path / "out"
    # batches of 3, 2 files waiting at most: im1's file is awaited when im3's is handed over
    with pytest.raises(KeyboardInterrupt):
        run(jobs, pipeline, out, size=8, fmt="npy", viz=True, batch_size=3, writers=1,
            stream_above=0)  # fmt: skip
    names = sorted(p.name for p in out.iterdir())
    assert names == ["im0.npy", "im0_viz.png", "im2.npy", "im2_viz.png", "im3.npy", "im3_viz.png"]
