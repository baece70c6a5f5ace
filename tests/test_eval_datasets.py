"""Dataset readers on tiny copies of each dataset's exact on-disk layout (NYUv2's: test_eval_nyu.py)."""

import pickle
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from eval_data import (
    write_ade20k,
    write_cityscapes,
    write_cocostuff,
    write_davis,
    write_nyuv2,
    write_voc,
)
from loftup.eval.datasets import (
    SEG_DATASETS,
    DatasetError,
    NYUv2Depth,
    SegmentationSet,
    davis_sequences,
)
from loftup.eval.datasets.seg import COCO_FINE_TO_COARSE


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


def test_a_davis_frame_and_its_annotation_of_different_sizes_are_refused(tmp_path):
    """Frames of twice their annotations' size were scored (J&F printed, JSON written), then
    the run failed drawing the figure (a boolean index that did not match)."""
    write_davis(tmp_path, sequences=("bear",), frames=3)
    frame = tmp_path / "JPEGImages" / "480p" / "bear" / "00001.jpg"
    with Image.open(frame) as img:
        img.resize((160, 96)).save(frame)
    with pytest.raises(DatasetError, match=r"00001.png is 80x48 pixels but its image .*00001.jpg"):
        davis_sequences(tmp_path, check=True)


def test_limit_asks_only_for_the_files_it_reads(tmp_path, monkeypatch):
    """--limit 2 was refused for a missing 6th label, a file the run would never read; and the
    count of missing files, taken over the first 1000 pairs only, was given as the whole."""
    from loftup.eval.datasets import seg

    base = write_cocostuff(tmp_path, n=6)
    (base / "annotations" / "train2017" / "000000000006.png").unlink()
    assert len(SegmentationSet("cocostuff", tmp_path, "train", 28, limit=2)) == 2
    with pytest.raises(DatasetError, match=r"cocostuff train: 1 listed files are missing"):
        SegmentationSet("cocostuff", tmp_path, "train", 28, limit=6)
    (base / "annotations" / "train2017" / "000000000001.png").unlink()
    monkeypatch.setattr(seg, "CHECKED_PAIRS", 2)  # more pairs than are checked
    with pytest.raises(DatasetError, match=r"cocostuff train: at least 1 listed files are"):
        SegmentationSet("cocostuff", tmp_path, "train", 28)


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
