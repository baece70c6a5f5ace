"""Listing a training folder: SA-1B's pairs found by name, in path order, with a bar."""

import os

import pytest

from loftup.data.dataset import MaskedImages
from loftup.data.images import list_images
from loftup.data.sa1b import list_sa1b
from loftup.errors import LoftUpError, UsageError
from train_fixtures import tiny_config, write_sa1b

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def _empty_files(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_an_sa1b_listing_finds_each_json_by_name_not_file_by_file(tmp_path, monkeypatch):
    """Each image's JSON was looked for on the disk (a stat or two an image): SA-1B's 11
    million on a network disk took hours. Its folder's names say it, an image without JSON
    too (two stats each, a second on 50k of them; a case-blind disk's ``.Json`` is matched
    among the names, in any case)."""
    root = tmp_path / "sa"
    names = ["a/sa_1.jpg", "a/sa_1.json", "a/sa_2.jpg", "a/sa_2.JSON", "a/sa_3.jpg"]
    names += ["a/sa_4.jpg", "a/sa_4.Json", "a/sa_5.jpg", "a/sa_6.jpeg", "a/notes.txt"]
    _empty_files(root, names)
    looked_at = []
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        looked_at.append(os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    pairs, orphans = list_sa1b(root)
    monkeypatch.undo()
    assert [(i.name, a.name) for i, a in pairs] == [
        ("sa_1.jpg", "sa_1.json"),
        ("sa_2.jpg", "sa_2.JSON"),
        ("sa_4.jpg", "sa_4.Json"),
    ]
    assert orphans == 3
    files = [p for p in looked_at if "sa_" in p]  # one in the folder: may it be searched
    assert len(files) <= 1, looked_at  # (listing.unsearched), not one each


def test_images_and_pairs_come_in_path_order_across_folders(tmp_path):
    """Path order, part by part, as the listing was (the data order of a run, and of the run
    it resumes): ``a/b.jpg``, then ``a/c/x.jpg``, then ``a/d.jpg``, then ``a-b/``, then
    ``a.jpg``; not the walk's order (a folder's files before its folders) nor the path
    strings' ('-' and '.' before '/')."""
    root = tmp_path / "sa"
    names = ["a/d.jpg", "a-b/y.jpg", "a/c/x.jpg", "a/b.jpg", "a.jpg", "a/c/sa_1.jpeg"]
    _empty_files(root, names + [n.rsplit(".", 1)[0] + ".json" for n in names])
    want = ["a/b.jpg", "a/c/sa_1.jpeg", "a/c/x.jpg", "a/d.jpg", "a-b/y.jpg", "a.jpg"]
    pairs, orphans = list_sa1b(root)
    assert [i.relative_to(root).as_posix() for i, _ in pairs] == want and orphans == 0
    assert all(a == i.with_suffix(".json") for i, a in pairs)
    assert [p.relative_to(root).as_posix() for p in list_images(root)] == want
    assert list_images(root) == sorted(list_images(root))


@pytest.fixture
def bar_at_once(monkeypatch):
    """The listing's bar shown from its start, not after seconds (which these tiny listings
    never take)."""
    monkeypatch.setattr("loftup.data.images.LISTING_BAR_DELAY", 0)


@pytest.mark.parametrize("masks", ["sa1b", "superpixels"])
def test_listing_a_training_folder_shows_a_bar_when_asked(tmp_path, capsys, masks, bar_at_once):
    root = write_sa1b(tmp_path / "sa", 2, size=16)
    MaskedImages(root, size=16, masks=masks, cache_dir=tmp_path / "c", progress=True)
    assert "listing images" in capsys.readouterr().err
    MaskedImages(root, size=16, masks=masks, cache_dir=tmp_path / "c")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("progress", ["true", "false"])
def test_training_lists_its_data_with_a_bar_unless_log_progress_is_off(
    tmp_path, capsys, progress, bar_at_once
):
    from loftup.train import train

    root = write_sa1b(tmp_path / "sa", 4, size=56)
    train(tiny_config(root, tmp_path / "run", 1, 1, f"log.progress={progress}"))
    assert ("listing images" in capsys.readouterr().err) == (progress == "true")


def test_a_listing_that_takes_no_time_draws_no_bar(tmp_path, capsys):
    """A bar drawn and cleared in a blink was a line of noise before each run's first line,
    and left in its log (a run's error was no longer its one line)."""
    root = write_sa1b(tmp_path / "sa", 2, size=16)
    MaskedImages(root, size=16, masks="sa1b", progress=True)
    assert capsys.readouterr().err == ""


def test_a_flat_folder_s_bar_counts_the_images_while_the_folder_is_read(tmp_path, monkeypatch):
    """SA-1B's tars are extracted into one folder of millions of files: its bar, updated
    once the whole folder was read, showed nothing for minutes, then was drawn and cleared."""
    counts = _recorded_bars(monkeypatch)
    root = tmp_path / "sa"
    _empty_files(root, [f"sa_{i}.{suffix}" for i in range(10) for suffix in ("jpg", "json")])
    pairs, orphans = list_sa1b(root, progress=True)
    assert len(pairs) == 10 and orphans == 0
    counts = counts["listing images"]
    assert [c for c in counts if 0 < c < 10], counts  # some, not all, counted: mid-folder
    assert counts == sorted(counts) and counts[-1] == 10


def _recorded_bars(monkeypatch) -> dict[str, list[int]]:
    """The counts each bar (by its description) shows at each update, updated every 4."""
    import tqdm.auto

    counts = {}

    class Recording(tqdm.auto.tqdm):
        def update(self, n=1):
            super().update(n)
            if not self.disable:
                counts.setdefault(self.desc, []).append(self.n)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    monkeypatch.setattr("loftup.data.images.BAR_EVERY", 4, raising=False)
    return counts


def test_pairing_images_with_their_json_moves_a_bar_and_leaves_collection_on(tmp_path, monkeypatch):
    """Once its folders were read, an SA-1B listing made its paths (2 s of 100k pairs' 3;
    minutes of SA-1B's 11 million) with its bar standing still. Python's garbage collector,
    paused meanwhile (half of the time), is on again after a listing, one refused too."""
    import gc

    counts = _recorded_bars(monkeypatch)
    root = tmp_path / "sa"
    _empty_files(root, [f"sa_{i}.{suffix}" for i in range(10) for suffix in ("jpg", "json")])
    pairs, _ = list_sa1b(root, progress=True)
    assert counts["pairing images with their JSON"] == [4, 8, 10] and len(pairs) == 10
    assert gc.isenabled()
    _empty_files(root, ["sa_1.JPG"])  # two images of one JSON: refused mid-listing
    with pytest.raises(UsageError):
        list_sa1b(root)
    assert gc.isenabled()


def test_an_image_whose_json_is_a_link_to_nowhere_has_no_json(tmp_path):
    """JSONs linked in from another disk, not mounted (or their folder removed): the name
    alone paired the image with the dangling link, and training, once the backbone had
    loaded, skipped every image as unreadable, not the early error that names them. A link
    that leads to a JSON still pairs."""
    root = tmp_path / "sa"
    _empty_files(root, ["x.jpg", "y.jpg", "z.jpg", "z.json", "store/y.json"])
    (root / "x.json").symlink_to(tmp_path / "unmounted" / "x.json")
    (root / "y.json").symlink_to(root / "store" / "y.json")
    pairs, orphans = list_sa1b(root)
    assert [(i.name, a.name) for i, a in pairs] == [("y.jpg", "y.json"), ("z.jpg", "z.json")]
    assert orphans == 1
    (root / "y.json").unlink()
    (root / "z.json").unlink()
    with pytest.raises(LoftUpError) as info:
        MaskedImages(root, size=16, masks="sa1b")
    assert "3 images without an SA-1B JSON" in str(info.value), info.value


def test_an_image_whose_json_is_a_pipe_has_no_json(tmp_path):
    """A pipe named sa_1.json was paired by its name, and training hung for ever in its
    open(), waiting for a writer; a link to a pipe likewise. Listing opens nothing, so this
    test cannot hang."""
    root = tmp_path / "sa"
    _empty_files(root, ["x.jpg", "y.jpg", "z.jpg", "z.json"])
    os.mkfifo(root / "x.json")
    os.mkfifo(tmp_path / "pipe")
    (root / "y.json").symlink_to(tmp_path / "pipe")
    pairs, orphans = list_sa1b(root)
    assert [(i.name, a.name) for i, a in pairs] == [("z.jpg", "z.json")] and orphans == 2


def test_an_sa1b_folder_of_no_pair_says_each_file_it_passes_over_once(tmp_path):
    """Listed again for its plain images, the folder's pipe was said twice before "no
    sa_N.jpg images found"."""
    root = tmp_path / "sa"
    _empty_files(root, ["photo.jpg"])
    os.mkfifo(root / "sa_9.jpg")
    with pytest.warns(UserWarning) as caught, pytest.raises(LoftUpError, match="no sa_N.jpg"):
        MaskedImages(root, size=16, masks="sa1b")
    said = [str(w.message) for w in caught]
    assert len([m for m in said if "sa_9.jpg" in m]) == 1, said


def test_a_json_an_image_of_its_exact_name_holds_is_not_given_to_another_by_case(tmp_path):
    """sa_1.jpg beside SA_1.jpg and SA_1.json alone (a disk that tells case apart): the
    case-blind match gave SA_1.json to sa_1.jpg too, and the listing refused the folder as two
    images sharing one JSON; SA_1.jpg holds it, and sa_1.jpg is an image without JSON."""
    from loftup.data.sa1b import list_sa1b

    for name in ("SA_1.jpg", "SA_1.json", "sa_1.jpg", "sa_2.jpg", "SA_2.Json"):
        (tmp_path / name).write_bytes(b"x")
    if len(list(tmp_path.iterdir())) < 5:
        pytest.skip("this disk does not tell case apart")
    pairs, orphans = list_sa1b(tmp_path)
    assert [(i.name, j.name) for i, j in pairs] == [
        ("SA_1.jpg", "SA_1.json"),
        ("sa_2.jpg", "SA_2.Json"),
    ]
    assert orphans == 1
