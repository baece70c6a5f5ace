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


def test_a_bar_in_a_notebook_is_redrawn_as_on_a_terminal(capsys, monkeypatch):
    """Under a Jupyter kernel (IPython running) stderr says it is no terminal: a streamed
    output's tiles' bar there was redrawn every 5 s, as into a log; a process's own line
    (``position``) is kept where bars are drawn as on a terminal, the one line in a log."""
    from types import SimpleNamespace

    from loftup.bars import bar_settings

    kernel = SimpleNamespace(get_ipython=lambda: object())
    monkeypatch.setitem(sys.modules, "IPython", kernel)
    assert bar_settings()["mininterval"] == 0.1  # capsys' stderr, no terminal: as a kernel's
    assert bar_settings(position=1) == {
        "file": sys.stderr, "mininterval": 0.1, "dynamic_ncols": True, "position": 1,
    }  # fmt: skip
    kernel.get_ipython = lambda: None  # IPython imported, not running this: a log
    assert bar_settings()["mininterval"] == 5.0
    assert bar_settings(position=1)["position"] == 0


def test_a_second_process_s_image_bar_stays_on_its_line_in_a_log(upsampler, tmp_path, capsys):
    """upsample's bar over a process's images took ``position=rank`` in a log too: rank 1's
    drew each update after a newline and moved the cursor back up (escape codes in the
    log), where every other bar is drawn on the one line (loftup.bars)."""
    from PIL import Image

    import loftup
    from loftup.extract import collect_inputs, run

    for i in range(4):
        Image.new("RGB", (24, 16), (40 * i, 90, 30)).save(tmp_path / f"im{i}.png")
    jobs, _ = collect_inputs([str(tmp_path / "im*.png")])
    pipeline = loftup.load_pipeline(str(upsampler), device="cpu")
    report = run(jobs, pipeline, tmp_path / "out", size=8, rank=1, world_size=2)
    assert report.written == 2 and not report.failed
    err = capsys.readouterr().err
    assert "upsample [rank 1]:" in err and "2/2" in err, err
    assert "\x1b[" not in err, repr(err)


@pytest.mark.parametrize("flag", [[], ["--no-progress"]])
def test_world_scenes_bar_is_redrawn_into_a_log_a_few_times_unless_no_progress(
    tmp_path, capsys, flag
):
    """Into a log (stderr no terminal: a nohup or scheduler log) a bar is redrawn every 5 s
    (loftup.bars), but world scenes', training's, eval's, the demo's and the experiments' bars
    took tqdm's 0.1 s: 120 scenes of a few seconds drew some 30 bars into it. They are drawn
    at the start, at the end and every 5 s between (10: a generous bound for a slow machine),
    and world scenes took no --no-progress (the other commands' way to hide them)."""
    out = tmp_path / "scenes"
    assert main(["world", "scenes", "--out", str(out), "--count", "120", *flag]) == 0
    err = capsys.readouterr().err
    draws = err.count("scenes:")
    assert (0 < draws <= 10) if not flag else draws == 0, err
    assert "120/120" in err or flag, err
    assert len(list((out / "labels").glob("*.png"))) == 120


def test_the_backbone_s_loss_does_not_redraw_its_bar_into_a_log(tmp_path, capsys):
    """The backbone's training set its bar's loss every 10 steps with tqdm's default refresh,
    a draw each time whatever the 5 s (loftup.bars): a log took one every 10 steps (about a
    second on a CPU, less on a GPU). Its loss is shown at the bar's next draw."""
    import time

    from loftup.featurizers.scenes_vit import SceneViTConfig
    from loftup.world.backbone import BackboneRecipe, train_backbone

    recipe = BackboneRecipe(steps=11, batch_size=1, scenes=2, size=16, warmup=0, eval_scenes=0)
    arch = SceneViTConfig(dim=16, depth=1, num_heads=1, stem=(8, 16))
    start = time.monotonic()
    train_backbone(recipe, tmp_path, architecture=arch)
    took = time.monotonic() - start
    draws = capsys.readouterr().err.count("backbone:")
    assert draws <= 2 + int(took // 5), (draws, took)  # at the start and the end (it was 4)


def test_every_bar_in_the_package_is_drawn_by_the_one_rule():
    """Each tqdm bar of the package takes loftup.bars' settings (the rule above); a bar
    added without them would draw into a log ten times a second again."""
    from pathlib import Path

    import loftup

    calls = []
    for path in Path(loftup.__file__).parent.rglob("*.py"):
        text = path.read_text()
        for start in (i for i in range(len(text)) if text.startswith("tqdm(", i)):
            if text[start - 1].isalnum() or text[start - 1] in "_.":
                continue  # another name ending in tqdm, or tqdm.tqdm( said
            depth, end = 0, start + 4
            while True:  # to the call's closing parenthesis
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
                end += 1
            calls.append((path.name, text[start : end + 1]))
    assert len(calls) >= 15, calls
    assert [c for c in calls if "**bar_settings(" not in c[1]] == []
    # hidden through bar_settings(shown=...): a disable= given beside it overrides TQDM_DISABLE
    assert [c for c in calls if "disable=" in c[1]] == []


def test_tqdm_s_own_environment_settings_are_the_user_s():
    """Every bar took bar_settings()' keywords, which override tqdm's environment: a user's
    ``TQDM_MININTERVAL=30`` (a log written less often still) was ignored by them all. A
    setting given there is left to tqdm; the others are still loftup's. (tqdm reads its
    environment as it is imported: a process of its own.)"""
    import os
    import subprocess

    script = (
        "import sys\nfrom tqdm import tqdm\nfrom loftup.bars import bar_settings\n"
        "settings = bar_settings()\n"
        "with tqdm(total=2, **settings) as bar:\n"
        "    print(bar.mininterval, settings['file'] is sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    said = {}
    for interval in ("30", None):
        if interval is None:
            env.pop("TQDM_MININTERVAL", None)
        else:
            env["TQDM_MININTERVAL"] = interval
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
        said[interval] = run.stdout.decode().split()
    from loftup.bars import _reads_environment

    users = "30.0" if _reads_environment() else "5.0"  # (a tqdm before 4.66 reads none of it)
    assert said == {"30": [users, "True"], None: ["5.0", "True"]}, said  # else a log's 5 s


def test_tqdm_disable_in_the_environment_hides_loftup_s_bars_too():
    """Every bar was given ``disable=not progress``, which overrides tqdm's own
    ``TQDM_DISABLE=1``: a user's (or a CI's) way to hide every tqdm bar drew loftup's all the
    same. Left to tqdm where the bar is shown; hidden whatever it says under --no-progress."""
    import os
    import subprocess

    from loftup.bars import _reads_environment

    if not _reads_environment():
        pytest.skip("tqdm before 4.66 reads no TQDM_* variable")
    script = (
        "from loftup.bars import bar_settings\n"
        "from loftup.data.scenes import SceneConfig\n"
        "from loftup.world.probe import scene_batch\n"
        "scene_batch(SceneConfig(height=16, width=16), 0, range(2), progress=True)\n"
        "print(bar_settings(shown=False)['disable'])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TQDM_DISABLE": "1"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stderr.decode() == "" and run.stdout.decode() == "True\n", run
