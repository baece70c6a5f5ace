"""``loftup eval davis --workers N``: the frames are read in N worker processes while the main
one propagates labels, with the scores of a run that reads them itself."""

import pytest

from eval_data import write_davis
from loftup.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _frames_read_here(monkeypatch) -> list:
    """The frames this process opens, from now on (a worker process's reads are its own)."""
    import loftup.eval.video as video

    read, open_rgb = [], video.open_rgb

    def counted(path):
        read.append(path)
        return open_rgb(path)

    monkeypatch.setattr(video, "open_rgb", counted)
    return read


def test_workers_read_the_frames_and_the_scores_stay_the_same(tmp_path, monkeypatch):
    """--workers was accepted by ``eval davis`` and did nothing: every frame was read in the
    main process, between the propagation of one batch and the next."""
    from eval_data import run_eval

    write_davis(tmp_path, frames=5)  # 2 sequences of 5: batches of 2 end inside each
    common = ["--size", "28", "--no-cache", "--batch-size", "2", "--max-frames", "5"]
    read = _frames_read_here(monkeypatch)
    alone = run_eval("davis", tmp_path, "highres", tmp_path, *common, name="alone")
    assert len(read) >= 10  # every frame, here (and the figure's few)
    read.clear()
    workers = run_eval("davis", tmp_path, "highres", tmp_path, *common, "--workers", "2",
                       name="workers")  # fmt: skip
    assert len(read) <= 4  # the figure's examples only: the frames were the workers'
    for key in ("metrics", "per_sequence", "per_object", "features"):
        assert workers[key] == alone[key], key
    assert workers["settings"]["workers"] == 2


def test_a_frame_a_worker_cannot_read_is_named_in_one_line(tmp_path, capsys):
    write_davis(tmp_path, frames=3)
    frame = tmp_path / "JPEGImages" / "480p" / "car" / "00001.jpg"
    data = frame.read_bytes()
    frame.write_bytes(data[: data.index(b"\xff\xda") + 20])  # its header reads, not its pixels
    args = ["eval", "davis", "--root", str(tmp_path), "--backbone", "dinov2_tiny", "--upsampler",
            "bilinear", "--size", "28", "--no-cache", "--no-progress", "--workers", "1",
            "--json", str(tmp_path / "r.json")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(frame) in err[0], err
    assert not (tmp_path / "r.json").exists()
