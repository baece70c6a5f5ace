"""Dataset readers on tiny copies of each dataset's exact on-disk layout; the feature cache."""

import pickle
import re
import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import loftup
from eval_data import (
    write_ade20k,
    write_cityscapes,
    write_cocostuff,
    write_davis,
    write_nyu_normals,
    write_nyuv2,
    write_voc,
)
from loftup.eval.datasets import (
    SEG_DATASETS,
    DatasetError,
    NYUv2Depth,
    NYUv2Normals,
    SegmentationSet,
    davis_sequences,
    nyu_normals_file,
    read_normals_pickle,
)
from loftup.eval.datasets.seg import COCO_FINE_TO_COARSE
from loftup.eval.features import FeatureCache


def test_label_tables_follow_each_datasets_convention():
    coco = SEG_DATASETS["cocostuff"].decode(np.array([0, 1, 156, 181, 255]))
    assert coco.tolist() == [9, 11, 23, 24, 255]  # person, bicycle -> vehicle, sky, wood->solid
    assert len(COCO_FINE_TO_COARSE) == 182 and set(COCO_FINE_TO_COARSE.tolist()) == set(range(27))
    city = SEG_DATASETS["cityscapes"].decode(np.array([7, 8, 26, 33, 0, 1, 6, 34]))
    assert city.tolist() == [0, 1, 13, 18, 255, 255, 255, 255]
    ade = SEG_DATASETS["ade20k"].decode(np.array([0, 1, 150]))
    assert ade.tolist() == [255, 0, 149]
    voc = SEG_DATASETS["voc"].decode(np.array([0, 20, 255]))
    assert voc.tolist() == [0, 20, 255]


@pytest.mark.parametrize(
    "name, writer, expected",
    [
        ("cocostuff", write_cocostuff, {9, 11, 23, 255}),
        ("cityscapes", write_cityscapes, {0, 13, 11, 255}),
        ("ade20k", write_ade20k, {0, 1, 2, 255}),
        ("voc", write_voc, {0, 1, 2, 255}),
    ],
)
def test_segmentation_readers_read_the_standard_layouts(tmp_path, name, writer, expected):
    writer(tmp_path)
    train = SegmentationSet(name, tmp_path, "train", 28)
    val = SegmentationSet(name, tmp_path, "val", 28, limit=2)
    assert len(train) == 4 and len(val) == 2
    item = train[0]
    assert item["image"].shape == (3, 28, 28) and item["label"].shape == (28, 28)
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    seen = set()
    for i in range(len(train)):
        seen |= set(train[i]["label"].unique().tolist())
    assert seen == expected
    big = SegmentationSet(name, tmp_path, "train", 28, backbone_size=56)[0]["backbone_image"]
    assert big.shape == (3, 56, 56)  # the same crop, sharper: for the highres reference
    assert (
        F.interpolate(big[None], size=(28, 28), mode="area")[0] - item["image"]
    ).abs().mean() < 0.05
    again = pickle.loads(pickle.dumps(train))[0]  # DataLoader workers may pickle the dataset
    assert torch.equal(again["label"], item["label"])
    # the label follows the image: the red region carries the same class in every image
    red = item["image"][0] > 0.6
    assert len(item["label"][red & (item["label"] != 255)].unique()) == 1


def test_missing_or_incomplete_datasets_say_what_and_where(tmp_path):
    with pytest.raises(DatasetError, match="Coco164kFull_Stuff_Coarse.txt"):
        SegmentationSet("cocostuff", tmp_path, "train", 28)
    base = write_voc(tmp_path)
    (base / "SegmentationClass" / "2007_000000.png").unlink()
    with pytest.raises(DatasetError, match="missing"):
        SegmentationSet("voc", tmp_path, "train", 28)
    with pytest.raises(DatasetError, match="nyu_depth_v2_labeled.mat"):
        NYUv2Depth(tmp_path, "train", 28)


@pytest.mark.parametrize(
    "given, writer, name",
    [
        ("cocostuff", write_cityscapes, "cityscapes"),
        ("cityscapes", write_voc, "voc"),
        ("voc", write_ade20k, "ade20k"),
        ("ade20k", write_cocostuff, "cocostuff"),
    ],
)
def test_one_datasets_folder_given_for_another_names_the_dataset_it_holds(
    tmp_path, given, writer, name
):
    """--dataset has a default (cocostuff): a Cityscapes folder given without --dataset was
    told as a missing COCO-Stuff list, which names no fix; it names --dataset now. A root that
    holds the asked dataset's folder is not second-guessed."""
    base = writer(tmp_path, n=1)
    with pytest.raises(DatasetError, match=f"holds the {name} layout, not the {given} one: "
                       f"pass --dataset {name}"):  # fmt: skip
        SegmentationSet(given, base, "train", 28)
    own = {"voc": "VOCdevkit", "ade20k": "ADEChallengeData2016"}.get(given, given)
    (tmp_path / own).mkdir()  # the asked dataset's own folder beside it, incomplete
    with pytest.raises(DatasetError) as info:
        SegmentationSet(given, tmp_path, "train", 28)
    assert "layout, not the" not in str(info.value)


def test_nyu_reader_undoes_matlabs_transposition(tmp_path):
    import h5py

    write_nyuv2(tmp_path, n=4, h=48, w=64)
    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "r") as f:
        rgb = np.asarray(f["images"][2]).transpose(2, 1, 0)  # (48, 64, 3)
        depth = np.asarray(f["rawDepths"][2]).T
        filled = np.asarray(f["depths"][2]).T
    test = NYUv2Depth(tmp_path, "test", 48)  # test = images 3 and 4 (1-based)
    assert len(test) == 2 and len(NYUv2Depth(tmp_path, "train", 48)) == 2
    item = test[0]
    # size 48 = the short side: no resize, a centre crop of columns 8..55
    expected = torch.from_numpy(rgb[:, 8:56].copy()).permute(2, 0, 1).float() / 255
    assert torch.equal(item["image"], expected)
    d = torch.from_numpy(depth[:, 8:56].copy())
    d[d > 10] = 0
    assert torch.equal(item["depth"], d) and (item["depth"] == 0).any()
    # the sensor's holes stay holes (not scored), as Probe3D scores them: "depths" fills them
    holes = torch.from_numpy(depth[:, 8:56] == 0)
    assert holes.any() and (item["depth"][holes] == 0).all()
    assert (torch.from_numpy(filled[:, 8:56])[holes] == 7.0).all()


def test_nyu_normals_are_converted_once_and_cropped_as_the_depth_is(tmp_path):
    normals = write_nyu_normals(write_nyuv2(tmp_path, n=4, h=48, w=64), n=4)
    cache = tmp_path / "cache"
    test = NYUv2Normals(tmp_path, "test", 48, cache_dir=cache)
    converted = list((cache / "nyuv2").glob("all_normals-*.npy"))
    assert [test.normals_path] == converted
    item = test[0]  # image 3 (1-based): columns 8..55, as the depth
    expected = torch.from_numpy(normals[2][:, 8:56].copy()).permute(2, 0, 1)
    assert torch.equal(item["normals"], expected) and item["depth"].shape == (48, 48)
    stamp = converted[0].stat().st_mtime_ns
    assert NYUv2Normals(tmp_path, "train", 48, cache_dir=cache).normals_path == converted[0]
    assert converted[0].stat().st_mtime_ns == stamp  # read from the cache, not converted again
    assert pickle.loads(pickle.dumps(test))[1]["normals"].shape == (3, 48, 48)  # for workers
    np.save(tmp_path / "all_normals.npy", normals[:, :, ::-1])  # one in ROOT is used as it is
    again = NYUv2Normals(tmp_path, "test", 48, cache_dir=cache)
    assert again.normals_path == tmp_path / "all_normals.npy" and not torch.equal(
        again[0]["normals"], item["normals"]
    )


def test_nyu_normals_without_a_cache_are_converted_into_a_temporary_folder(tmp_path, monkeypatch):
    """`loftup eval normals --no-cache` wrote a few GB into the cache folder all the same."""
    from loftup.eval.datasets import normals_file_for_run

    root = tmp_path / "nyu"
    root.mkdir()
    normals = write_nyu_normals(root, n=2, h=8, w=8)
    monkeypatch.setenv("LOFTUP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR read again
    with normals_file_for_run(root, None) as path:
        assert path.parents[2] == tmp_path / "tmp" and np.array_equal(np.load(path), normals)
    assert not path.exists() and list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "cache").exists() and sorted(root.iterdir()) == [
        root / "all_normals.pklz"
    ]
    with normals_file_for_run(root, tmp_path / "c") as path:  # a cache: kept there
        assert path.parent == tmp_path / "c" / "nyuv2"
    assert path.exists()


def test_nyu_normals_that_cannot_be_written_say_how_to_fix_it(tmp_path):
    write_nyu_normals(tmp_path, n=2, h=8, w=8)
    (tmp_path / "file").write_text("")  # not a folder: cannot hold the conversion
    with pytest.raises(DatasetError) as e:
        nyu_normals_file(tmp_path, tmp_path / "file")
    msg = str(e.value)
    assert "\n" not in msg and "cannot write the converted normals" in msg
    assert "--cache-dir a writable folder" in msg and "TMPDIR" in msg and "all_normals.npy" in msg


class _RunsAShell:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_the_normals_pickle_builds_arrays_and_runs_nothing(tmp_path, monkeypatch):
    import gzip
    import warnings

    monkeypatch.chdir(tmp_path)
    with gzip.open(tmp_path / "all_normals.pklz", "wb") as f:
        pickle.dump({"all_normals": _RunsAShell()}, f, protocol=2)
    with pytest.raises(DatasetError, match=r"all_normals.pklz \(it names (posix|os)\.system"):
        read_normals_pickle(tmp_path / "all_normals.pklz")
    assert not (tmp_path / "PWNED").exists()
    with gzip.open(tmp_path / "all_normals.pklz", "wb") as f:
        pickle.dump({"all_normals": np.zeros((2, 4, 4))}, f, protocol=2)
    with pytest.raises(DatasetError, match=r"all_normals is \(2, 4, 4\)"):
        read_normals_pickle(tmp_path / "all_normals.pklz")
    # FAIR's file was written by NumPy 1 (numpy.core...): read without NumPy 2's warning
    data = pickle.dumps({"all_normals": np.ones((2, 4, 4, 3), np.float32)}, protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in old
    with gzip.open(tmp_path / "all_normals.pklz", "wb") as f:
        f.write(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_normals_pickle(tmp_path / "all_normals.pklz").shape == (2, 4, 4, 3)
    (tmp_path / "all_normals.pklz").write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match="cannot read .*all_normals.pklz"):
        read_normals_pickle(tmp_path / "all_normals.pklz")


def test_davis_reader_lists_frames_and_objects(tmp_path):
    write_davis(tmp_path, frames=4)
    seqs = davis_sequences(tmp_path)
    assert [s.name for s in seqs] == ["bear", "car"]
    assert len(seqs[0].frames) == 4 and seqs[0].frames[0].name == "00000.jpg"
    assert seqs[1].annotation(0).unique().tolist() == [0, 1, 2]
    assert seqs[0].palette() is not None
    short = davis_sequences(tmp_path, limit=1, max_frames=2)
    assert len(short) == 1 and len(short[0].frames) == 2
    ann = seqs[0].annotations[1]
    arr = np.array(Image.open(ann))
    arr[0, 0] = 255
    Image.fromarray(arr).save(ann)
    assert seqs[0].annotation(1)[0, 0] == 0  # 255 reads as background, as in the benchmark


def test_feature_cache_keys_and_round_trip(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    cache = FeatureCache(tmp_path / "c", backbone="b", weights=None, size=224, policy="p")
    feats = torch.randn(4, 2, 2)
    assert cache.get(str(image)) is None
    cache.put(str(image), feats)
    assert torch.equal(cache.get(str(image)), feats)
    assert not list((tmp_path / "c").rglob("*.tmp"))  # written atomically
    for other in (
        FeatureCache(tmp_path / "c", backbone="b", weights=None, size=448, policy="p"),
        FeatureCache(tmp_path / "c", backbone="b", weights="w", size=224, policy="p"),
        FeatureCache(tmp_path / "c", backbone="b", weights=None, size=224, policy="q"),
        # features loftup now computes otherwise (CLIP's positional embeddings)
        FeatureCache(
            tmp_path / "c", backbone="b", weights=None, size=224, policy="p", revision="r"
        ),
    ):
        assert other.get(str(image)) is None
    image.write_bytes(b"changed")  # a changed image is a new entry
    assert cache.get(str(image)) is None
    cache.put(str(image), feats)
    cache.path(str(image)).write_bytes(b"corrupt")
    assert cache.get(str(image)) is None  # recomputed, not a crash
    assert FeatureCache(None, backbone="b", weights=None, size=1, policy="p").get("x") is None


def test_feature_cache_keys_local_weights_by_their_files(tmp_path, monkeypatch):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    for run in ("one", "two"):
        (tmp_path / run / "w").mkdir(parents=True)
        (tmp_path / run / "w" / "config.json").write_text("{}")
        (tmp_path / run / "w" / "model.safetensors").write_bytes(b"weights")

    def cache(weights):
        return FeatureCache(tmp_path / "c", backbone="b", weights=weights, size=8, policy="p")

    monkeypatch.chdir(tmp_path / "one")
    feats = torch.randn(4, 2, 2)
    cache("w").put(str(image), feats)
    assert torch.equal(cache("w").get(str(image)), feats)
    assert torch.equal(cache(str(tmp_path / "one" / "w")).get(str(image)), feats)  # same folder
    monkeypatch.chdir(tmp_path / "two")
    assert cache("w").get(str(image)) is None  # the same name, another folder
    monkeypatch.chdir(tmp_path / "one")
    (tmp_path / "one" / "w" / "model.safetensors").write_bytes(b"retrained")
    assert cache("w").get(str(image)) is None  # weights saved again: the old features are stale
    hub = cache("facebook/dinov2-small")  # a hub id: keyed by its name, as before
    assert hub.settings["weights"] == "facebook/dinov2-small"


def test_feature_cache_sees_a_changed_image_whose_path_has_a_hash(tmp_path):
    cache = FeatureCache(tmp_path / "c", backbone="b", weights=None, size=8, policy="p")
    feats = torch.randn(4, 2, 2)
    for key, image in (
        (str(tmp_path / "run#1" / "a.jpg"), tmp_path / "run#1" / "a.jpg"),  # an image file
        (str(tmp_path / "run#1" / "nyu.mat") + "#3", tmp_path / "run#1" / "nyu.mat"),  # an item
    ):
        image.parent.mkdir(exist_ok=True)
        image.write_bytes(b"x")
        cache.put(key, feats)
        assert torch.equal(cache.get(key), feats)
        image.write_bytes(b"changed")
        assert cache.get(key) is None, key  # not the old image's features


def test_label_values_a_dataset_does_not_have_are_found():
    for name, first_bad in (("cocostuff", 182), ("cityscapes", 34), ("ade20k", 151), ("voc", 21)):
        spec = SEG_DATASETS[name]
        raw = np.array([[0, 255], [first_bad - 1, 0]])  # 255: not scored, in every dataset
        assert spec.bad_value(raw) is None
        raw[1, 1] = first_bad
        assert spec.bad_value(raw) == first_bad
        raw[1, 1] = -1
        assert spec.bad_value(raw) == -1


def test_readers_name_damaged_files_before_any_item_is_read(tmp_path):
    write_ade20k(tmp_path, n=2)
    base = tmp_path / "ADEChallengeData2016"
    label = sorted((base / "annotations" / "validation").glob("*.png"))[0]
    Image.new("RGB", (44, 36)).save(label)
    with pytest.raises(DatasetError, match=r"single-channel label PNG.*mode RGB"):
        SegmentationSet("ade20k", tmp_path, "val", 28)
    assert len(SegmentationSet("ade20k", tmp_path, "train", 28)) == 2
    write_davis(tmp_path / "d", frames=3)
    assert len(davis_sequences(tmp_path / "d", max_frames=2)) == 2  # listing only: no check
    with pytest.raises(DatasetError, match="bear has 2 frame"):
        davis_sequences(tmp_path / "d", max_frames=2, check=True)


def test_a_sequence_listed_twice_in_a_split_list_is_refused_naming_the_line(tmp_path):
    """DAVIS's val.txt with a sequence twice: its per-object scores were written over by the
    second pass and it was counted twice in the sequence and frame counts; a VOC list's twice
    listed image counted twice in the mean."""
    write_davis(tmp_path / "d", frames=3)
    split = tmp_path / "d" / "ImageSets" / "2017" / "val.txt"
    split.write_text("bear\ncar\n\n bear \n")
    with pytest.raises(DatasetError) as e:
        davis_sequences(tmp_path / "d")
    assert str(e.value) == (
        f"{split}: line 4 lists bear again (first on line 1); a DAVIS split names each item "
        "once: delete line 4"
    )
    split.write_text("bear\ncar\n")
    assert [s.name for s in davis_sequences(tmp_path / "d")] == ["bear", "car"]
    write_voc(tmp_path / "v", n=2)
    voc = next((tmp_path / "v").rglob("ImageSets/Segmentation/val.txt"))
    voc.write_text(voc.read_text() + voc.read_text().splitlines()[0] + "\n")
    with pytest.raises(DatasetError, match=r"lists .* again \(first on line 1\); a VOC split list"):
        SegmentationSet("voc", tmp_path / "v", "val", 28)


def test_a_split_list_saved_by_notepad_is_read(tmp_path):
    """A byte-order mark was read as part of the first name (DAVIS sequence \ufeffbear: "no
    frames")."""
    write_davis(tmp_path / "d", frames=3)
    split = tmp_path / "d" / "ImageSets" / "2017" / "val.txt"
    split.write_bytes("\ufeffbear\r\ncar\r\n".encode())
    assert [s.name for s in davis_sequences(tmp_path / "d")] == ["bear", "car"]
    split.write_bytes(b"bear\n\xff\xfe\n")  # not text: one line naming the file
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(split))} is not a text DAVIS split"):
        davis_sequences(tmp_path / "d")


def test_a_dataset_root_under_a_home_of_no_user_is_one_line(tmp_path):
    """`loftup eval davis --root '~nobody/x'` (no such user): Path.expanduser's bare
    RuntimeError was a traceback, from the CLI's check of --root and from each reader."""
    from loftup.errors import UsageError
    from loftup.eval.datasets import check_root

    root = "~no_such_user_loftup/davis"
    why = re.escape(
        "~no_such_user_loftup is no home folder (no user no_such_user_loftup on this machine)"
    )
    with pytest.raises(UsageError, match=rf"^--root {root}: {why}; give the path without it"):
        check_root("davis", "davis", root)
    for read in (davis_sequences, lambda r: SegmentationSet("voc", r, "val", 28)):
        with pytest.raises(UsageError, match=rf"^dataset root {root}: {why}"):
            read(root)


def test_git_commit_is_loftups_own_not_that_of_a_repository_around_an_install(
    tmp_path, monkeypatch
):
    """A virtual environment inside a user's git checkout (ignored by it): the results must
    not claim that checkout's commit as loftup's."""
    import os
    import subprocess
    from pathlib import Path

    from loftup.eval import report

    project = tmp_path / "project"
    installed = project / ".venv" / "site" / "loftup" / "eval" / "report.py"
    installed.parent.mkdir(parents=True)
    installed.write_text(Path(report.__file__).read_text())
    (project / ".gitignore").write_text(".venv/\n")
    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@b", "PATH": os.environ.get("PATH", "")}  # fmt: skip
    for cmd in (["init", "-q"], ["add", ".gitignore"], ["commit", "-qm", "theirs"]):
        subprocess.run(["git", "-C", str(project), *cmd], check=True, env=env)
    ours = report.git_commit()
    monkeypatch.setattr(report, "__file__", str(installed))  # where git_commit looks from
    assert report.git_commit() is None
    here = Path(__file__).resolve().parents[1]
    if (here / ".git").exists() and here in Path(loftup.__file__).resolve().parents:
        assert ours is not None  # run from this checkout: its own commit is found


def _apple_double(path) -> None:
    """What macOS writes beside each file it copies to a disk without its metadata (exFAT,
    SMB): ``._NAME``, 4 KB that is no image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x05\x16\x07" + bytes(4092))


def test_hidden_files_beside_a_datasets_files_are_not_items(tmp_path):
    """A dataset copied from a Mac to an exFAT disk or a share has a ``._NAME`` beside every
    file: DAVIS took ``._00000.jpg`` as the first frame, ADE20K and Cityscapes as an image,
    and the run stopped on a file that is no image in a complete dataset."""
    write_davis(tmp_path / "d", frames=4)
    for folder in ("JPEGImages", "Annotations"):
        ext = "jpg" if folder == "JPEGImages" else "png"
        _apple_double(tmp_path / "d" / folder / "480p" / "bear" / f"._00000.{ext}")
    seq = davis_sequences(tmp_path / "d", check=True)[0]
    assert [f.name for f in seq.frames] == [f"{t:05d}.jpg" for t in range(4)]
    ade = write_ade20k(tmp_path / "a", n=2)
    _apple_double(ade / "images" / "training" / "._ADE_train_00000001.jpg")
    _apple_double(ade / "annotations" / "training" / "._ADE_train_00000001.png")
    assert len(SegmentationSet("ade20k", ade, "train", 28)) == 2
    city = write_cityscapes(tmp_path / "c", n=2)
    for top, end in (("leftImg8bit", "leftImg8bit"), ("gtFine", "gtFine_labelIds")):
        _apple_double(city / top / "train" / "aachen" / f"._aachen_000000_000019_{end}.png")
    assert len(SegmentationSet("cityscapes", city, "train", 28)) == 2
    _apple_double(city / "leftImg8bit" / "train" / ".trash" / "x_000000_000019_leftImg8bit.png")
    assert len(SegmentationSet("cityscapes", city, "train", 28)) == 2


def test_a_split_that_lists_nothing_is_refused_naming_its_file(tmp_path):
    """An empty DAVIS val.txt (a truncated download, a list emptied by hand) ran to the end
    and wrote J&F null as a result; an NYUv2 split of no indices trained a probe on nothing
    and scored no image."""
    from scipy.io import savemat

    write_davis(tmp_path / "d")
    (tmp_path / "d" / "ImageSets" / "2017" / "val.txt").write_text("\n  \n")
    with pytest.raises(DatasetError, match=r"val\.txt lists no sequence"):
        davis_sequences(tmp_path / "d")
    write_nyuv2(tmp_path / "n", n=4)
    train = np.arange(1, 5, dtype=np.float64)[:, None]
    savemat(tmp_path / "n" / "splits.mat", {"trainNdxs": train, "testNdxs": np.zeros((0, 1))})
    assert len(NYUv2Depth(tmp_path / "n", "train", 28)) == 4
    with pytest.raises(DatasetError, match=r"splits\.mat: testNdxs lists no image"):
        NYUv2Depth(tmp_path / "n", "test", 28)
