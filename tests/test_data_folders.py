"""Training data folders: missing or empty ones, out-of-range counts and what a folder's listing
holds (linked folders, a run's pictures, SA-1B pairs by name, unextracted shards)."""

import numpy as np
import pytest

from loftup.data.dataset import MaskedImages
from loftup.errors import LoftUpError, UsageError
from train_fixtures import scene, write_folder, write_sa1b

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def test_missing_or_empty_folders_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(LoftUpError, match="does not exist") as e:
        MaskedImages(tmp_path / "missing", size=8)
    assert "VARIABLE" not in str(e.value)
    # a $VAR given from Python, or quoted on the command line (--data '$DATA/sa1b'), is not
    # expanded: the error says how to have it expanded in either, and where it is
    hint = (
        "; its $ was taken as written{}: on the command line, let the shell expand it (--data "
        '"$DATA/x" or unquoted, not in single quotes); from Python, expand it first '
        "(os.path.expandvars); a config file's data.root and a data.root= override expand $VAR "
        "themselves"
    )
    monkeypatch.delenv("DATA", raising=False)
    with pytest.raises(LoftUpError) as e:
        MaskedImages(f"{tmp_path}/${{DATA}}/sa1b", size=8)
    assert str(e.value).endswith(hint.format(""))
    (tmp_path / "d" / "sa1b").mkdir(parents=True)
    monkeypatch.setenv("DATA", str(tmp_path / "d"))
    with pytest.raises(LoftUpError) as e:
        MaskedImages("$DATA/sa1b", size=8)
    there = f" (expanded here it is {tmp_path / 'd' / 'sa1b'}, which exists)"
    assert str(e.value) == (
        "data folder $DATA/sa1b does not exist (pass --data /path/to/images, or data.root=)"
        + hint.format(there)
    )
    # ~user of no user of this machine: one line naming the path (Path.expanduser raised a
    # bare RuntimeError)
    with pytest.raises(UsageError) as e:
        MaskedImages("~no_such_user_loftup/sa1b", size=8)
    assert str(e.value) == (
        "data folder ~no_such_user_loftup/sa1b: ~no_such_user_loftup is no home folder (no user "
        "no_such_user_loftup on this machine); give the path without it, e.g. its "
        "absolute path"
    )
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(LoftUpError, match="no sa_N.jpg images with their sa_N.json"):
        MaskedImages(tmp_path, size=8, masks="sa1b")
    with pytest.raises(UsageError, match=r"^mask cache ~no_such_user_loftup/c: ~no_such_user"):
        MaskedImages(tmp_path, size=8, masks="superpixels", cache_dir="~no_such_user_loftup/c")
    ds = MaskedImages(
        tmp_path, size=8, masks="superpixels", cache_dir=tmp_path / "c", max_retries=2
    )
    with pytest.raises(LoftUpError, match="none of the 1 files under .* could be read"):
        ds[0]


@pytest.mark.parametrize(
    "given, why",
    [
        ({"size": 0}, "size must be a whole number >= 1, got 0"),
        ({"size": 16.5}, "size must be a whole number >= 1, got 16.5"),
        ({"max_images": 0}, "max_images must be a whole number >= 1 or None (all), got 0"),
        ({"max_images": -1}, "max_images must be a whole number >= 1 or None (all), got -1"),
        ({"max_masks": -1}, "max_masks must be a whole number >= 1, got -1"),
        ({"max_retries": True}, "max_retries must be a whole number >= 0, got True"),
    ],
)
def test_masked_images_counts_out_of_range_are_named(tmp_path, given, why):
    """size=0 made every image "unreadable", max_images=0 said the images had no JSON beside
    them, and -1 (max_images, max_masks) dropped the last image or mask without a word."""
    root = write_sa1b(tmp_path / "sa", 2, size=16)
    with pytest.raises(UsageError) as e:
        MaskedImages(root, **{"size": 16, **given})
    assert str(e.value) == f"MaskedImages: {why}"
    assert len(MaskedImages(root, size=np.int64(16), max_images=np.int64(1))) == 1


def test_plain_images_read_as_sa1b_say_how_to_train_on_them(tmp_path):
    """A folder of photos without SA-1B JSON, read with the default data.masks=sa1b, said only
    that it found no sa_N.jpg with sa_N.json: not that it saw the images, nor what to pass."""
    root = write_folder(tmp_path / "photos", 3, size=16)  # PNGs, no JSON
    with pytest.raises(LoftUpError) as info:
        MaskedImages(root, size=16, masks="sa1b")
    message = str(info.value)
    assert "3 images without an SA-1B JSON" in message and "--masks superpixels" in message


def test_image_folders_linked_into_the_data_folder_are_listed_once(tmp_path):
    """Shards on other disks are linked into one data folder: os.walk did not follow the
    links, so their images were silently left out; a link back up must not loop, and a folder
    linked twice is read once (not trained on twice)."""
    from loftup.data.images import list_images

    root = write_folder(tmp_path / "data" / "a", 2, size=8).parent
    other = write_folder(tmp_path / "disk2" / "shard", 3, size=8)
    (root / "b").symlink_to(other, target_is_directory=True)
    (root / "c").symlink_to(other, target_is_directory=True)  # the same shard again
    (root / "a" / "up").symlink_to(root, target_is_directory=True)  # a loop
    found = list_images(root)
    assert [p.relative_to(root).as_posix() for p in found] == [
        "a/img_000.png", "a/img_001.png", "b/img_000.png", "b/img_001.png", "b/img_002.png"
    ]  # fmt: skip


def test_the_pictures_of_a_run_inside_the_data_folder_are_not_training_images(tmp_path):
    """A run whose --out lies in its own data folder (`--data . --out runs/s1`) draws PCA
    pictures there (viz/step_N.png): its --resume read them as training images (other data
    than the run it goes on with, and PCA plots to learn from), as did every later run on the
    folder. A picture named so outside a run folder is still an image."""
    from loftup.train.monitor import Monitor, write_run_record

    root = write_folder(tmp_path / "imgs", 2, size=32)
    run = root / "runs" / "s1"
    run.mkdir(parents=True)
    write_run_record(run, {}, 1)
    drawn = Monitor(run, tensorboard=False).picture_path(1000)
    write_folder(drawn.parent, 1, size=32).joinpath("img_000.png").rename(drawn)
    lookalike = write_folder(root / "mine" / "viz", 1, size=32) / "img_000.png"
    lookalike = lookalike.rename(lookalike.with_name(drawn.name))
    ds = MaskedImages(root, size=32, masks="superpixels", cache_dir=tmp_path / "c")
    assert ds.images == sorted([root / "img_000.png", root / "img_001.png", lookalike])


def test_two_images_of_one_sa1b_json_are_refused_naming_both(tmp_path):
    """``sa_0.jpg`` beside ``sa_0.JPG`` (or ``sa_0.jpeg``) on a disk that tells case apart both
    took ``sa_0.json``: one image trained on the other's masks without a word."""
    root = write_sa1b(tmp_path / "sa", 2, size=16)
    (root / "sa_1.JPG").write_bytes((root / "sa_1.jpg").read_bytes())
    with pytest.raises(UsageError) as e:
        MaskedImages(root, size=16, masks="sa1b")
    assert str(e.value).startswith(f"sa_1.JPG and sa_1.jpg in {root} share one annotation file")
    assert "sa_1.json" in str(e.value) and "\n" not in str(e.value)
    (root / "sa_1.JPG").rename(root / "sa_1.jpeg")
    with pytest.raises(UsageError, match="sa_1.jpeg and sa_1.jpg in .* share one annotation"):
        MaskedImages(root, size=16, masks="sa1b")


def test_an_upper_case_json_is_the_annotation_of_its_image(tmp_path):
    root = write_sa1b(tmp_path / "sa", 2, size=16)
    (root / "sa_1.jpg").rename(root / "SA_1.JPG")
    (root / "sa_1.json").rename(root / "SA_1.JSON")
    ds = MaskedImages(root, size=16, masks="sa1b")
    assert ds.orphans == 0 and ds.annotations[0].name == "SA_1.JSON"
    assert ds[0]["skipped"] == [] and ds[0]["masks"].shape[0] > 0


def test_a_folder_of_unextracted_sa1b_shards_says_to_extract_them(tmp_path):
    """SA-1B downloads as sa_NNNNNN.tar shards: a folder of them said only 'no sa_N.jpg images
    found', as if the path were wrong."""
    (tmp_path / "sa1b").mkdir()
    for n in (1, 0):
        (tmp_path / "sa1b" / f"sa_00000{n}.tar").write_bytes(b"")
    with pytest.raises(LoftUpError) as e:
        MaskedImages(tmp_path, size=16, masks="sa1b")
    shard = tmp_path / "sa1b" / "sa_000000.tar"
    assert str(e.value).endswith(
        "it holds archives (sa_000000.tar and 1 more), whose images are not read: extract them "
        f"first (an SA-1B shard: tar -xf {shard} -C {shard.parent})"
    )
    (tmp_path / "sa1b" / "sa_000001.tar").unlink()
    with pytest.raises(LoftUpError, match=r"archives \(sa_000000.tar\), whose"):
        MaskedImages(tmp_path, size=16, masks="superpixels", cache_dir=tmp_path / "c")


def test_a_folder_of_images_upsample_reads_is_a_folder_of_training_images(tmp_path):
    """Training listed .jpg, .png, .webp, .bmp and .tif only: a folder of .ppm, .pgm or .gif
    images (which ``loftup upsample`` reads) was "no image files found" to it."""
    from PIL import Image

    from loftup.io import IMAGE_SUFFIXES

    root = tmp_path / "frames"
    root.mkdir()
    pixels = scene(0, 16)[0]
    for suffix in (".ppm", ".PGM", ".gif"):
        Image.fromarray(pixels).save(root / f"frame{suffix}")
    ds = MaskedImages(
        root, size=16, masks="superpixels", superpixels=(4,), cache_dir=tmp_path / "c"
    )
    assert [p.name for p in ds.images] == ["frame.PGM", "frame.gif", "frame.ppm"]
    assert all(ds[i]["skipped"] == [] and ds[i]["masks"].shape[0] > 0 for i in range(3))
    for suffix in IMAGE_SUFFIXES:  # every kind upsample reads, whatever the case
        (root / f"more{suffix.upper()}").write_bytes(b"")
    n = len(MaskedImages(root, size=16, masks="superpixels", cache_dir=tmp_path / "c"))
    assert n == 3 + len(IMAGE_SUFFIXES)
