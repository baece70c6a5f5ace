"""``loftup upsample --resume``: a run goes on where it stopped, with its own options and the
same bytes."""

from __future__ import annotations

import json
import os

import torch
from PIL import Image

import loftup
from loftup.cli import main
from loftup.extract import OPTIONS_NAME, upsample_folder
from upsample_helpers import noise_picture


def test_resume_takes_a_local_folder_by_any_of_its_names(
    photos, upsampler, tmp_path, capsys, monkeypatch
):
    """--backbone-weights ./w, ~/w, /abs/w and a link to w are one folder, and so one option
    for --resume (the first two were refused as other options): upsample.json records local
    paths resolved, -m's too; a record of an earlier version, which kept ./w as written,
    still matches from the folder it was run in. Another folder is still refused."""
    import shutil

    from transformers import Dinov2Model

    from loftup.featurizers.dinov2 import tiny_config

    torch.manual_seed(0)
    Dinov2Model(tiny_config()).save_pretrained(tmp_path / "w")
    (tmp_path / "link").symlink_to(tmp_path / "w")
    (tmp_path / "in").mkdir()
    Image.open(photos / "astronaut.png").crop((0, 0, 70, 56)).save(tmp_path / "in" / "a.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    model = os.path.relpath(upsampler, tmp_path)
    args = ["upsample", "in", "-m", model, "-o", "out", "--backbone-size", "56"]
    assert main([*args, "--backbone-weights", "./w"]) == 0
    record = tmp_path / "out" / OPTIONS_NAME
    options = json.loads(record.read_text())
    w = str((tmp_path / "w").resolve())
    assert options["backbone_weights"] == w
    assert options["model"] == str(upsampler.resolve())
    for name in (w, "~/w", "link"):
        capsys.readouterr()
        assert main([*args, "--backbone-weights", name, "--resume"]) == 0, capsys.readouterr()
        assert "(1 already there)" in capsys.readouterr().out
    record.write_text(json.dumps({**options, "backbone_weights": "./w"}))  # an older record
    assert main([*args, "--backbone-weights", w, "--resume"]) == 0
    shutil.copytree(tmp_path / "w", tmp_path / "w2")
    capsys.readouterr()
    assert main([*args, "--backbone-weights", "w2", "--resume"]) == 2
    assert f"--backbone-weights {w} there, {tmp_path.resolve() / 'w2'} now" in (
        capsys.readouterr().err
    )


def _contents(out):
    """Each file's bytes in ``out``; its record's as its keys less the id of the run that wrote
    it (each run writes its own, a resumed one too)."""
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    record = json.loads(files[OPTIONS_NAME])
    assert len(record.pop("run")) == 32
    files[OPTIONS_NAME] = record
    return files


def test_resume_goes_on_with_the_same_options_and_the_same_bytes(
    photos, upsampler, tmp_path, capsys
):
    """An interrupted run (here: files deleted) goes on with --resume: batches whose outputs
    are all there are skipped, untouched; a batch with any output missing is computed again,
    whole, giving the bytes of the uninterrupted run. Other options are refused by name."""
    big = Image.open(photos / "astronaut.png")
    for i in range(5):
        big.crop((50 * i, 30 * i, 50 * i + 70, 30 * i + 56)).save(tmp_path / f"im{i}.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "im*.png"), "-m", str(upsampler), "-o", str(out),
            "--batch-size", "2", "--backbone-size", "56", "--viz"]  # fmt: skip
    assert main(args) == 0
    first = _contents(out)
    assert len(first) == 11 and OPTIONS_NAME in first
    options = first[OPTIONS_NAME]
    assert options["backbone"] == "dinov2_tiny" and options["batch_size"] == 2
    assert options["size"] is None and len(options["upsampler_sha256"]) == 16
    inode = {name: (out / name).stat().st_ino for name in first}  # a rewrite makes a new one
    # batches [im0, im1], [im2, im3], [im4]: the last two lose an output each
    (out / "im3_viz.png").unlink()
    (out / "im4.pt").unlink()
    # what a killed run was writing (kill -9: no handler removed it) goes with the resume
    (out / ".im4.pt.k1ll3d_0.tmp").write_bytes(b"half")
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    said = capsys.readouterr()
    assert f"features of 3 image(s) to {out} (2 already there)" in said.out
    assert "removed 1 unfinished file(s) of the interrupted run" in said.err
    assert _contents(out) == first
    assert all((out / n).stat().st_ino == inode[n] for n in ("im0.pt", "im1_viz.png"))
    assert all((out / n).stat().st_ino != inode[n] for n in ("im2.pt", "im3.pt", "im2_viz.png"))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert f"features of 0 image(s) to {out} (5 already there)" in capsys.readouterr().out

    # other options, other weights, or files of unknown making: refused, nothing written
    other = tmp_path / "other"
    torch.manual_seed(1)
    loftup.LoftUp(dim=32).save_pretrained(other, backbone="dinov2_tiny")
    for change, said in (
        (["--size", "64"], "--size unset there, 64 now"),
        (["--save-dtype", "float16"], "--save-dtype float32 there, float16 now"),
        (["-m", str(other)], f"-m's weights {options['upsampler_sha256']} there"),
    ):
        assert main([*args, *change, "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"--resume: the files in {out} were made with other options (" in err, err
        assert said in err and "use the same options, or another -o" in err, err
        # a whole run with other options is refused too: the record describes every file, and
        # a later --resume would keep the others
        assert main([*args, *change]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: the files in {out} were made with other options (")
        assert said in err and "(with --resume to skip what is done), or another -o" in err
    assert _contents(out) == first
    (out / OPTIONS_NAME).write_text("[1]")
    assert main([*args, "--resume"]) == 2
    assert "cannot be read (a JSON object was expected, not list)" in capsys.readouterr().err
    (out / OPTIONS_NAME).unlink()
    assert main([*args, "--resume"]) == 2
    assert f"{out} holds files but no {OPTIONS_NAME}" in capsys.readouterr().err
    fresh = [*args[:5], str(tmp_path / "new"), *args[6:], "--resume"]
    assert main(fresh) == 0  # nothing there yet: a resumed run of nothing is a whole run
    assert "features of 5 image(s)" in capsys.readouterr().out


def test_the_record_of_a_run_that_left_no_output_is_replaced_not_a_refusal(
    photos, upsampler, tmp_path, capsys
):
    """A run whose every image failed left its upsample.json, which refused every later run
    with other options into that folder ("made with other options (size 64 there, None
    now)"), though no file there was made with them: replaced now, said in one line. Where
    an output of its kind is there (in a subfolder too), still refused."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_bytes(b"")  # every image of the first run fails
    Image.open(photos / "astronaut.png").crop((0, 0, 35, 28)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["upsample", "-m", str(upsampler), "-o", str(out), "--backbone-size", "28"]
    args += ["--no-progress"]
    assert main([*args, str(tmp_path / "in"), "--size", "64"]) == 1
    record = json.loads((out / OPTIONS_NAME).read_text())  # ended, every image failed
    assert (record["size"], record["finished"], record["written"]) == (64, True, 0)
    capsys.readouterr()
    assert main([*args, str(tmp_path / "a.png")]) == 0
    assert capsys.readouterr().err == (
        f"replacing {out / OPTIONS_NAME}: its run, of other options (--size 64 there, unset now), "
        "finished leaving no output there\n"
    )
    assert json.loads((out / OPTIONS_NAME).read_text())["size"] is None
    (out / "sub").mkdir()
    (out / "a.pt").rename(out / "sub" / "a.pt")  # an output of a stem with a folder
    assert main([*args, str(tmp_path / "a.png"), "--size", "64"]) == 2
    err = capsys.readouterr().err
    assert f"the files in {out} were made with other options (--size unset there, 64 now)" in err
    (out / "sub" / "a.pt").unlink()
    (out / "a.npy").write_bytes(b"")  # no kind of output the record says loftup wrote
    assert main([*args, str(tmp_path / "a.png"), "--size", "64", "--format", "pt"]) == 0
    assert "replacing" in capsys.readouterr().err and (out / "a.pt").is_file()


def test_a_run_still_on_its_first_image_is_not_taken_for_one_that_left_no_output(
    photos, upsampler, tmp_path, capsys, monkeypatch
):
    """upsample.json is written before the first output: a second run with other options,
    started while the first was on its first image, took the record for one of a run that
    left no output, replaced it, and both wrote their files under the second's record (which
    --resume then accepted). Only a record that says its run finished is replaced now; the
    second run here starts where the first is about to compute its first image."""
    import loftup.extract as extract

    Image.open(photos / "astronaut.png").crop((0, 0, 35, 28)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "a.png"), "-m", str(upsampler), "-o", str(out)]
    args += ["--backbone-size", "28", "--no-progress"]
    first_run, second = extract.run, []

    def second_run_starts(*a, **k):  # the first run has written its record, no output yet
        if not second:  # (not the second run's own, where it is let in)
            second.append("started")
            second[0] = main(args)  # another --size
            second.append(capsys.readouterr().err)
        return first_run(*a, **k)

    monkeypatch.setattr(extract, "run", second_run_starts)
    assert main([*args, "--size", "64"]) == 0
    assert second[0] == 2, second
    assert (
        f"the files in {out} were made with other options (--size 64 there, unset now)"
        in (second[1])
    )
    assert (
        "its record does not say its run finished (a run may be writing there now, was "
        f"killed, or was written by an earlier loftup), and no output is there now: if no run "
        f"is writing there, remove {out / OPTIONS_NAME}" in second[1]
    )
    record = json.loads((out / OPTIONS_NAME).read_text())
    assert (record["size"], record["finished"], record["written"]) == (64, True, 1)


def test_a_run_that_ends_leaves_the_record_another_run_wrote_meanwhile(
    photos, upsampler, tmp_path, capsys, monkeypatch
):
    """A run marks its record finished as it ends, only where the record is still the one it
    wrote: a run of another --format begun meanwhile recorded both kinds of output, and the
    first one's record put back would say the folder holds none of the other's (whose files a
    later run of that format then refused as not loftup's). The other, ending first, leaves it
    unfinished (this one writes still); this one, the last listed to end, marks it as it is."""
    import loftup.extract as extract

    Image.open(photos / "astronaut.png").crop((0, 0, 35, 28)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "a.png"), "-m", str(upsampler), "-o", str(out)]
    args += ["--backbone-size", "28", "--no-progress"]
    first_run, second = extract.run, []

    def second_run_starts(*a, **k):
        if not second:  # (not the second run's own)
            second.append("started")
            second[0] = main([*args, "--format", "npy"])
        return first_run(*a, **k)

    monkeypatch.setattr(extract, "run", second_run_starts)
    assert main(args) == 0 and second == [0]
    record = json.loads((out / OPTIONS_NAME).read_text())
    assert (record["outputs"], record["format"]) == (["npy", "pt"], "npy")
    assert record["finished"] is True  # the first, the last of the two to end, marked it
    monkeypatch.setattr(extract, "run", first_run)
    assert main([*args, "--format", "npy"]) == 0, capsys.readouterr().err


def test_resume_computes_again_an_image_changed_since_its_output_was_written(
    photos, upsampler, tmp_path, capsys
):
    """An input edited or replaced after the interrupted run wrote its output kept its old
    features under --resume: an output older than its input is computed again now, and said;
    one newer than its input is kept, untouched."""
    (tmp_path / "in").mkdir()
    for name, box in (("a", (0, 0, 35, 28)), ("b", (40, 40, 75, 68))):
        Image.open(photos / "astronaut.png").crop(box).save(tmp_path / "in" / f"{name}.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "in"), "-m", str(upsampler), "-o", str(out)]
    args += ["--backbone-size", "28", "--no-progress"]
    assert main(args) == 0
    b_written = (out / "b.pt").stat().st_mtime_ns
    Image.open(photos / "coffee.jpg").crop((0, 0, 35, 28)).save(tmp_path / "in" / "a.png")
    later = (out / "a.pt").stat().st_mtime + 10  # (a coarse clock would tell no difference)
    os.utime(tmp_path / "in" / "a.png", (later, later))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    said = capsys.readouterr()
    assert "--resume: 1 image(s) changed since their outputs were written" in said.err, said
    assert "(1 already there)" in said.out, said
    assert (out / "b.pt").stat().st_mtime_ns == b_written
    again = ["upsample", str(tmp_path / "in" / "a.png"), *args[2:4], "-o", str(tmp_path / "new")]
    assert main([*again, *args[6:]]) == 0
    assert torch.equal(torch.load(out / "a.pt"), torch.load(tmp_path / "new" / "a.pt"))
    # from Python, as it calls the option (it was told "--resume")
    later = (out / "a.pt").stat().st_mtime + 10
    os.utime(tmp_path / "in" / "a.png", (later, later))
    capsys.readouterr()
    upsample_folder(tmp_path / "in", out, model=str(upsampler), backbone_size=28, resume=True,
                    progress=False)  # fmt: skip
    said = capsys.readouterr().err
    assert said.startswith("resume=True: 1 image(s) changed since their outputs"), said


def test_a_resume_in_batches_says_the_batch_mates_it_computes_again(upsampler, tmp_path, capsys):
    """With --batch-size 2 a batch with one changed image is computed again whole: it was told
    "1 image(s) changed ... computed again", not that its batch-mate was too."""
    (tmp_path / "in").mkdir()
    for name in "ab":
        noise_picture(tmp_path / "in" / f"{name}.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "in"), "-m", str(upsampler), "-o", str(out)]
    args += ["--backbone-size", "28", "--no-progress", "--batch-size", "2"]
    assert main(args) == 0
    later = (out / "a.pt").stat().st_mtime + 10
    os.utime(tmp_path / "in" / "a.png", (later, later))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    said = capsys.readouterr().err
    assert "1 image(s) changed since their outputs were written: computed again, with 1 other " \
        "image(s) of their batches" in said, said  # fmt: skip
    # a batch-mate whose output is missing is computed anyway: not one of those others
    (out / "b.pt").unlink()
    os.utime(tmp_path / "in" / "a.png", (later + 10, later + 10))
    assert main([*args, "--resume"]) == 0
    said = capsys.readouterr().err
    assert "written: computed again\n" in said and "other image(s)" not in said, said
