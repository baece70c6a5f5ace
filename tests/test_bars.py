"""Progress bars (loftup.bars): where the bar over a streamed output's tiles is drawn."""

from __future__ import annotations

import sys

import pytest
import torch

from loftup import LoftUp
from loftup.cli import main
from loftup.tiling import upsample

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_tiles_bar_is_drawn_into_a_log_under_another_bar(capsys):
    """The bar over the tiles was drawn on a terminal only: a 4096 x 4096 output streamed for
    20 minutes on a CPU and its log (stderr into a file) said nothing of them, where the bars
    around it (upsample's over the images) were drawn there. Under such a bar it is drawn on
    the one line, without the cursor moves that nest bars on a terminal (in a log, a line each
    and escape codes)."""
    from tqdm import tqdm

    torch.manual_seed(0)
    model = LoftUp(dim=16, num_heads=2).eval()
    lr, image = torch.randn(1, 16, 4, 4), torch.randn(1, 3, 32, 48)
    with tqdm(total=1, desc="upsample", file=sys.stderr) as outer:  # as loftup upsample's
        upsample(model, lr, image, tile_size=16, conv="direct", progress=True)  # 2 x 3 tiles
        outer.update(1)
    err = capsys.readouterr().err
    assert "tiles:   0%|" in err and "| 0/6 " in err, err
    assert "\x1b[" not in err and "\n" not in err.rstrip("\n"), repr(err)


@pytest.mark.parametrize("flag, drawn", [([], True), (["--no-progress"], False)])
def test_bench_stream_s_tiles_bar_is_in_its_log_unless_no_progress(capsys, flag, drawn):
    """`loftup bench --stream N` into a log: its tiles' bar is there as its table's is, and
    --no-progress hides both."""
    argv = ["bench", "--sizes", "16", "--dim", "32", "--grid", "4", "--repeats", "1"]
    argv += ["--warmup", "0", "--no-peak", "--tile-size", "16", "--stream", "48", *flag]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("tiles:" in err) is drawn and ("bench:" in err) is drawn, err


@pytest.fixture(scope="module")
def upsampler(tmp_path_factory):
    """A random-weight upsampler for the tiny backbone, as a save_pretrained folder."""
    folder = tmp_path_factory.mktemp("up")
    torch.manual_seed(0)
    LoftUp(dim=32).save_pretrained(folder, backbone="dinov2_tiny")
    return folder


@pytest.mark.parametrize("flag, drawn", [([], True), (["--no-progress"], False)])
def test_upsample_s_bars_are_in_its_log_unless_no_progress(
    upsampler, tmp_path, capsys, monkeypatch, flag, drawn
):
    """`loftup upsample` into a log draws its bar over the images and, for an image streamed
    into its file, the one over its tiles; it took no --no-progress (the other commands' way
    to hide them)."""
    import numpy as np
    from PIL import Image

    import loftup.tiling

    monkeypatch.setattr(loftup.tiling, "default_tile_size", lambda device: 16)  # a few tiles
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    argv = ["upsample", str(tmp_path / "a.png"), "-m", str(upsampler), "-o", str(tmp_path / "o")]
    assert main([*argv, "--stream-above", "0", *flag]) == 0
    said = capsys.readouterr()
    assert ("upsample:" in said.err) is drawn and ("tiles:" in said.err) is drawn, said.err
    assert "wrote float32 features of 1 image(s)" in said.out
    assert (tmp_path / "o" / "a.pt").is_file()
