"""One order for every listing of a folder's images: ``loftup upsample DIR``, ``loftup upsample
'DIR/**/*.png'`` and ``loftup train data.root=DIR`` go through the same images in the same
order (:func:`loftup.listing.path_key`: by path, part by part, plain code-point order)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from loftup.data.images import list_images
from loftup.extract.inputs import collect_inputs

#: Mixed case, numbers (plain order: img10 before img2), nested folders, and names that sort
#: apart as whole strings and part by part ("set-b/..." < "set/..." as strings: "-" < "/").
NAMES = [
    "B.png", "a.png", "img10.png", "img2.png", "set/x.png", "set/deeper/z.png", "set-b/y.png",
    "set.png", "Set/w.png",
]  # fmt: skip
IN_ORDER = [
    "B.png", "Set/w.png", "a.png", "img10.png", "img2.png", "set/deeper/z.png", "set/x.png",
    "set-b/y.png", "set.png",
]  # fmt: skip
IN_ORDER.insert(3, "b_linked/2.png")  # the linked sub-folder, by its name here


def test_upsample_folder_upsample_glob_and_training_list_one_order(tmp_path):
    """With a linked sub-folder too (``b_linked -> ../elsewhere/zz``): upsample sorted by the
    folders' real paths, which put ``b_linked/2.png`` first (its real folder is beside ``data``)."""
    root = tmp_path / "data"
    for name in NAMES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(root / name)
    (tmp_path / "elsewhere" / "zz").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "elsewhere" / "zz" / "2.png")
    (root / "b_linked").symlink_to(tmp_path / "elsewhere" / "zz")
    training = [p.relative_to(root).as_posix() for p in list_images(root)]
    folder, missing = collect_inputs([str(root)])
    assert not missing
    glob, missing = collect_inputs([f"{root}/**/*.png"])
    assert not missing
    assert training == IN_ORDER
    assert [Path(j.given).relative_to(root).as_posix() for j in folder] == IN_ORDER
    assert [Path(j.given).relative_to(root).as_posix() for j in glob] == IN_ORDER
