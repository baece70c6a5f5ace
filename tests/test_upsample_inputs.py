"""What ``loftup upsample`` reads and where it writes: inputs collected from folders, globs and
links, sharded between processes; bad files named and skipped; no output overwriting an input or
a file loftup did not write."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import loftup
from loftup.cli import main
from loftup.extract import OPTIONS_NAME, Job, collect_inputs, shard
from upsample_helpers import noise_picture, outputs, upsample_small


def test_bad_files_are_named_skipped_and_fail_the_run(photos, upsampler, tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    nodata = np.full((30, 40), 0.5, np.float32)
    nodata[:2] = np.nan  # a float TIFF's "no data": that image fails, not the whole run
    Image.fromarray(nodata, "F").save(tmp_path / "nodata.tiff")
    inputs = [str(photos / "astronaut.png"), str(tmp_path / "broken.jpg"), str(tmp_path / "*.tif")]
    inputs.append(str(tmp_path / "nodata.tiff"))
    code = main(
        ["upsample", *inputs, "-m", str(upsampler), "-o", str(tmp_path / "out"), "--size", "32"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "*.tif" in err
    assert f"{tmp_path / 'nodata.tiff'}: 80 of its pixels are NaN" in err
    assert outputs(tmp_path / "out") == ["astronaut.pt"]
    assert not list((tmp_path / "out").glob(".*tmp"))  # no half-written files left
    # nothing at all to read: why, in one line, before any model loads
    nope = str(tmp_path / "nope.png")
    assert main(["upsample", nope, "-m", "no-such-model", "-o", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: no images found in {nope} ({nope}: no such file, folder or matching glob)\n"
    )


def test_an_output_name_the_file_system_cannot_hold_fails_before_its_work(
    photos, upsampler, tmp_path, capsys
):
    """A 254-byte input name fits, its picture's name (``_viz.png``: 258 bytes) does not: the
    image failed only after its features had been computed. Its features' name (253 bytes)
    is written where no picture is asked for."""
    long = tmp_path / ("x" * 250 + ".png")
    Image.open(photos / "astronaut.png").crop((0, 0, 40, 40)).save(long)
    args = ["upsample", str(long), str(photos / "astronaut.png"), "-m", str(upsampler)]
    assert main([*args, "-o", str(tmp_path / "out"), "--size", "32", "--viz"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {long}: its output's name, {'x' * 250}_viz.png, is 258 bytes" in err
    assert f"rename the input ({'x' * 250}) shorter" in err
    assert outputs(tmp_path / "out") == ["astronaut.pt", "astronaut_viz.png"]
    assert main([*args, "-o", str(tmp_path / "out2"), "--size", "32"]) == 0
    assert outputs(tmp_path / "out2") == ["astronaut.pt", "x" * 250 + ".pt"]


def test_pictures_written_into_an_input_folder_are_not_read_back(photos, upsampler, tmp_path):
    Image.open(photos / "astronaut.png").crop((0, 0, 70, 56)).save(tmp_path / "a.png")
    args = ["upsample", str(tmp_path), "-m", str(upsampler), "-o", str(tmp_path), "--viz",
            "--backbone-size", "56"]  # fmt: skip
    assert main(args) == 0 and main(args) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["a.png", "a_viz.png"]


def test_no_output_overwrites_an_input_or_a_file_loftup_did_not_write(
    photos, upsampler, tmp_path, capsys
):
    """-o in an input folder: the picture of a.png is a_viz.png, which may be the user's own
    picture, and an input; a user's own a.npy is where --format npy puts a's features; a
    user's upsample.json is where the record goes. Each is refused before any work, in one
    line naming the file and the fix; loftup's own earlier outputs are overwritten, as
    always (a record of an earlier version, which does not list them, vouches for them)."""
    folder = tmp_path / "in"
    folder.mkdir()
    crop = Image.open(photos / "astronaut.png").crop((0, 0, 70, 56))
    crop.save(folder / "a.png")
    crop.rotate(90).save(folder / "a_viz.png")  # the user's own picture
    mine = (folder / "a_viz.png").read_bytes()
    args = ["upsample", str(folder), "-m", str(upsampler), "-o", str(folder),
            "--backbone-size", "56"]  # fmt: skip

    def refused(extra, line):
        before = sorted(p.name for p in folder.iterdir())
        capsys.readouterr()
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {line}\n"
        assert sorted(p.name for p in folder.iterdir()) == before  # nothing written

    refused(["--viz"], f"{folder / 'a_viz.png'} is an input of this run, and the picture "
            f"(--viz) of {folder / 'a.png'} would overwrite it; choose another -o (outside the "
            "input folders)")  # fmt: skip
    assert main(args) == 0  # features only: a_viz.png is an image like any other
    assert outputs(folder) == ["a.png", "a.pt", "a_viz.png", "a_viz.pt"]
    refused(["--viz", "--resume"], f"{folder / 'a_viz.png'} is an input of this run, and the "
            f"picture (--viz) of {folder / 'a.png'} would overwrite it; choose another -o "
            "(outside the input folders)")  # fmt: skip
    (folder / "a.npy").write_bytes(b"the user's depth map")
    refused(["--format", "npy"], f"{folder / 'a.npy'} is not loftup's (its upsample.json "
            f"records no .npy features), and the features of {folder / 'a.png'} would "
            "overwrite it; move it away, or choose another -o")  # fmt: skip
    assert (folder / "a_viz.png").read_bytes() == mine
    assert (folder / "a.npy").read_bytes() == b"the user's depth map"

    # no record at all: any file at an output's name is someone else's
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.pt").write_bytes(b"x")
    refused(["-o", str(other)], f"{other / 'a.pt'} is not loftup's (no upsample.json in "
            f"{other}), and the features of {folder / 'a.png'} would overwrite it; move it "
            "away, or choose another -o")  # fmt: skip
    (other / "a.pt").unlink()
    (other / OPTIONS_NAME).write_text('{"name": "my own settings"}')
    refused(["-o", str(other)], f"{other / OPTIONS_NAME} is not a record of loftup upsample "
            "(no loftup_version), and this run would write its record there; move the file "
            "away, or choose another -o")  # fmt: skip
    assert (other / OPTIONS_NAME).read_text() == '{"name": "my own settings"}'

    # loftup's own outputs, a record of an earlier version too (no "outputs" in it)
    (other / OPTIONS_NAME).unlink()
    assert main([*args, "-o", str(other), "--viz"]) == 0
    record = json.loads((other / OPTIONS_NAME).read_text())
    assert record["outputs"] == ["pt", "viz"]
    del record["outputs"]
    (other / OPTIONS_NAME).write_text(json.dumps(record))
    inode = (other / "a_viz.png").stat().st_ino
    assert main([*args, "-o", str(other), "--viz"]) == 0  # a whole run: computed again
    assert (other / "a_viz.png").stat().st_ino != inode
    assert json.loads((other / OPTIONS_NAME).read_text())["outputs"] == ["pt", "viz"]


def test_input_collection_and_sharding(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / ".ipynb_checkpoints").mkdir()
    hidden = ("a/._x.jpg", "a/.ipynb_checkpoints/x-checkpoint.png")  # never images to compute
    for rel in ("a/x.jpg", "a/x.png", "a/sub/y.png", "a/notes.txt", "z.png", *hidden):
        (tmp_path / rel).write_bytes(b"")
    jobs, missing = collect_inputs(
        [str(tmp_path / "a"), str(tmp_path / "*.png"), str(tmp_path / "a")]
    )
    assert [j.stem for j in jobs] == [
        "sub/y",
        "x.jpg",
        "x.png",
        "z",
    ]  # clashing stems keep suffixes
    assert missing == []
    # a file that several inputs reach has one name whatever their order: the outermost
    # folder's (with a sub-folder given first, a/sub/y.png was y, and a/sub then a was refused
    # as two files of one name when a/sub held an x.png as a does)
    (tmp_path / "a" / "sub" / "x.png").write_bytes(b"")
    a, sub, y = (str(tmp_path / rel) for rel in ("a", "a/sub", "a/sub/y.png"))
    for specs in ([a, sub], [sub, a], [y, a], [a, y], [sub, y, a, sub]):
        jobs, _ = collect_inputs(specs)
        assert [j.stem for j in jobs] == ["sub/x", "sub/y", "x.jpg", "x.png"], specs
    jobs = [Job(tmp_path / f"{i}.png", str(i)) for i in range(7)]
    parts = [shard(jobs, 2, r, 3) for r in range(3)]
    assert [[j.stem for b in p for j in b] for p in parts] == [
        ["0", "1", "6"],
        ["2", "3"],
        ["4", "5"],
    ]


def test_a_glob_gives_its_images_as_a_folder_does_and_a_file_named_is_tried(tmp_path):
    """``loftup upsample 'photos/*'`` took the folder's notes.txt and upsample.json too, which
    then failed and made the run's exit status 1; the folder itself gives only its images."""
    for rel in ("x.JPG", "y.png", "notes.txt", "upsample.json"):
        (tmp_path / rel).write_bytes(b"")
    jobs, missing = collect_inputs([str(tmp_path / "*")])
    assert [j.path.name for j in jobs] == ["x.JPG", "y.png"] and missing == []
    assert collect_inputs([str(tmp_path)])[0] == jobs
    # a glob of no image says so; a file named is tried (and fails by name if it is none)
    jobs, missing = collect_inputs([str(tmp_path / "*.t*t"), str(tmp_path / "notes.txt")])
    assert [j.path.name for j in jobs] == ["notes.txt"]
    assert missing == [
        (
            str(tmp_path / "*.t*t"),
            "matches 1 file, none an image (.jpg, .jpeg, .png, .bmp, .gif, .tif, .tiff, .webp, "
            ".ppm, .pgm); name a file to read it as one",
        )
    ]


def test_inputs_of_one_name_in_two_folders_are_refused_not_overwritten(
    photos, upsampler, tmp_path, capsys
):
    # two cameras' folders with the same file names: each keeps its suffix, which is the same
    for cam, name in (("cam1", "astronaut.png"), ("cam2", "coffee.jpg")):
        (tmp_path / cam).mkdir()
        Image.open(photos / name).convert("RGB").resize((40, 30)).save(tmp_path / cam / "0001.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "cam1"), str(tmp_path / "cam2"), "-m", str(upsampler)]
    assert main([*args, "-o", str(out), "--size", "16"]) == 2
    err = capsys.readouterr().err
    assert "cam1/0001.png and " in err and "cam2/0001.png would write outputs of one name" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()  # before any work
    # so does a recursive glob that meets one name in two sub-folders
    with pytest.raises(loftup.LoftUpError, match="outputs of one name"):
        collect_inputs([str(tmp_path / "**" / "*.png")])
    # their common folder keeps the sub-folders: two files
    assert main(["upsample", str(tmp_path), "-m", str(upsampler), "-o", str(out)]) == 0
    assert outputs(out) == ["cam1", "cam2"]
    a, b = (torch.load(out / cam / "0001.pt", weights_only=True) for cam in ("cam1", "cam2"))
    assert a.shape == b.shape == (32, 30, 40) and not torch.equal(a, b)


# Inputs that are links: each is named as the inputs name it (a link by its own name, not its
# target's) in the --viz title and in the line of an image that fails, and a link beside its
# file with another suffix (x.jpg -> x.png) is a name of its own.


def test_the_viz_title_names_the_link_given_not_its_target(upsampler, tmp_path):
    """The picture of ``shown.png`` -> ``data/target.png`` was titled ``target.png``: it is the
    picture of a file of the link's own name (a copy), and not of its target."""
    (tmp_path / "data").mkdir()
    noise_picture(tmp_path / "data" / "target.png")
    for folder in ("link", "copy"):
        (tmp_path / folder).mkdir()
    (tmp_path / "link" / "shown.png").symlink_to("../data/target.png")
    (tmp_path / "copy" / "shown.png").write_bytes((tmp_path / "data" / "target.png").read_bytes())
    for name in ("link", "copy"):
        given, out = tmp_path / name / "shown.png", tmp_path / f"{name}_out"
        assert upsample_small([given], upsampler, out, "--viz") == 0
    drawn = (tmp_path / "link_out" / "shown_viz.png").read_bytes()
    assert drawn == (tmp_path / "copy_out" / "shown_viz.png").read_bytes()


def test_an_image_that_fails_is_named_by_the_link_given(upsampler, tmp_path, capsys):
    """A damaged file reached through a link (``frame.png`` -> ``store/blob.bin``) was said
    as the target, a name the user never gave and may not know."""
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "blob.bin").write_bytes(b"not an image at all")
    link = tmp_path / "frame.png"
    link.symlink_to(tmp_path / "store" / "blob.bin")
    noise_picture(tmp_path / "fine.png")
    assert upsample_small([link, tmp_path / "fine.png"], upsampler, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"skipped: cannot read image {link}: " in err, err
    assert "blob.bin" not in err, err


def test_a_link_beside_its_file_with_another_suffix_is_a_name_of_its_own(upsampler, tmp_path):
    """``x.jpg`` -> ``x.png`` beside it gave outputs of each name (``x.jpg.pt``, ``x.png.pt``,
    as two files of one stem do) until a link and its file of one name given through two
    inputs were made one job: the two names then became one job, ``x``, and ``--resume`` on a
    folder of the earlier runs computed ``x`` again beside the files it had. They are two
    again, and a resumed run keeps what an earlier one wrote."""
    data = tmp_path / "data"
    data.mkdir()
    noise_picture(data / "x.png")
    (data / "x.jpg").symlink_to("x.png")
    jobs, _ = collect_inputs([str(data)])
    assert [j.stem for j in jobs] == ["x.jpg", "x.png"]
    assert [j.given for j in jobs] == [data / "x.jpg", data / "x.png"]  # each as found
    assert jobs[0].path == jobs[1].path == (data / "x.png").resolve()
    out = tmp_path / "out"
    assert upsample_small([data], upsampler, out) == 0
    assert sorted(p.name for p in out.iterdir()) == [OPTIONS_NAME, "x.jpg.pt", "x.png.pt"]
    assert (out / "x.jpg.pt").read_bytes() == (out / "x.png.pt").read_bytes()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != OPTIONS_NAME}
    assert upsample_small([data], upsampler, out, "--resume") == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != OPTIONS_NAME} == (
        before
    )
