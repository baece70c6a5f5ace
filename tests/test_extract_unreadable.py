"""What a folder given to ``loftup upsample`` holds that cannot be read, a sub-folder or a
pipe of an image's name (and what a glob matches or cannot list), is said as skipped by name
(the run then ends with status 1), never dropped in silence; training's listing warns."""

from __future__ import annotations

import errno
import os
import warnings

import pytest
import torch
from PIL import Image

import loftup
from loftup.cli import main
from loftup.extract import collect_inputs


def _images(folder, *names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 24)).save(folder / name)


def test_an_unreadable_sub_folder_is_named_not_dropped(tmp_path, locked):
    """Its images vanished from the run, nothing said, and the run ended with status 0."""
    _images(tmp_path, "photos/a.png", "photos/day2/b.png")
    locked(tmp_path / "photos" / "day2")
    jobs, missing = collect_inputs([str(tmp_path / "photos")])
    assert [j.stem for j in jobs] == ["a"]
    assert missing == [(str(tmp_path / "photos" / "day2"), "a folder that cannot be read "
                        f"({os.strerror(errno.EACCES)})")]  # fmt: skip


def test_an_unreadable_folder_given_is_not_called_one_with_no_image(tmp_path, locked):
    _images(tmp_path, "photos/a.png")
    locked(tmp_path / "photos")
    jobs, missing = collect_inputs([str(tmp_path / "photos")])
    assert jobs == [] and len(missing) == 1
    assert missing[0][1].startswith("a folder that cannot be read")


def test_a_pipe_of_an_image_name_in_a_folder_is_skipped_by_name(tmp_path, capsys):
    """Given itself it was a job (and failed by name); in a folder, it was dropped."""
    _images(tmp_path, "photos/a.png")
    os.mkfifo(tmp_path / "photos" / "cam.png")
    torch.manual_seed(0)
    loftup.LoftUp(dim=32).save_pretrained(tmp_path / "up", backbone="dinov2_tiny")
    out = tmp_path / "out"
    argv = ["upsample", str(tmp_path / "photos"), "-m", str(tmp_path / "up"), "-o", str(out)]
    assert main([*argv, "--size", "32"]) == 1
    err = capsys.readouterr().err
    assert f"skipped {tmp_path / 'photos' / 'cam.png'}: not a regular file (a pipe" in err
    assert (out / "a.pt").is_file() and not (out / "cam.pt").exists()


def test_an_empty_image_file_is_said_to_be_empty(tmp_path, upsampler, capsys):
    """A 0-byte file (a copy cut off, a download that never came) was skipped as "cannot
    identify image file", which reads as a damaged or unknown format."""
    from loftup.io import ImageReadError, load_image

    _images(tmp_path, "photos/a.png")
    (tmp_path / "photos" / "empty.png").write_bytes(b"")
    argv = ["upsample", str(tmp_path / "photos"), "-m", str(upsampler), "--size", "16"]
    assert main([*argv, "-o", str(tmp_path / "out"), "--no-progress"]) == 1
    empty = tmp_path / "photos" / "empty.png"
    said = f"cannot read image {empty}: the file is empty (0 bytes)"
    assert f"skipped: {said}\n" in capsys.readouterr().err
    with pytest.raises(ImageReadError) as e:  # as Python's callers read it
        load_image(empty)
    assert str(e.value) == said


@pytest.mark.parametrize(
    "pattern, stems",
    [("photos/**/*.png", ["a", "c"]), ("photos/*/*.png", ["c"]), ("photos/**", ["a", "c"])],
)
def test_a_glob_names_the_folders_it_could_not_list(tmp_path, locked, pattern, stems):
    """Python's glob passes over a folder it cannot list: its images were missing, unsaid."""
    _images(tmp_path, "photos/a.png", "photos/day1/c.png", "photos/day2/b.png")
    locked(tmp_path / "photos" / "day2")
    jobs, missing = collect_inputs([str(tmp_path / pattern)])
    assert [j.stem for j in jobs] == stems
    assert missing == [(str(tmp_path / "photos" / "day2"), "a folder that cannot be read "
                        f"({os.strerror(errno.EACCES)})")]  # fmt: skip


def test_a_glob_of_an_unreadable_folder_is_not_called_no_match(tmp_path, locked):
    _images(tmp_path, "photos/a.png")
    locked(tmp_path / "photos")
    jobs, missing = collect_inputs([str(tmp_path / "photos" / "*.png")])
    assert jobs == [] and [why[:28] for _, why in missing] == ["a folder that cannot be read"]


@pytest.mark.parametrize("pattern", ["*.png", "*"])
def test_a_pipe_a_glob_matches_is_skipped_by_name(tmp_path, pattern):
    """A folder said it; a glob of the same folder dropped it (the run ended with status 0)."""
    _images(tmp_path, "photos/a.png", "photos/day2/b.png")
    os.mkfifo(tmp_path / "photos" / "cam.png")
    jobs, missing = collect_inputs([str(tmp_path / "photos" / pattern)])
    assert [j.stem for j in jobs] == ["a"]
    assert [(p, why[:18]) for p, why in missing] == [
        (str(tmp_path / "photos" / "cam.png"), "not a regular file")
    ]


def test_a_glob_matching_only_a_pipe_says_the_pipe_alone(tmp_path):
    """It also said "no such file, folder or matching glob", which the pipe's line contradicts."""
    (tmp_path / "photos").mkdir()
    os.mkfifo(tmp_path / "photos" / "cam.png")
    jobs, missing = collect_inputs([str(tmp_path / "photos" / "*.png")])
    assert jobs == [] and [p for p, _ in missing] == [str(tmp_path / "photos" / "cam.png")]


def _gone_once_listed(monkeypatch, path):
    """``path`` deleted once its folder (or a glob) listed it: each stat of it fails."""
    real = os.stat

    def stat(p, *args, **kwargs):
        if os.fspath(p) == str(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(p))
        return real(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)


def test_a_pipe_deleted_while_its_folder_is_listed_is_said_not_raised(tmp_path, monkeypatch):
    """Asked why it was passed over, a pipe gone since its folder was read raised
    FileNotFoundError out of training's listing (and loftup upsample's)."""
    from loftup.data.images import list_images

    _images(tmp_path, "photos/a.png")
    os.mkfifo(tmp_path / "photos" / "cam.png")
    _gone_once_listed(monkeypatch, tmp_path / "photos" / "cam.png")
    with pytest.warns(UserWarning, match="cam.png: gone since its folder was listed"):
        assert list_images(tmp_path / "photos") == [tmp_path / "photos" / "a.png"]
    jobs, missing = collect_inputs([str(tmp_path / "photos")])  # loftup upsample's too
    assert len(jobs) == 1 and missing[0][1].startswith("gone since its folder was listed")


def test_a_pipe_a_glob_matched_then_deleted_is_said_not_raised(tmp_path, monkeypatch):
    """Asked why a glob's match was passed over, a pipe deleted since the glob listed it
    raised FileNotFoundError out of loftup upsample (or, gone by the look before, was said
    'no such file, folder or matching glob'); it is said as a folder's is."""
    _images(tmp_path, "photos/a.jpg")
    os.mkfifo(tmp_path / "photos" / "cam.png")
    _gone_once_listed(monkeypatch, tmp_path / "photos" / "cam.png")
    jobs, missing = collect_inputs([str(tmp_path / "photos" / "*.png")])
    assert jobs == [] and [p for p, _ in missing] == [str(tmp_path / "photos" / "cam.png")]
    assert missing[0][1].startswith("gone since its folder was listed")


def test_a_pipe_and_a_folder_two_inputs_reach_are_said_once(tmp_path, locked):
    """``photos photos/*`` said the pipe and the unreadable folder twice each (the image
    within reach of both is one job)."""
    _images(tmp_path, "photos/a.png", "photos/day2/b.png")
    os.mkfifo(tmp_path / "photos" / "cam.png")
    locked(tmp_path / "photos" / "day2")
    jobs, missing = collect_inputs([str(tmp_path / "photos"), str(tmp_path / "photos" / "*")])
    said = [p for p, _ in missing]
    assert len(jobs) == 1 and sorted(said) == [
        str(tmp_path / "photos" / "cam.png"), str(tmp_path / "photos" / "day2")
    ]  # fmt: skip


def test_training_lists_say_what_they_leave_out(tmp_path, locked):
    """Training listed the pipe as an image and dropped the unreadable folder, unsaid; then
    said them with the fixes for a file given on the command line ("pass the image itself",
    "save the image to a file first"), not those for a folder's entry."""
    from loftup.data.images import list_images

    _images(tmp_path, "photos/a.png", "photos/day2/b.png")
    os.mkfifo(tmp_path / "photos" / "cam.png")
    (tmp_path / "photos" / "gone.png").symlink_to("moved.png")
    locked(tmp_path / "photos" / "day2")
    with pytest.warns(UserWarning) as caught:
        assert list_images(tmp_path / "photos") == [tmp_path / "photos" / "a.png"]
    said = sorted(str(w.message) for w in caught)
    assert said[1].startswith(f"skipped {tmp_path / 'photos' / 'day2'}: a folder that cannot be")
    files = [said[0], said[2]]
    assert files == [
        f"skipped {tmp_path / 'photos' / 'cam.png'}: not a regular file (a pipe); remove it or "
        "replace it with the image file",
        f"skipped {tmp_path / 'photos' / 'gone.png'}: a link to moved.png, which does not exist "
        "(moved or deleted?); fix or remove the link",
    ]
    _, missing = collect_inputs([str(tmp_path / "photos")])  # loftup upsample: in one wording
    assert [f"skipped {p}: {why}" for p, why in missing if p.endswith(".png")] == files


@pytest.fixture
def mounted(monkeypatch):
    """``mount(folder)``: ``folder`` is a mount point (os.path.ismount, the OS boundary, says
    so for it), as a disk mounted at /mnt/disk, without a disk mounted for the test; a link
    to it is none, as posixpath.ismount says False for any link."""
    real, points = os.path.ismount, set()

    def ismount(p):
        return (os.fspath(p) in points and not os.path.islink(p)) or real(p)

    monkeypatch.setattr(os.path, "ismount", ismount)
    return lambda folder: points.add(str(folder))


def test_fsck_lost_and_found_of_a_mounted_disk_is_passed_over(tmp_path, locked, mounted):
    """``loftup upsample /mnt/disk`` as anyone but root ended "skipped
    /mnt/disk/lost+found: a folder that cannot be read", status 1; one that is not at the top
    of a disk is any folder, said where unreadable."""
    from loftup.data.images import list_images

    _images(tmp_path, "disk/photos/a.png", "disk/photos/lost+found/b.png")
    (tmp_path / "disk" / "lost+found").mkdir()
    mounted(tmp_path / "disk")
    locked(tmp_path / "disk" / "lost+found")
    jobs, missing = collect_inputs([str(tmp_path / "disk")])
    assert [j.stem for j in jobs] == ["photos/a", "photos/lost+found/b"] and missing == []
    for spec in ("disk/**/*.png", "disk/**"):
        jobs, missing = collect_inputs([str(tmp_path / spec)])
        assert len(jobs) == 2 and missing == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # training: no warning either
        assert len(list_images(tmp_path / "disk")) == 2
    locked(tmp_path / "disk" / "photos" / "lost+found")
    jobs, missing = collect_inputs([str(tmp_path / "disk")])
    assert missing == [(str(tmp_path / "disk" / "photos" / "lost+found"), "a folder that "
                        f"cannot be read ({os.strerror(errno.EACCES)})")]  # fmt: skip


def test_lost_and_found_of_a_disk_linked_into_the_data_folder_is_passed_over(
    tmp_path, locked, mounted
):
    """Shards on other disks linked into one folder (as list_images says it reads them): the
    linked disk's lost+found was "a folder that cannot be read", as ismount is False for a
    link, even to a mount point (loftup upsample ended with status 1; training warned)."""
    from loftup.data.images import list_images

    _images(tmp_path, "disk/photos/a.png")
    (tmp_path / "disk" / "lost+found").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "disk").symlink_to(tmp_path / "disk")
    mounted(tmp_path / "disk")
    locked(tmp_path / "disk" / "lost+found")
    for root in ("data", "data/disk"):
        jobs, missing = collect_inputs([str(tmp_path / root)])
        assert len(jobs) == 1 and missing == [], root
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(list_images(tmp_path / root)) == 1


def test_a_loop_of_links_and_a_socket_are_said_as_what_they_are(tmp_path):
    """A looping link of an image's name was "a link to loop.jpg, which does not exist (moved
    or deleted?)"; a socket was "a pipe or a device"."""
    import socket

    _images(tmp_path, "photos/a.png")
    (tmp_path / "photos" / "loop.jpg").symlink_to("loop.jpg")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "photos" / "sock.png"))
    said = [
        (str(tmp_path / "photos" / "loop.jpg"),
         "a link to loop.jpg, which leads back to it (a loop); fix or remove the link"),
        (str(tmp_path / "photos" / "sock.png"),
         "not a regular file (a socket); remove it or replace it with the image file"),
    ]  # fmt: skip
    for spec in ("photos", "photos/*"):
        jobs, missing = collect_inputs([str(tmp_path / spec)])
        assert [j.stem for j in jobs] == ["a"] and sorted(missing) == said, spec
    jobs, missing = collect_inputs([said[0][0]])  # given itself
    assert jobs == [] and missing == said[:1]
