"""The dataset readers' folders that this user may not read or search, beyond those of
test_unsearchable_inputs.py: a Cityscapes city of another user's (mode 700), which the
listing passed over without a word; DAVIS given as the folder above a DAVIS/ that may not be
searched; a segmentation root behind such a folder (the layout's guesses raised pathlib's
bare PermissionError); and a listed path that is a file, which is no permission problem. The
``unsearchable`` and ``locked`` fixtures (conftest) refuse such folders as root too."""

from __future__ import annotations

import shutil

import pytest

from loftup.errors import PathPermissionError
from test_unsearchable_inputs import _refused
from test_unsearchable_paths import _says_why


def _two_cities(root):
    """Cityscapes with two cities of two images each in val: frankfurt, and bremen (a copy)."""
    from eval_data import write_cityscapes

    base = write_cityscapes(root, n=2)
    for kind in ("leftImg8bit", "gtFine"):
        val = base / kind / "val"
        for f in sorted((val / "frankfurt").iterdir()):
            (val / "bremen").mkdir(exist_ok=True)
            shutil.copyfile(f, val / "bremen" / f.name.replace("frankfurt", "bremen"))
    return base


def test_a_city_this_user_may_not_read_stops_the_listing(tmp_path, locked, capsys):
    """A city's folder of another user (mode 700) among readable ones: its images were left
    out without a word (`loftup eval seg` scored 2 images of 4, status 0); with every city
    so, "no images found" (of images that are there)."""
    from loftup.cli import main
    from loftup.eval.datasets.seg import seg_pairs

    base = _two_cities(tmp_path)
    assert len(seg_pairs("cityscapes", tmp_path, "val")) == 4
    bremen = base / "leftImg8bit" / "val" / "bremen"
    locked(bremen)
    with pytest.raises(PathPermissionError) as caught:
        seg_pairs("cityscapes", tmp_path, "val")
    said = str(caught.value)
    assert f"{bremen} is a folder that cannot be read" in said, said
    assert "have it made readable for this user (chmod a+rx, by its owner)" in said, said
    argv = ["eval", "seg", "--dataset", "cityscapes", "--root", str(tmp_path)]
    argv += ["--backbone", "dinov2_tiny", "--upsampler", "bilinear", "--no-progress"]
    assert main([*argv, "--json", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"{bremen} is a folder that cannot" in err, err
    locked(base / "leftImg8bit" / "val" / "frankfurt")
    with pytest.raises(PathPermissionError, match="bremen is a folder that cannot be read"):
        seg_pairs("cityscapes", tmp_path, "val")  # the first in name order, not "no images"


def test_a_city_linked_into_a_folder_this_user_may_not_search(tmp_path, unsearchable):
    """A city that is a link into such a folder: pathlib's glob passed over it too."""
    from loftup.eval.datasets.seg import seg_pairs

    base = _two_cities(tmp_path / "cs")
    val, secret = base / "leftImg8bit" / "val", tmp_path / "secret"
    secret.mkdir()
    shutil.move(val / "bremen", secret / "bremen")
    (val / "bremen").symlink_to(secret / "bremen")
    unsearchable(secret)
    _refused(lambda: seg_pairs("cityscapes", tmp_path / "cs", "val"), secret)


def test_davis_above_a_davis_folder_this_user_may_not_search(tmp_path, unsearchable):
    """DAVIS given as the folder above DAVIS/ (as the archive unpacks), DAVIS/ another user's:
    the reader did not go into it, and said ROOT/ImageSets/2017/val.txt "does not exist"."""
    from eval_data import write_davis
    from loftup.eval.datasets import davis_sequences

    write_davis(tmp_path / "above" / "DAVIS")
    assert len(davis_sequences(tmp_path / "above")) == 2
    unsearchable(tmp_path / "above" / "DAVIS")
    _refused(lambda: davis_sequences(tmp_path / "above"), tmp_path / "above" / "DAVIS")


def test_segmentation_roots_in_a_folder_this_user_may_not_search(tmp_path, unsearchable):
    """Each segmentation reader's root behind such a folder, or a folder of it that may be
    listed, not searched: a bare PermissionError naming a folder the layout guessed
    (``VOCdevkit``), or a listed image, from the Python API (the CLI checks --root)."""
    from eval_data import write_ade20k, write_cityscapes, write_cocostuff, write_voc
    from loftup.eval.datasets.seg import seg_pairs

    secret, own = tmp_path / "secret", tmp_path / "own"
    writers = {"voc": write_voc, "ade20k": write_ade20k, "cityscapes": write_cityscapes,
               "cocostuff": write_cocostuff}  # fmt: skip
    for name, write in writers.items():
        write(secret / name)
        write(own / name)
    voc_images = own / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages"
    unsearchable(secret)
    unsearchable(own / "ade20k")  # the root itself: listed, not searched
    unsearchable(voc_images)
    for name in writers:
        with pytest.raises(PathPermissionError) as caught:
            seg_pairs(name, secret / name, "val")
        said = str(caught.value)
        assert said.startswith(f"dataset root {secret / name}: "), said  # the root given
        _says_why(said, secret)
    _refused(lambda: seg_pairs("ade20k", own / "ade20k", "val"), own / "ade20k")
    _refused(lambda: seg_pairs("voc", own / "voc", "val"), voc_images)


def test_a_listed_folder_that_is_a_file_is_said_as_missing_items(tmp_path):
    """A DAVIS sequence's frames folder, or ADE20K's images/validation, that is a file: the
    listing raised NotADirectoryError ("error: ...: Not a directory", no hint), not the
    reader's DatasetError naming the layout."""
    from eval_data import write_ade20k, write_davis
    from loftup.eval.datasets import davis_sequences
    from loftup.eval.datasets.common import DatasetError
    from loftup.eval.datasets.seg import seg_pairs

    davis = write_davis(tmp_path / "davis")
    ade = write_ade20k(tmp_path / "ade")
    for folder in (davis / "JPEGImages" / "480p" / "car", ade / "images" / "validation"):
        shutil.rmtree(folder)
        folder.write_text("not a folder")
    with pytest.raises(DatasetError, match="DAVIS sequence car: no frames. Expected ROOT/"):
        davis_sequences(davis)
    with pytest.raises(DatasetError, match="ade20k val: no images found under .*Expected"):
        seg_pairs("ade20k", tmp_path / "ade", "val")


def test_a_normals_cache_this_user_may_not_search_names_cache_dir(tmp_path, unsearchable):
    """The converted normals' file in a cache folder behind such a folder, or in one that may
    be listed, not searched (where it cannot be made either): the fix is another cache_dir,
    not "a copy of it" (of a file loftup makes)."""
    from eval_data import write_nyu_normals, write_nyuv2
    from loftup.eval.datasets.normals_file import nyu_normals_file

    nyu = write_nyuv2(tmp_path / "nyu")
    write_nyu_normals(nyu)
    secret, listed = tmp_path / "secret", tmp_path / "listed"
    (secret / "cache").mkdir(parents=True)
    (listed / "nyuv2").mkdir(parents=True)
    unsearchable(secret)
    unsearchable(listed / "nyuv2")
    for cache, folder in ((secret / "cache", secret), (listed, listed / "nyuv2")):
        with pytest.raises(PathPermissionError) as caught:
            nyu_normals_file(nyu, cache)
        said = str(caught.value)
        assert f"{folder} cannot be searched" in said, said
        assert "or give cache_dir (--cache-dir) a folder of this user's" in said, said
        assert "copy" not in said, said
