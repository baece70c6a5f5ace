"""What a glob of ``loftup upsample`` that matched folders and no file (``'cams/*'``) is told
to give instead (:func:`loftup.extract.glob_fix.folders_fix`): followed as told, it takes the
folders' images, all and no other, without a refusal."""

from __future__ import annotations

from loftup.extract import collect_inputs


def test_a_glob_that_matches_folders_only_says_so_with_a_glob_of_their_files(tmp_path):
    """A quoted ``'photos/*'`` over a folder of sub-folders (a shell passes the folders
    themselves, searched) matched them and no file, and was reported as "no such file,
    folder or matching glob": it now says what it matched and how to name their files."""
    for day in ("day1", "day2"):
        (tmp_path / "photos" / day).mkdir(parents=True)
        (tmp_path / "photos" / day / f"{day}.png").write_bytes(b"")
    spec = str(tmp_path / "photos" / "*")
    jobs, missing = collect_inputs([spec])
    assert jobs == [] and len(missing) == 1 and missing[0][0] == spec
    why = missing[0][1]
    assert why.startswith("matches 2 folders and no file; give a folder to search it"), why
    assert f"({tmp_path / 'photos' / '*' / '*.png'})" in why
    assert "no such file" not in why
    # the glob it names finds their files (of each kind it is given)
    assert len(collect_inputs([str(tmp_path / "photos" / "*" / "*.png")])[0]) == 2


def _followed(spec: str) -> tuple[list, str]:
    """The jobs of what the refusal of the glob ``spec`` (folders, no file) says to give
    instead (the text in its last brackets), and that text."""
    _, missing = collect_inputs([spec])
    fix = missing[0][1].rsplit("(", 1)[1].rstrip(")")
    return collect_inputs([fix])[0], fix


def test_the_glob_a_glob_of_folders_is_told_to_be_finds_their_images(tmp_path):
    """``'cams/*'`` over folders of ``0001.png`` files was told to be ``cams/*/*.jpg``, which
    found nothing ("no images found in cams/*/*.jpg"): the glob now has their images' suffix,
    or ``*`` for several kinds, ``**/*`` for images further down; folders whose images share
    names (a glob of them refused: one output name) are told to be given by the folder that
    holds them, and that runs."""
    for cam, names in (("a", ["0001.png", "0002.png"]), ("b", ["0003.png", "notes.txt"])):
        (tmp_path / "cams" / cam).mkdir(parents=True)
        for name in names:
            (tmp_path / "cams" / cam / name).write_bytes(b"")
    jobs, fix = _followed(str(tmp_path / "cams" / "*"))
    assert fix == str(tmp_path / "cams" / "*" / "*.png")
    assert [j.stem for j in jobs] == ["0001", "0002", "0003"]

    (tmp_path / "cams" / "b" / "0004.JPG").write_bytes(b"")  # two kinds: all of them, images kept
    jobs, fix = _followed(str(tmp_path / "cams" / "*"))
    assert fix == str(tmp_path / "cams" / "*" / "*")
    assert [j.stem for j in jobs] == ["0001", "0002", "0003", "0004"]

    for cam in ("c", "d"):  # images one folder further down
        (tmp_path / "deep" / cam / "day1").mkdir(parents=True)
        (tmp_path / "deep" / cam / "day1" / f"{cam}.jpg").write_bytes(b"")
    jobs, fix = _followed(str(tmp_path / "deep" / "*"))
    assert fix == str(tmp_path / "deep" / "*" / "**" / "*")
    assert [j.stem for j in jobs] == ["c", "d"]
    for cam in ("c", "d"):  # deeper images of one name: their ``**/*`` would be refused
        (tmp_path / "deep" / cam / "day2").mkdir()
        (tmp_path / "deep" / cam / "day2" / "0001.jpg").write_bytes(b"")
    jobs, fix = _followed(str(tmp_path / "deep" / "*"))
    assert fix == str(tmp_path / "deep") and len(jobs) == 4, fix

    for cam in ("cam1", "cam2"):  # the README's cameras: 0001.png in each
        (tmp_path / "rig" / cam).mkdir(parents=True)
        (tmp_path / "rig" / cam / "0001.png").write_bytes(b"")
    _, missing = collect_inputs([str(tmp_path / "rig" / "*")])
    assert "their images share names (0001.png)" in missing[0][1], missing
    jobs, fix = _followed(str(tmp_path / "rig" / "*"))
    assert fix == str(tmp_path / "rig")
    assert [j.stem for j in jobs] == ["cam1/0001", "cam2/0001"]
    # a sibling the glob did not match: the folder that holds them would take it in too
    (tmp_path / "rig" / "other").mkdir()
    (tmp_path / "rig" / "other" / "x.png").write_bytes(b"")
    _, missing = collect_inputs([str(tmp_path / "rig" / "cam*")])
    why = missing[0][1]
    assert str(tmp_path / "rig" / "other" / "x.png") in why and "give each folder" in why, why
    assert f"({tmp_path / 'rig'})" not in why, why
    (tmp_path / "rig" / "other" / "x.png").unlink()  # one reached through a link, and a loop
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "y.png").write_bytes(b"")
    (tmp_path / "rig" / "other" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "rig" / "other" / "loop").symlink_to(tmp_path / "rig")
    why = collect_inputs([str(tmp_path / "rig" / "cam*")])[1][0][1]
    assert str(tmp_path / "rig" / "other" / "linked" / "y.png") in why, why
    for cam in (".cam1", ".cam2"):  # hidden folders: the search of the one that holds them
        (tmp_path / "hid" / cam).mkdir(parents=True)  # leaves them out
        (tmp_path / "hid" / cam / "0001.png").write_bytes(b"")
    _, missing = collect_inputs([str(tmp_path / "hid" / ".cam*")])
    why = missing[0][1]
    assert "give each folder" in why and f"({tmp_path / 'hid'})" not in why, why


def _image(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_a_linked_folder_and_a_deeper_one_of_one_name_are_told_the_folder_that_holds_them(
    tmp_path,
):
    """``cams/a/link -> ../../data1`` (``0001.jpg``) beside ``cams/b/d/0001.jpg``: the look
    for shared names did not follow the link, so ``cams/*/**/*`` was told, which follows it
    and was refused ("would write outputs of one name")."""
    _image(tmp_path / "data1" / "0001.jpg")
    _image(tmp_path / "cams" / "b" / "d" / "0001.jpg")
    (tmp_path / "cams" / "a").mkdir()
    (tmp_path / "cams" / "a" / "link").symlink_to("../../data1")
    jobs, fix = _followed(str(tmp_path / "cams" / "*"))
    assert fix == str(tmp_path / "cams"), fix
    assert sorted(j.stem for j in jobs) == ["a/link/0001", "b/d/0001"]


def test_a_glob_of_one_folder_whose_images_share_names_is_told_that_folder(tmp_path):
    """``cams/a*`` matching ``cams/a`` alone, of ``x/0001.jpg`` and ``y/0001.jpg``: its own
    images were said to be "other images too" of the folder that holds them (itself), and no
    folder to give was told; now it is, and it takes both."""
    for sub in ("x", "y"):
        _image(tmp_path / "cams" / "a" / sub / "0001.jpg")
    _, missing = collect_inputs([str(tmp_path / "cams" / "a*")])
    assert "other images" not in missing[0][1], missing
    jobs, fix = _followed(str(tmp_path / "cams" / "a*"))
    assert fix == str(tmp_path / "cams" / "a"), fix
    assert [j.stem for j in jobs] == ["x/0001", "y/0001"]


def test_images_of_one_stem_and_two_suffixes_are_no_shared_name(tmp_path):
    """``cams/a/0001.jpg`` and ``cams/b/0001.png`` were said to share a name (compared by
    stem), though a glob of their files takes both, each keeping its suffix."""
    _image(tmp_path / "cams" / "a" / "0001.jpg")
    _image(tmp_path / "cams" / "b" / "0001.png")
    _, missing = collect_inputs([str(tmp_path / "cams" / "*")])
    assert "share names" not in missing[0][1], missing
    jobs, fix = _followed(str(tmp_path / "cams" / "*"))
    assert fix == str(tmp_path / "cams" / "*" / "*"), fix
    assert [j.stem for j in jobs] == ["0001.jpg", "0001.png"]


def test_folders_of_images_in_them_and_deeper_are_told_a_glob_that_takes_all(tmp_path):
    """A glob of the files in the folders would leave out their sub-folders' images, which a
    folder given takes in: the glob told takes them all."""
    _image(tmp_path / "cams" / "a" / "1.png")
    _image(tmp_path / "cams" / "b" / "day" / "2.png")
    jobs, fix = _followed(str(tmp_path / "cams" / "*"))
    assert fix == str(tmp_path / "cams" / "*" / "**" / "*"), fix
    assert [j.stem for j in jobs] == ["1", "2"]


def test_folders_of_no_image_are_said_to_hold_none(tmp_path):
    """Folders with no image file under them are told so, not a glob that finds nothing."""
    (tmp_path / "cams" / "a" / "sub").mkdir(parents=True)
    (tmp_path / "cams" / "b").mkdir()
    (tmp_path / "cams" / "b" / "notes.txt").write_text("x")
    _, missing = collect_inputs([str(tmp_path / "cams" / "*")])
    assert missing[0][1].startswith("matches 2 folders and no file; no image file is found in")


def test_the_shared_image_names_are_said_as_the_files_have_them(tmp_path):
    """Folders of a camera's ``IMG_1.PNG`` each were said to share the name ``img_1.png`` (the
    name as a case-insensitive disk compares it), which no file there has: the name is said
    as the first file has it."""
    for cam in ("a", "b"):
        (tmp_path / "cams" / cam).mkdir(parents=True)
        (tmp_path / "cams" / cam / "IMG_1.PNG").write_bytes(b"")
    _, missing = collect_inputs([str(tmp_path / "cams" / "*")])
    assert "their images share names (IMG_1.PNG)" in missing[0][1], missing
