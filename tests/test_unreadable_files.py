"""Files this user may not read (another user's of mode 600, or one of 000): each reader says
"cannot read PATH: permission denied" with the file's mode and owner and the fix (chmod, or the
user to run as), one line (loftup.read_refusal.read_refused), where each said something else:
"not a MATLAB v7.3 (HDF5) file", scipy's "Reader needs file name or open file-like object", a frame to
re-download, a world to delete and write again, an image's bare "[Errno 13] Permission denied".
Run where modes apply (tests/file_modes.py: as root, under setpriv), each for a file of this
user's own (mode 000) and, as root only, of another user's (``whose``)."""

from __future__ import annotations

import numpy as np
import pytest

from file_modes import WHOSE, refuse, where_modes_apply

whose_files = pytest.mark.parametrize("whose", WHOSE)


def _image(path):
    from PIL import Image

    Image.fromarray(np.full((24, 32, 3), 90, dtype=np.uint8)).save(path)
    return path


def _says_the_fix(said: str, path, owner: str | None = None) -> None:
    """``said`` is one line: a PathPermissionError (or a subclass) naming ``path`` and the
    fix for a file of its own (chmod u+r) or of ``owner``'s."""
    assert "\n" not in said, said
    kind, message = said.split(": ", 1)
    assert kind.endswith("PermissionError"), said
    assert message.startswith("cannot read ") and f"{path}: permission denied (mode " in said
    if owner is None:
        assert f"chmod u+r {path}" in said, said
    else:
        assert f"owner {owner}" in said and f"chmod o+r {path}), or run as {owner}" in said


@whose_files
def test_an_image_this_user_may_not_read_says_so_and_the_fix(tmp_path, whose):
    """``loftup upsample`` (load_image_tensor) and training (load_square) said "cannot read
    image PATH: [Errno 13] Permission denied", no fix; the error is still an ImageReadError,
    so that an upsample run names it among its failed inputs and goes on, and training skips
    it with that line."""
    path = _image(tmp_path / "image.png")
    owner = refuse(path, whose)
    said = where_modes_apply(f"""
from file_modes import told
from loftup.data.images import load_square
from loftup.io import ImageReadError, load_image_tensor
path = {str(path)!r}
result = [told(lambda: load_image_tensor(path)), told(lambda: load_square(path, 8))]
try:
    load_image_tensor(path)
except ImageReadError:
    result.append("an ImageReadError")
""")
    upsample, train, kind = said
    assert kind == "an ImageReadError"
    _says_the_fix(upsample, path, owner)
    assert train == upsample and upsample.startswith("ImagePermissionError: cannot read image ")


@whose_files
def test_dataset_files_this_user_may_not_read_say_so_and_the_fix(tmp_path, whose):
    """NYUv2's labelled set of another user's (mode 600) was "not a MATLAB v7.3 (HDF5) file
    (... errno = 13 ...)", its splits.mat of mode 000 scipy's "Reader needs file name or open
    file-like object"; a DAVIS frame "replace it (re-download or re-extract the dataset)",
    the normals "cannot read ... ([Errno 13] ...); replace it", a split list a bare
    PermissionError. A damaged file is still said to be one (the same check, readable). The
    labelled set and the frame are ``whose``, the others this user's own."""
    from eval_data import write_davis, write_nyu_normals, write_nyuv2

    nyu, other = write_nyuv2(tmp_path / "nyu"), write_nyuv2(tmp_path / "other")
    normals = write_nyuv2(tmp_path / "normals")  # the labelled set readable, its normals not
    write_nyu_normals(normals)
    np.save(normals / "normals.npy", np.zeros((6, 48, 64, 3), dtype=np.float32))
    davis = write_davis(tmp_path / "davis")
    frame = davis / "JPEGImages" / "480p" / "bear" / "00002.jpg"
    split = davis / "ImageSets" / "2017" / "val.txt"
    name = refuse(nyu / "nyu_depth_v2_labeled.mat", whose)
    refuse(frame, whose)
    for own in (other / "splits.mat", normals / "all_normals.pklz", normals / "normals.npy", split):
        own.chmod(0)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "splits.mat").write_bytes(b"not MATLAB")  # damaged, readable
    said = where_modes_apply(f"""
from pathlib import Path
from file_modes import told
from loftup.eval.datasets import NYUv2Depth, NYUv2Normals
from loftup.eval.datasets.common import open_rgb, read_lines
from loftup.eval.datasets.normals_file import read_normals_pickle
from loftup.eval.datasets.nyu import nyu_indices
nyu, other, normals = Path({str(nyu)!r}), Path({str(other)!r}), Path({str(normals)!r})
frame, split = Path({str(frame)!r}), Path({str(split)!r})
result = {{
    "mat": told(lambda: NYUv2Depth(nyu, "test", 32)),
    "splits": told(lambda: nyu_indices(other, "test")),
    "pickle": told(lambda: read_normals_pickle(normals / "all_normals.pklz")),
    "npy": told(lambda: NYUv2Normals(normals, "test", 32, normals=normals / "normals.npy")),
    "frame": told(lambda: open_rgb(frame)),
    "split list": told(lambda: read_lines(split, "split list", "")),
    "damaged": told(lambda: nyu_indices(Path({str(tmp_path / "bad")!r}), "test")),
}}
""")
    _says_the_fix(said["mat"], nyu / "nyu_depth_v2_labeled.mat", name)
    _says_the_fix(said["frame"], frame, name)
    _says_the_fix(said["splits"], other / "splits.mat")
    _says_the_fix(said["pickle"], normals / "all_normals.pklz")
    _says_the_fix(said["npy"], normals / "normals.npy")
    _says_the_fix(said["split list"], split)
    assert said["damaged"].startswith("DatasetError: cannot read ")
    assert "as a MATLAB file" in said["damaged"]


def _world(root):
    from loftup.data.scene_files import write_scenes
    from loftup.data.scenes import SceneConfig

    return write_scenes(root, SceneConfig(height=16, width=16), 1, progress=False)


@whose_files
def test_a_world_this_user_may_not_read_is_not_called_damaged(tmp_path, whose):
    """World.load with a scene's sa1b/ folder this user may read but not search (mode 600),
    or a labels/ folder of ``whose`` (own: mode 000; another user's: mode 700), or a scene
    file ``whose``, and read_world with world.json ``whose``: each said "the world is
    damaged; delete the folder and write the world again", of files that are whole; writing
    the world again (read_record, as `loftup world scenes --out` and the demo do) "choose
    another --out or delete it"."""
    worlds = {what: _world(tmp_path / what) for what in ("sa1b", "labels", "json", "record")}
    worlds["sa1b"].joinpath("sa1b").chmod(0o600)
    refuse(worlds["labels"] / "labels", whose)
    if whose != "own":
        (worlds["labels"] / "labels").chmod(0o700)
    name = refuse(worlds["json"].joinpath("sa1b", "sa_1.json"), whose)
    refuse(worlds["record"].joinpath("world.json"), whose)
    said = where_modes_apply(f"""
from file_modes import told
from loftup.data.scene_files import read_world
result = {{what: told(lambda: read_world(root).load("sa_1"))
          for what, root in { ({k: str(v) for k, v in worlds.items() if k != "record"})!r}.items()}}
result["record"] = told(lambda: read_world({str(worlds["record"])!r}))
from pathlib import Path
from loftup.data.world_record import read_record
result["written again"] = told(lambda: read_record(Path({str(worlds["record"])!r})))
""")
    for what, folder in (("sa1b", "sa1b"), ("labels", "labels")):
        blocked = worlds[what] / folder
        assert said[what].startswith(f"PathPermissionError: cannot read scene file {blocked}/")
        assert f"({blocked} cannot be searched by this user); have {blocked} made " in said[what]
    _says_the_fix(said["json"], worlds["json"] / "sa1b" / "sa_1.json", name)
    _says_the_fix(said["record"], worlds["record"] / "world.json", name)
    _says_the_fix(said["written again"], worlds["record"] / "world.json", name)  # not "delete"
    assert not any("damaged" in line for line in said.values()), said


@whose_files
def test_training_files_this_user_may_not_read_say_so_and_the_fix(tmp_path, whose):
    """Training skips a file it cannot read with a warning of why: an SA-1B annotation file
    of mode 000 was "[Errno 13] Permission denied: '...'", no fix."""
    from train_fixtures import write_sa1b

    root = write_sa1b(tmp_path / "sa", 2, size=32)
    name = refuse(root / "sa_1.json", whose)
    said = where_modes_apply(f"""
from file_modes import told
from loftup.data.dataset import MaskedImages
data = MaskedImages({str(root)!r}, size=32, masks="sa1b")
result = [told(lambda: data.load(i)) for i in range(2)]
""")
    assert said[0] == "none"
    _says_the_fix(said[1], root / "sa_1.json", name)
    assert said[1].startswith(f"PathPermissionError: cannot read SA-1B annotations {root}/")


def test_training_that_may_read_none_of_its_files_says_why_not_a_wrong_folder(tmp_path):
    """Three images of mode 000 ended training with "none of the 3 files under ROOT could be
    read (see the warnings above); is the folder the right one?": it is; this user may not
    read them, and the first one's line says the fix. A damaged image among them keeps the
    question (what is wrong may be the folder)."""
    refused, mixed = tmp_path / "refused", tmp_path / "mixed"
    for root in (refused, mixed):
        root.mkdir()
        for n in range(3):
            refuse(_image(root / f"{n}.png"), "own")
    (mixed / "0.png").chmod(0o644)
    (mixed / "0.png").write_bytes(b"no PNG")
    said = where_modes_apply(f"""
from file_modes import told
from loftup.data.dataset import MaskedImages
result = [told(lambda: MaskedImages(root, size=32, masks="superpixels")[0])
          for root in {[str(refused), str(mixed)]!r}]
""")
    first = f"cannot read image {refused}/0.png: permission denied (mode ----------: "
    assert said[0].startswith(
        f"LoftUpError: none of the 3 files under {refused} could be read: this user may not "
        f"read them (first: {first}"
    ), said[0]
    assert said[0].endswith(f"chmod u+r {refused}/0.png)") and "right one" not in said[0]
    assert said[1] == (
        f"LoftUpError: none of the 3 files under {mixed} could be read (see the warnings "
        "above); is the folder the right one?"
    )
