"""loftup.extract.run: what it writes, and what it refuses to write."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import loftup
from loftup.extract import OPTIONS_NAME, collect_inputs, run


@pytest.fixture(scope="module")
def loud_pipeline():
    """A pipeline whose features are about 1e6: more than float16 holds (65504)."""
    torch.manual_seed(0)
    upsampler = loftup.LoftUp(dim=32)
    with torch.no_grad():
        upsampler.head.norm.bias.fill_(1e6)
    return loftup.load_pipeline(upsampler, backbone="dinov2_tiny", backbone_size=28)


@pytest.fixture
def two_images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (40, 30), (60 * i, 90, 200)).save(folder / f"im{i}.png")
    return collect_inputs([str(folder)])[0]


@pytest.mark.parametrize("stream_above", [1e9, 0], ids=["whole", "streamed"])
def test_features_the_stored_dtype_cannot_hold_are_a_failure_not_infinities(
    loud_pipeline, two_images, tmp_path, stream_above
):
    """Features beyond the stored dtype's range were written as inf (float16 holds up to
    65504) and counted as written; each image now fails by name, with the fix, and leaves no
    file (a resumed run computes it again)."""
    out = tmp_path / "out"
    out.mkdir()
    report = run(
        two_images, loud_pipeline, out, save_dtype=torch.float16, stream_above=stream_above
    )
    assert report.written == 0
    assert [path for path, _ in report.failed] == [str(job.path) for job in two_images]
    reason = report.failed[0][1]
    assert "float16" in reason and "--save-dtype float32" in reason, reason
    assert sorted(p.name for p in out.iterdir() if p.name != OPTIONS_NAME) == []
    # stored as float32, the same features are written
    report = run(two_images, loud_pipeline, out, stream_above=stream_above)
    assert report.written == 2 and not report.failed
    feats = torch.load(out / "im0.pt", weights_only=True)
    assert torch.isfinite(feats).all() and feats.abs().max() > 65504
