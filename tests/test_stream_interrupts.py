"""A SIGTERM or Ctrl-C at the worst moments of writing a file (a streamed output, a file written
atomically) leaves no temporary file: the signal is sent from a profile hook at a chosen point,
so the moment is the same on every run (a run under load once left both of a .pt output's two
temporary files, the signal come after the constructor that made them had returned and before
anyone held them)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

import loftup
from forked import installed
from loftup.cli import main
from loftup.outputs import FeatureFile

#: what the upsample command imports, once for every case (each imported them under its
#: profile hook, which made the imports several times slower): conftest's ``forked``
PREPARED = ["loftup.api", "loftup.extract.folder", "transformers.models.dinov2", "sympy",
            *installed("triton")]  # fmt: skip


def _at(point, out):
    """A profile hook that sends SIGTERM once, at ``point``: ("made", n) the first event in
    loftup's code once ``out`` holds n temporary files; ("return", name) as loftup's function
    ``name`` returns (``"FeatureFile"``: its constructor)."""
    fired = []

    def hook(frame, event, arg):
        if fired or "loftup" not in frame.f_code.co_filename:
            return
        kind, what = point
        if kind == "made":
            hit = len(list(out.glob(".coffee.pt.*.tmp"))) >= what
        elif what == "FeatureFile":
            hit = (
                frame.f_code.co_name == "__init__"
                and type(frame.f_locals.get("self")) is FeatureFile
            )
            hit = hit and event == "return"
        else:
            hit = event == "return" and frame.f_code.co_name == what
        if hit:
            fired.append((event, frame.f_code.co_name))
            os.kill(os.getpid(), signal.SIGTERM)  # loftup's handler raises at the next check

    return hook, fired


def _stderr_of(run) -> tuple[object, str]:
    """``run()``'s value, and what it wrote to ``sys.stderr``."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        value = run()
    return value, err.getvalue()


def _upsample(*images: Path, upsampler, out: Path, more=(), size: int = 80) -> int:
    """``loftup upsample IMAGES`` of every one streamed: its status."""
    return main(["upsample", *map(str, images), *more, "-m", str(upsampler), "-o", str(out),
                 "--size", str(size), "--stream-above", "0"])  # fmt: skip


@pytest.mark.parametrize(
    "point",
    [
        pytest.param(("made", 1), id="first-temporary-made"),
        # 3 s: slow; a SIGTERM as one of the two temporary files is made, in the default suite:
        # this test's [first-temporary-made] case (the same window, the first file's)
        pytest.param(("made", 2), id="second-temporary-made", marks=pytest.mark.slow),
        pytest.param(("return", "FeatureFile"), id="constructor-returns"),
        pytest.param(("return", "compute_streamed"), id="tasks-returned"),
    ],
)
def test_sigterm_at_each_hand_over_of_a_streamed_output_leaves_no_temporary_file(
    photos, upsampler, tmp_path, point, forked
):
    """The .pt output's two temporary files (the archive and its mapped data): SIGTERM just
    after each is made, as their maker returns them, and as the streamed computation hands
    them on to the writers; the run ends with 143 and nothing half-written is left."""
    forked.run(_hand_over, tmp_path / "log", photos=str(photos), upsampler=str(upsampler),
               tmp=str(tmp_path), point=point)  # fmt: skip


def _hand_over(photos: str, upsampler: str, tmp: str, point: list) -> None:
    out = Path(tmp) / "out"
    hook, fired = _at(tuple(point), out)
    sys.setprofile(hook)
    try:
        code, err = _stderr_of(
            lambda: _upsample(
                Path(photos) / "coffee.jpg", upsampler=upsampler, out=out, more=["--no-progress"]
            )
        )
    finally:
        sys.setprofile(None)
    assert fired, f"the run never reached {point}"
    assert code == 143 and "terminated (SIGTERM)" in err
    assert sorted(p.name for p in out.iterdir()) == ["upsample.json"]  # no image, no temporary


@pytest.mark.parametrize(
    "signum",
    [
        pytest.param(signal.SIGTERM, id="sigterm"),
        # 3 s: slow; a stop a finaliser swallowed, raised again, in the default suite:
        # this test's [sigterm] case (the same finaliser, the other signal)
        pytest.param(signal.SIGINT, id="ctrl-c", marks=pytest.mark.slow),
    ],
)
def test_a_stop_a_finaliser_swallows_still_ends_the_run(
    photos, upsampler, tmp_path, signum, forked
):
    """The signal's handler runs in a finaliser (here the tile bar's ``__del__``, as the
    first of two streamed images' tiles are done), where Python cannot pass its exception
    on: once printed "Exception ignored in" and the run went on, wrote both images and ended
    with status 0. Now it stops before the next image, with the signal's status, nothing
    half-written and nothing printed of the finaliser."""
    forked.run(_swallowed, tmp_path / "log", photos=str(photos), upsampler=str(upsampler),
               tmp=str(tmp_path), signum=int(signum))  # fmt: skip


def _swallowed(photos: str, upsampler: str, tmp: str, signum: int) -> None:
    import loftup.tiling

    loftup.tiling.default_tile_size = lambda device: 32  # tiles (and their bar): 4 an image
    out = Path(tmp) / "out"
    fired = []

    def hook(frame, event, arg):
        if not fired and event == "call" and frame.f_code.co_name == "__del__":
            if "tqdm" in frame.f_code.co_filename:
                fired.append(True)
                os.kill(os.getpid(), signum)

    sys.setprofile(hook)
    try:
        images = [Path(photos) / "coffee.jpg", Path(photos) / "astronaut.png"]
        code, err = _stderr_of(lambda: _upsample(*images, upsampler=upsampler, out=out, size=40))
    finally:
        sys.setprofile(None)
    assert fired, "no progress bar was finalised"
    status, line = (
        (143, "terminated (SIGTERM)") if signum == signal.SIGTERM else (130, "interrupted")
    )
    assert (code, line in err, "Exception ignored" in err) == (status, True, False), err[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["upsample.json"]  # no image, no temporary


def test_ctrl_c_as_a_generator_left_open_is_closed_comes_out(upsampler, tmp_path, forked):
    """A pipeline's device and dtype are its first parameter's: ``next(parameters())`` left
    the generator to be finalised where it was dropped, and a Ctrl-C whose handler ran in its
    close (as under a profile hook) was lost, the features computed as if none had come. Now
    it is closed as the code runs: the KeyboardInterrupt comes out."""
    forked.run(_generator_closed, tmp_path / "log", upsampler=str(upsampler))


def _generator_closed(upsampler: str) -> None:
    pipe = loftup.load_pipeline(upsampler)
    images = torch.rand(1, 3, 28, 28)
    started, fired = set(), []

    def hook(frame, event, arg):
        if fired or event != "call" or frame.f_code.co_name != "parameters":
            return
        if id(frame) in started:  # resumed: closed (each is asked for its first only)
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        below = frame.f_back
        while below is not None and not below.f_code.co_filename.endswith("loftup/pipeline.py"):
            below = below.f_back
        if below is not None:  # one the pipeline asks for
            started.add(id(frame))

    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.setprofile(hook)
    try:
        with pytest.raises(KeyboardInterrupt):
            pipe(images, 32)
    finally:
        sys.setprofile(None)
    assert fired


def test_ctrl_c_as_upsample_to_npy_makes_its_file_leaves_nothing(tmp_path, forked):
    """Ctrl-C as the memory-mapped file's constructor returns, inside upsample_to_npy: the
    KeyboardInterrupt comes out and the temporary file is gone with it."""
    forked.run(_npy_made, tmp_path / "log", tmp=str(tmp_path / "work"))


def _npy_made(tmp: str) -> None:
    folder = Path(tmp)
    folder.mkdir()
    torch.manual_seed(0)
    model = loftup.LoftUp(dim=32, num_heads=4, n_freqs=6).eval()
    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 45, 38)
    fired = []

    def hook(frame, event, arg):
        if not fired and event == "return" and frame.f_code.co_name == "__init__":
            if type(frame.f_locals.get("self")) is FeatureFile:
                fired.append(True)
                os.kill(os.getpid(), signal.SIGINT)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.setprofile(hook)
    try:
        with pytest.raises(KeyboardInterrupt):
            loftup.upsample_to_npy(model, lr, image, folder / "feats.npy", progress=False)
    finally:
        sys.setprofile(None)
    assert fired and list(folder.iterdir()) == []


def _write_json(folder):
    from loftup.atomic import atomic_write_bytes

    atomic_write_bytes(folder / "upsample.json", b"{}\n")


def _write_mark(folder):
    from loftup.eval.mask_sweep import write_mark

    write_mark(folder, ["bear"])


def _check_output(folder):
    from loftup.paths import check_file_output

    check_file_output(str(folder / "out.json"), "--json")  # makes a file in it, then removes it


@pytest.mark.parametrize(
    "write", [_write_json, _write_mark, _check_output], ids=["atomic_write", "mask-mark", "check"]
)
def test_ctrl_c_just_after_a_temporary_file_is_made_leaves_nothing(tmp_path, write, forked):
    """Ctrl-C at the first moment the temporary file exists (inside the call that makes it,
    before its name is returned): the writer removes it all the same."""
    forked.run(_temporary_made, tmp_path / "log", tmp=str(tmp_path / "work"), write=write.__name__)


def _temporary_made(tmp: str, write: str) -> None:
    folder = Path(tmp)
    folder.mkdir()
    fired = []

    def hook(frame, event, arg):
        if not fired and any(folder.glob(".*.tmp")):
            fired.append((event, frame.f_code.co_name))
            os.kill(os.getpid(), signal.SIGINT)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.setprofile(hook)
    try:
        with pytest.raises(KeyboardInterrupt):
            globals()[write](folder)
    finally:
        sys.setprofile(None)
    assert fired and list(folder.iterdir()) == []
