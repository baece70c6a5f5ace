"""``loftup upsample``'s record, ``upsample.json``: which run marks it finished, and what a run
does where it cannot, or where the record says nothing of its run's end."""

from __future__ import annotations

import errno
import json

import pytest
from PIL import Image

from loftup.cli import main
from loftup.extract import OPTIONS_NAME


def _setup(photos, upsampler, tmp_path):
    Image.open(photos / "astronaut.png").crop((0, 0, 35, 28)).save(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"")  # an image that fails
    out = tmp_path / "out"
    args = ["upsample", "-m", str(upsampler), "-o", str(out), "--backbone-size", "28"]
    return out, [*args, "--no-progress"]


def test_a_run_of_the_same_options_ending_does_not_finish_the_record_of_one_still_running(
    photos, upsampler, tmp_path, capsys, monkeypatch
):
    """Two runs of the same options wrote the same record, so the one that ended first (every
    image failed) marked finished the record of the other, still on its first image; a run of
    other options then replaced it, and the first run's files ended under its record. A run
    that found a record no run said finished leaves it unfinished as it ends, while the run
    that wrote it writes: the third is refused; that run, the last to end, marks it."""
    import loftup.extract as extract

    out, args = _setup(photos, upsampler, tmp_path)
    first_run, log = extract.run, []

    def others_run(*a, **k):  # the first run has written its record, no output yet
        if not log:  # (not the other runs' own)
            log.append("started")
            log[0] = main([*args, str(tmp_path / "broken.png")])  # same options: ends
            log.append(json.loads((out / OPTIONS_NAME).read_text()))
            capsys.readouterr()
            log.append(main([*args, str(tmp_path / "a.png"), "--size", "64"]))
            log.append(capsys.readouterr().err)
        return first_run(*a, **k)

    monkeypatch.setattr(extract, "run", others_run)
    assert main([*args, str(tmp_path / "a.png")]) == 0
    assert log[0] == 1 and "finished" not in log[1], log[1]
    assert log[2] == 2 and "--size unset there, 64 now" in log[3], log[3]
    record = json.loads((out / OPTIONS_NAME).read_text())
    # the last of the two to end marks it (the first ending, every image failed, did not)
    assert record["size"] is None and (record["finished"], record["written"]) == (True, 1)
    monkeypatch.setattr(extract, "run", first_run)
    assert main([*args, str(tmp_path / "a.png"), "--resume"]) == 0  # takes over: marks it
    record = json.loads((out / OPTIONS_NAME).read_text())
    assert (record["finished"], record["written"]) == (True, 1)


def test_a_record_that_cannot_be_marked_finished_is_a_warning_not_an_error(
    photos, upsampler, tmp_path, capsys, monkeypatch
):
    """A full disk as the record is marked finished, after every output was written, made the
    run an error (exit status 2): a warning now; the record stays unfinished and resumable."""
    import loftup.extract.record as record_module

    out, args = _setup(photos, upsampler, tmp_path)

    def no_room(out_dir, options):  # the disk is full as the run ends
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / OPTIONS_NAME))

    monkeypatch.setattr(record_module, "write_options", no_room)
    assert main([*args, str(tmp_path / "a.png")]) == 0
    assert capsys.readouterr().err == (
        f"warning: {out / OPTIONS_NAME} was left unfinished (its run ended): [Errno 28] No "
        f"space left on device: '{out / OPTIONS_NAME}'\n"
    )
    assert (out / "a.pt").is_file() and "finished" not in json.loads(
        (out / OPTIONS_NAME).read_text()
    )
    monkeypatch.undo()
    assert main([*args, str(tmp_path / "a.png"), "--resume"]) == 0
    assert "(1 already there)" in capsys.readouterr().out


def test_a_record_of_an_earlier_loftup_is_refused_saying_why_and_what_to_do(
    photos, upsampler, tmp_path, capsys
):
    """An earlier loftup's record says nothing of its run's end: never replaced, and the
    refusal said 'its run has not finished', which it may have long ago."""
    out, args = _setup(photos, upsampler, tmp_path)
    assert main([*args, str(tmp_path / "broken.png"), "--size", "64"]) == 1
    old = json.loads((out / OPTIONS_NAME).read_text())
    for key in ("run", "finished", "written"):  # what an earlier version did not write
        old.pop(key, None)
    (out / OPTIONS_NAME).write_text(json.dumps(old))
    capsys.readouterr()
    assert main([*args, str(tmp_path / "a.png")]) == 2
    assert (
        "its record does not say its run finished (a run may be writing there now, was killed, "
        "or was written by an earlier loftup), and no output is there now: if no run is writing "
        f"there, remove {out / OPTIONS_NAME}\n"
    ) in capsys.readouterr().err


def _locked_by_another(out) -> bool:
    """Whether a run starting now would wait for ``out``'s record lock (held by another)."""
    import fcntl
    import os

    try:
        fd = os.open(out / ".upsample.lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_no_run_writes_its_record_while_another_marks_its_own(
    photos, upsampler, tmp_path, monkeypatch
):
    """A run marking its record finished reads it, compares and rewrites it: a run of another
    --format that wrote its record in between (both kinds of output) lost it to the first
    one's (its own kind alone). The record is written and marked under a lock now, held
    only then (not while images are computed), and removed by its holder."""
    import loftup.extract as extract
    import loftup.extract.record as record_module

    out, args = _setup(photos, upsampler, tmp_path)
    seen = {}
    read, write, first_run = record_module.read_json_object, extract.write_options, extract.run

    def marking_reads(path, *a, **k):  # mark_finished's look at the record
        seen["marking"] = _locked_by_another(out)
        return read(path, *a, **k)

    def writing(out_dir, options):  # the record written as a run begins
        seen["writing"] = _locked_by_another(out)
        return write(out_dir, options)

    def running(*a, **k):
        seen["running"] = _locked_by_another(out)
        return first_run(*a, **k)

    monkeypatch.setattr(record_module, "read_json_object", marking_reads)
    monkeypatch.setattr(extract, "write_options", writing)
    monkeypatch.setattr(extract, "run", running)
    assert main([*args, str(tmp_path / "a.png")]) == 0
    assert seen == {"writing": True, "running": False, "marking": True}
    assert sorted(p.name for p in out.iterdir()) == ["a.pt", OPTIONS_NAME]


def test_a_loftup_passed_in_is_run_and_recorded_by_its_weights(upsampler, tmp_path):
    """upsample_folder(model=LoftUp) was a TypeError of os.fspath, after the models loaded,
    writing the record: the files are those of the same weights from their folder, the record
    names the class, and --resume compares the weights' digest."""
    import torch

    import loftup
    from loftup.extract import upsample_folder

    (tmp_path / "in").mkdir()
    Image.new("RGB", (30, 20), (200, 40, 90)).save(tmp_path / "in" / "a.png")
    kw = {"backbone": "dinov2_tiny", "backbone_size": 28, "progress": False}
    upsample_folder(tmp_path / "in", tmp_path / "saved", model=str(upsampler), **kw)
    model = loftup.load_upsampler(upsampler)
    upsample_folder(tmp_path / "in", tmp_path / "given", model=model, **kw)
    want = torch.load(tmp_path / "saved" / "a.pt", weights_only=True)
    assert torch.equal(torch.load(tmp_path / "given" / "a.pt", weights_only=True), want)
    record = json.loads((tmp_path / "given" / OPTIONS_NAME).read_text())
    assert record["model"] == "a LoftUp passed in"
    saved = json.loads((tmp_path / "saved" / OPTIONS_NAME).read_text())
    assert record["upsampler_sha256"] == saved["upsampler_sha256"]
    report = upsample_folder(tmp_path / "in", tmp_path / "given", model=model, resume=True, **kw)
    assert report.kept == 1
    torch.manual_seed(1)
    with pytest.raises(loftup.LoftUpError, match=r"upsampler_sha256 .* there, .* now"):
        upsample_folder(
            tmp_path / "in", tmp_path / "given", model=loftup.LoftUp(dim=32), resume=True, **kw
        )


def test_a_users_own_file_does_not_keep_a_record_of_no_output_from_being_replaced(
    photos, upsampler, tmp_path, capsys
):
    """A run into a folder holding the user's own ckpt/model.pt, every image failing, left a
    finished record of no output; the corrected run (other options) was refused, the user's
    file taken for an output of that run, unnamed. A run that began with no record there says
    so in its record: a file older than its start is no run's of it. One that began over an
    earlier run's record vouches for its files still, and the refusal names the one found."""
    out, args = _setup(photos, upsampler, tmp_path)
    (out / "ckpt").mkdir(parents=True)
    (out / "ckpt" / "model.pt").write_text("user data")
    assert main([*args, str(tmp_path / "broken.png"), "--size", "32"]) == 1
    record = json.loads((out / OPTIONS_NAME).read_text())
    assert (record["finished"], record["written"]) == (True, 0)
    capsys.readouterr()
    assert main([*args, str(tmp_path / "a.png"), "--size", "48"]) == 0, capsys.readouterr().err
    assert "replacing" in capsys.readouterr().err
    assert (out / "ckpt" / "model.pt").read_text() == "user data"
    # the same options again, every image failing: its record began over the last one's
    assert main([*args, str(tmp_path / "broken.png"), "--size", "48"]) == 1
    capsys.readouterr()
    assert main([*args, str(tmp_path / "a.png"), "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert "--size 48 there, 32 now" in err and f"but {out / 'a.pt'} is taken for one" in err, err


def test_since_when_the_folder_is_loftups_is_kept_by_whichever_run_ends_last(
    photos, upsampler, tmp_path, monkeypatch
):
    """``alone_since`` (a run began with no record there) was written only by the run that
    began so, as it marked the record finished: where that run was killed, or ended before a
    run that joined its record, the finished record had none. It is in the record from its
    first write now, and every run going on from it keeps it."""
    import loftup.extract as extract
    from loftup.extract import upsample_folder

    out, _ = _setup(photos, upsampler, tmp_path)
    real_run = extract.run

    def killed(*a, **k):  # the record written, the run stopped before any output
        raise RuntimeError("killed")

    monkeypatch.setattr(extract, "run", killed)
    kw = dict(model=str(upsampler), backbone_size=28, progress=False)
    with pytest.raises(RuntimeError, match="killed"):
        upsample_folder(tmp_path / "a.png", out, **kw)
    first = json.loads((out / OPTIONS_NAME).read_text())
    assert type(first.get("alone_since")) is int and "finished" not in first, first
    monkeypatch.setattr(extract, "run", real_run)
    for resume in (True, False):  # a --resume over it, and a run joining its record
        (out / OPTIONS_NAME).write_text(json.dumps(first))
        upsample_folder(tmp_path / "a.png", out, resume=resume, **kw)
        record = json.loads((out / OPTIONS_NAME).read_text())
        assert record["finished"] is True and record["written"] == 1, record
        assert record.get("alone_since") == first["alone_since"], (resume, record)
