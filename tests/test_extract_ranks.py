"""loftup.extract.run as each torchrun rank runs it, one rank after another in this process:
which files each rank writes, and a rank left without images (more processes than batches)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import loftup
from loftup.extract import collect_inputs, run


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
