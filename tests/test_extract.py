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
    # (a Python caller, run() given no said_as, is told its argument, not the CLI's option)
    assert "float16" in reason and "save_dtype='float32'" in reason, reason
    assert sorted(p.name for p in out.iterdir() if p.name != OPTIONS_NAME) == []
    # stored as float32, the same features are written
    report = run(two_images, loud_pipeline, out, stream_above=stream_above)
    assert report.written == 2 and not report.failed
    feats = torch.load(out / "im0.pt", weights_only=True)
    assert torch.isfinite(feats).all() and feats.abs().max() > 65504


def test_a_folder_of_links_to_folders_gives_their_images_as_a_glob_does(tmp_path):
    """A folder of links to the cameras' folders (a common way to assemble a data set) gave no
    image at all, while a ``**`` glob over it gave them all: a linked sub-folder is searched,
    named by the link; a link back up, or to a folder the search reaches anyway, is not
    followed (a loop would never end, and files would take the link's name over their own)."""
    for cam, top, deep in (("cam1", "a.png", "b.jpg"), ("cam2", "c.png", "d.jpg")):
        (tmp_path / cam / "deep").mkdir(parents=True)
        (tmp_path / cam / top).write_bytes(b"")
        (tmp_path / cam / "deep" / deep).write_bytes(b"")
    links = tmp_path / "links"
    links.mkdir()
    for cam in ("cam1", "cam2"):
        (links / cam).symlink_to(tmp_path / cam)
    want = ["cam1/a", "cam1/deep/b", "cam2/c", "cam2/deep/d"]
    glob_jobs, _ = collect_inputs([str(links / "**" / "*")])
    assert [j.stem for j in collect_inputs([str(links)])[0]] == want
    assert [j.path for j in glob_jobs] == [j.path for j in collect_inputs([str(links)])[0]]
    # loops: a link up to the folder given (or above it), and one inside a linked folder
    (links / "up").symlink_to(tmp_path)
    (tmp_path / "cam1" / "deep" / "back").symlink_to(tmp_path / "cam1")
    (tmp_path / "cam2" / "again").symlink_to(tmp_path / "cam2" / "deep")  # reached anyway
    jobs, missing = collect_inputs([str(links)])
    assert [j.stem for j in jobs] == want and missing == []
    # the folder above: each file by its own name, not through the links
    jobs, _ = collect_inputs([str(tmp_path)])
    assert [j.stem for j in jobs] == want


def test_a_folder_with_no_image_is_named_as_a_glob_of_none_is(tmp_path):
    """An empty folder among the inputs passed in silence (and, alone, was 'no images found'
    with no reason), where a glob of no image was named and failed the run."""
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden" / "x.png").write_bytes(b"")
    (tmp_path / "empty" / "notes.txt").write_bytes(b"")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.png").write_bytes(b"")
    jobs, missing = collect_inputs([str(tmp_path / "empty"), str(tmp_path / "full")])
    assert [j.stem for j in jobs] == ["x"]
    assert len(missing) == 1 and missing[0][0] == str(tmp_path / "empty")
    assert missing[0][1].startswith("a folder with no image file in it or under it (.jpg, ")


def test_outputs_whose_names_differ_only_in_case_are_refused_before_any_work(tmp_path, capsys):
    """``A.png`` and ``a.png`` wrote ``A.pt`` and ``a.pt``: one file on a case-insensitive disk
    (macOS, Windows), the second image's features over the first's, and --resume, which trusts
    the names, took one for both. Refused by name (on every disk: the names are compared as
    such a disk compares them); stems that differ in case but whose suffixes differ keep them."""
    from loftup.cli import main

    for rel in (
        "in/A.png",
        "in/a.png",
        "sub/Day1/x.png",
        "sub/day1/x.png",
        "two/B.jpg",
        "two/b.png",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    with pytest.raises(loftup.LoftUpError) as caught:
        collect_inputs([str(tmp_path / "in" / "A.png"), str(tmp_path / "in" / "a.png")])
    message = str(caught.value)
    assert "in/A.png and " in message and "in/a.png would write outputs" in message
    assert "differ only in letter case" in message and "(A.png, a.png)" in message
    assert "rename one of them" in message and "\n" not in message
    with pytest.raises(
        loftup.LoftUpError, match=r"\(Day1/x.png, day1/x.png\)"
    ):  # a sub-folder's case
        collect_inputs([str(tmp_path / "sub")])
    # the two Unicode spellings of one accented name are one name on macOS's disk too
    for name in ("caf\u00e9.png", "cafe\u0301.png"):
        (tmp_path / "accents" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "accents" / name).write_bytes(b"")
    if len(list((tmp_path / "accents").iterdir())) == 2:  # (a disk that keeps both)
        with pytest.raises(loftup.LoftUpError, match="Unicode form"):
            collect_inputs([str(tmp_path / "accents")])
    # one stem but for case, other suffixes: both keep their suffix, and differ then
    jobs, _ = collect_inputs([str(tmp_path / "two")])
    assert [j.stem for j in jobs] == ["B.jpg", "b.png"]
    # the command line: one line, exit status 2, nothing written
    out = tmp_path / "out"
    assert main(["upsample", str(tmp_path / "in" / "A.png"), str(tmp_path / "in" / "a.png"),
                 "-o", str(out), "-m", "nowhere.safetensors"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "differ only in letter case" in err
    assert not out.exists()


def test_a_whole_run_removes_what_a_killed_run_left_of_its_own_outputs_alone(tmp_path):
    """A killed run's hidden temporary files (a streamed output's is its full size, reserved)
    were removed by --resume alone: a whole run again into the folder kept them for ever. It
    now removes those of the outputs it writes again, not another format's (a run writing
    there now) nor a user's own hidden file."""
    from loftup.extract import Job, outputs_of, remove_unfinished

    out = tmp_path / "out"
    (out / "day1").mkdir(parents=True)
    long = "é" * 120  # 240 bytes: the temporary name holds its first 200 bytes, as written
    jobs = [Job(tmp_path / "a.png", "a"), Job(tmp_path / "b.png", "day1/b"), Job(tmp_path, long)]
    ours = [out / ".a.pt.ab12cd34.tmp", out / "day1" / ".b_viz.png.x_9y8z7w.tmp"]
    ours.append(out / f".{long[:100]}.abcdefgh.tmp")
    others = [out / ".a.npy.ab12cd34.tmp", out / ".notes.tmp", out / ".b.pt.ab12cd34.tmp"]
    for path in ours + others:
        path.write_bytes(b"x")
    own = [p for j in jobs for p in outputs_of(out, j, "pt", True)]
    assert remove_unfinished(out, own) == 3
    assert [p.exists() for p in ours + others] == [False] * 3 + [True] * 3
    assert remove_unfinished(out) == 2  # resumed: every leftover of a run (not .notes.tmp)
    assert sorted(p.name for p in out.rglob("*")) == [".notes.tmp", "day1"]


def test_a_picture_of_an_image_whose_name_holds_dollar_signs_is_drawn(tmp_path):
    """--viz titles each picture with the file's name, which matplotlib read as TeX between two
    dollar signs: ``$$.png`` raised a ValueError in the writer thread, which ended the whole
    run with a traceback (only an OSError fails one image)."""
    from loftup.extract import Job
    from loftup.extract.write import write_outputs

    torch.manual_seed(0)
    image, lr, hr = torch.rand(3, 16, 16), torch.rand(4, 4, 4), torch.rand(4, 16, 16)
    for name in ("$$.png", "x$_$ \\frac$.png"):
        job = Job(tmp_path / name, name.removesuffix(".png"))
        write_outputs(tmp_path, job, "pt", torch.float32, image, lr, hr, True)
        assert (tmp_path / f"{job.stem}_viz.png").stat().st_size > 0, name
        assert torch.equal(torch.load(tmp_path / f"{job.stem}.pt", weights_only=True), hr)


def test_upsample_folders_options_are_checked_before_any_work(two_images, tmp_path):
    """A format, precision, size or count upsample_folder cannot use was found after the
    models loaded, by the first image's writer (or by range(): "arg 3 must not be zero"),
    leaving an upsample.json recording it that refused the corrected run as one of other
    options; a precision's alias ("bf16", which the loader takes) failed as getattr(torch,
    ...) and npy with bfloat16 computing failed where the command line stores float32."""
    from loftup.errors import UsageError
    from loftup.extract import check_run_options, upsample_folder

    torch.manual_seed(0)
    model = tmp_path / "up"
    loftup.LoftUp(dim=32).save_pretrained(model, backbone="dinov2_tiny")
    out = tmp_path / "out"
    for bad, said in (
        ({"fmt": "jpg"}, r"^unknown fmt 'jpg'; choose one of pt, npy, safetensors$"),
        ({"fmt": "npy", "save_dtype": "bfloat16"}, r"^fmt npy cannot store bfloat16 .*; use "),
        ({"save_dtype": "int8"}, r"^save_dtype: unknown precision 'int8'; choose one of "),
        ({"dtype": "float64"}, r"^dtype: unknown precision 'float64'; choose one of "),
        ({"batch_size": 0}, r"^batch_size must be >= 1, got 0$"),
        ({"writers": 0}, r"^writers must be >= 1, got 0$"),
        ({"size": 0}, r"^size is None .*, got 0$"),
    ):
        inputs = [str(job.path) for job in two_images]
        with pytest.raises(UsageError, match=said):
            upsample_folder(inputs, out, model=str(model), backbone_size=28, **bad)
        assert not out.exists(), bad  # nothing written: no record of the run that failed
    assert check_run_options("npy", "bf16", None, None, 1, 1) == ("bfloat16", "float32")
    assert check_run_options("pt", "half", None, 64, 1, 1) == ("float16", "float16")
    said_as = {"fmt": "--format", "save_dtype": "--save-dtype"}
    with pytest.raises(UsageError, match=r"^--format npy cannot store bfloat16 .* --save-dtype "):
        check_run_options("npy", "float32", "bf16", None, 1, 1, said_as)


def test_an_image_too_large_to_decode_fails_by_name_and_the_run_goes_on(
    loud_pipeline, two_images, tmp_path, monkeypatch
):
    """A MemoryError reading one huge image (--max-image-pixels 0) ended the whole run, saying
    to try a smaller --size, which does not shrink what is read; it is that image's failure."""
    import loftup.extract.loop as loop

    real = loop.load_image_tensor

    def huge_first(path):
        if path == two_images[0].path:  # NumPy's words for an allocation it could not make
            raise MemoryError("Unable to allocate 17.9 GiB for an array with shape (3, 40000)")
        return real(path)

    monkeypatch.setattr(loop, "load_image_tensor", huge_first)
    out = tmp_path / "out"
    report = run(two_images, loud_pipeline, out)
    assert report.written == 1 and (out / "im1.pt").is_file() and not (out / "im0.pt").exists()
    assert report.failed == [
        (
            str(two_images[0].path),
            f"cannot read image {two_images[0].path}: out of memory (the host could not "
            "allocate 17.9 GiB); downscale it first, or free memory",
        )
    ]


def test_two_files_of_one_folder_that_would_share_a_name_are_told_to_rename_one(tmp_path):
    """a.jpg beside a.png keeps its suffix, so a.png's name "a.png" is a.png.jpg's own: the
    error said to give the folder that holds both, which was given."""
    for name in ("a.jpg", "a.png", "a.png.jpg"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(loftup.LoftUpError) as caught:
        collect_inputs([str(tmp_path)])
    assert str(caught.value) == (
        f"{tmp_path / 'a.png'} and {tmp_path / 'a.png.jpg'} would write outputs of one name "
        "(a.png); rename one of them, or run them into separate out folders"
    )
    for name in ("a.jpg", "a.png.jpg"):  # files of two folders: their common folder is the fix
        (tmp_path / name).unlink()
    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam1" / "a.png").write_bytes(b"")
    with pytest.raises(loftup.LoftUpError, match=r"\(a\.png\); give the folder that holds both"):
        collect_inputs([str(tmp_path / "cam1"), str(tmp_path / "a.png")])


def test_a_resumed_run_into_a_folder_of_hidden_files_alone_is_a_first_run(tmp_path):
    """A folder made in macOS's Finder holds a .DS_Store, and one of a run killed as it wrote
    its record the record's temporary file: --resume (a job script that always passes it) was
    refused as "files but no upsample.json ... empty it", of a folder that looks empty."""
    from loftup.extract import read_record

    out = tmp_path / "feats"
    out.mkdir()
    (out / ".DS_Store").write_bytes(b"\0")
    (out / f".{OPTIONS_NAME}.ab12cd34.tmp").write_text("{")
    assert read_record(out, resume=True) is None
    (out / "x.pt").write_bytes(b"")  # an output of no recorded making: refused
    with pytest.raises(loftup.LoftUpError, match=f"holds files but no {OPTIONS_NAME}"):
        read_record(out, resume=True)


def test_a_precision_recorded_by_an_alias_is_the_same_option(tmp_path):
    """upsample_folder(dtype="half") recorded "half"; it now records "float16", and a run
    resumed with the same precision was refused as "dtype 'half' there, 'float16' now"."""
    from loftup.extract import check_options

    saved = {"loftup_version": "0", "dtype": "half", "save_dtype": "fp16", "size": None}
    now = {"loftup_version": "1", "dtype": "float16", "save_dtype": "float16", "size": None}
    check_options(tmp_path, now, saved, resume=True)  # the same: no error
    with pytest.raises(loftup.LoftUpError, match=r"\(dtype 'half' there, 'float32' now\)"):
        check_options(tmp_path, {**now, "dtype": "float32"}, saved, resume=True)


def test_upsample_folder_takes_one_path_and_paths_as_inputs(two_images, tmp_path):
    """A string was taken letter by letter ("no images found in i n"), and a Path among inputs
    that matched nothing ended in a TypeError joining them for the message."""
    from loftup.extract import upsample_folder

    torch.manual_seed(0)
    model = tmp_path / "up"
    loftup.LoftUp(dim=32).save_pretrained(model, backbone="dinov2_tiny")
    folder = two_images[0].path.parent
    report = upsample_folder(str(folder), tmp_path / "out", model=str(model), backbone_size=28)
    assert report.done == 2 and sorted(p.name for p in (tmp_path / "out").glob("*.pt")) == [
        "im0.pt",
        "im1.pt",
    ]
    gone = tmp_path / "gone"
    with pytest.raises(loftup.LoftUpError, match=f"^no images found in {gone} \\({gone}: no such"):
        upsample_folder([gone], tmp_path / "out2", model=str(model))
    # NumPy's integers are integers: upsample.json's writing raised a TypeError for them
    # after the models had loaded, and batch_size=np.int64(2) was "must be >= 1, got 2"
    import numpy as np

    report = upsample_folder(
        str(folder), tmp_path / "out3", model=str(model), backbone_size=np.int64(28),
        size=np.int64(32), batch_size=np.int64(2),
    )  # fmt: skip
    assert report.done == 2


def test_a_link_to_an_image_beside_it_gets_outputs_of_its_own_name(tmp_path):
    """A folder of frames with a link to one (``latest.png`` -> ``0099.png``) gave one job for
    the two names, named by the first in sort order: ``0099``'s features were missing, a gap in
    the sequence. Each name is a job; a file reached through two inputs is still one."""
    (tmp_path / "day1").mkdir()
    for name in ("0098.png", "day1/0099.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "day1" / "a_latest.png").symlink_to(tmp_path / "day1" / "0099.png")
    jobs, _ = collect_inputs([str(tmp_path / "day1"), str(tmp_path)])
    assert [j.stem for j in jobs] == ["0098", "day1/0099", "day1/a_latest"]
    assert jobs[1].path == jobs[2].path == (tmp_path / "day1" / "0099.png").resolve()


def test_a_link_and_its_file_under_one_name_through_two_inputs_are_one_job(tmp_path):
    """A split folder of links into an all/ folder (links/x.png -> ../data/x.png) given with
    it, ``data links``, was refused as two files writing one name, the same file named twice
    ("rename one of them"): one file under one name is one job."""
    (tmp_path / "data").mkdir()
    (tmp_path / "links").mkdir()
    (tmp_path / "data" / "x.png").write_bytes(b"")
    (tmp_path / "links" / "x.png").symlink_to("../data/x.png")
    for specs in (["data", "links"], ["links", "data/x.png"], ["data/*.png", "links/*.png"]):
        jobs, _ = collect_inputs([str(tmp_path / s) for s in specs])
        assert [(j.path, j.stem) for j in jobs] == [((tmp_path / "data" / "x.png").resolve(), "x")]


def test_a_link_to_nothing_is_said_as_such_not_as_a_folder_nor_passed_over(tmp_path):
    """A link whose image was moved or deleted (a data set of links, re-organised): named on
    the command line it was 'a glob that matches 1 folder and no file' with a glob of the
    files in it as the fix; found in a folder it was passed over without a word (the run said
    all was written, one image short)."""
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "gone.png").symlink_to(tmp_path / "moved" / "gone.png")
    (tmp_path / "notes.txt").symlink_to(tmp_path / "nowhere.txt")  # no image's name: no input
    said = (
        f"a link to {tmp_path / 'moved' / 'gone.png'}, which does not exist (moved or "
        "deleted?); fix or remove the link"
    )
    gone = str(tmp_path / "gone.png")
    for spec in (gone, str(tmp_path), str(tmp_path / "*.png")):
        jobs, missing = collect_inputs([spec])
        assert missing == [(gone, said)], spec
        assert [j.stem for j in jobs] == ([] if spec == gone else ["a"]), spec
