"""loftup.extract.run as each torchrun rank runs it, one rank after another in this process:
which files each rank writes, and a rank left without images (more processes than batches);
and the process group a caller joined itself."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import loftup
from loftup.extract import barrier, collect_inputs, process_group, run


@pytest.fixture(scope="module")
def pipeline():
    torch.manual_seed(0)
    return loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28)


def files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def test_each_input_is_written_by_one_rank_and_a_rank_without_images_writes_nothing(
    pipeline, tmp_path
):
    """Three images in batches of two over three processes, one more than there are batches:
    every image is written once, by one rank, with the bytes one process writes; the rank past
    the last batch writes nothing and reports nothing, without an error (it still meets the
    others at the end)."""
    for i in range(3):
        Image.new("RGB", (40, 30), (70 * i, 90, 200)).save(tmp_path / f"im{i}.png")
    jobs, _ = collect_inputs([str(tmp_path / "im*.png")])
    one = tmp_path / "one"
    assert run(jobs, pipeline, one, batch_size=2).written == 3
    reports, written = [], {}
    for rank in range(3):
        out = tmp_path / f"rank{rank}"
        reports.append(run(jobs, pipeline, out, batch_size=2, rank=rank, world_size=3))
        for name, data in files(out).items():
            assert name not in written, f"{name} written by two ranks"
            written[name] = data
    assert written == files(one)
    assert [sorted(files(tmp_path / f"rank{r}")) for r in range(3)] == [
        ["im0.pt", "im1.pt"], ["im2.pt"], []
    ]  # fmt: skip
    assert [(r.written, r.failed) for r in reports] == [(2, []), (1, []), (0, [])]
    # resumed into one folder that lacks a file: each rank keeps its own done batches, and
    # only the owner of the batch missing it (rank 0: im0 and im1) computes that batch again
    (one / "im1.pt").unlink()
    resumed = [
        run(jobs, pipeline, one, batch_size=2, rank=r, world_size=3, resume=True) for r in range(3)
    ]
    assert [(r.written, r.kept) for r in resumed] == [(2, 0), (0, 1), (0, 0)]
    assert files(one) == written


def test_a_process_group_the_caller_joined_is_left_to_it(tmp_path):
    """A script of its own under torchrun that has joined the group before it calls
    upsample_folder keeps it: the group was destroyed under the script, whose next collective
    failed ("Default process group has not been initialized")."""
    import torch.distributed as dist

    assert not dist.is_initialized()
    store = f"file://{tmp_path / 'store'}"
    dist.init_process_group("gloo", init_method=store, rank=0, world_size=1)
    try:
        with process_group(torch.device("cpu"), 2):
            barrier(2)
        assert dist.is_initialized()
        dist.barrier()  # the caller's collectives still run
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    # one it did not have is joined for the block and left after it (here a group of one)
    with pytest.MonkeyPatch.context() as env:
        for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
            env.setenv(key, value)
        env.setenv("MASTER_PORT", "0")
        with process_group(torch.device("cpu"), 2):
            assert dist.is_initialized()
        assert not dist.is_initialized()
