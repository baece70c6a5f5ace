"""`loftup experiment` data: the held-out set (the user's scenes or dataset, its halves), the
offline scenes, and the backbone weights' fingerprint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loftup.cli import main
from loftup.errors import LoftUpError
from loftup.experiments import ExperimentSettings
from loftup.experiments.data import weights_fingerprint


def test_a_scene_folder_of_the_users_is_held_out_whole(tmp_path):
    """With --eval-root a scene folder, the default --eval-count was --val-scenes' (48): a
    folder of fewer scenes was refused as "fewer than eval_count=48", a count never given."""
    from loftup.data.scene_files import write_scenes
    from loftup.data.scenes import SceneConfig

    write_scenes(tmp_path / "w", SceneConfig(height=16, width=16), 5, progress=False)
    s = ExperimentSettings("coords", eval_root=str(tmp_path / "w")).resolved()
    assert s.eval_count == 5
    assert ExperimentSettings("coords", eval_root=str(tmp_path / "w"), eval_count=4).resolved()
    with pytest.raises(LoftUpError, match=r"--eval-count 6 is more than the 5 scenes in .*"
                       r"give --eval-count 5 or less"):  # fmt: skip
        ExperimentSettings("coords", eval_root=str(tmp_path / "w"), eval_count=6).resolved()


def test_weights_fingerprint_hashes_the_file(tmp_path):
    import hashlib

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    fp = weights_fingerprint("dinov2_vits14", str(tmp_path))
    assert fp["sha256"] == hashlib.sha256(b"weights").hexdigest()
    shipped = weights_fingerprint("scenes_vit_p8", None)
    assert shipped["file"].endswith("scenes_vit_p8.safetensors") and len(shipped["sha256"]) == 64
    assert weights_fingerprint("dinov2_vits14", None)["sha256"] is None


def test_a_dataset_short_of_eval_count_is_refused_not_split_across_its_halves(tmp_path):
    """The probes fit on the first half of the held-out set and score the second: from a
    dataset that is the training images, then the validation ones. A split with fewer images
    than its half moved that boundary (8 asked of 4 + 2 fitted on 3 training images and scored
    the 4th with the validation ones; other counts fitted on validation images, and which
    images were scored changed with the dataset's size); now it is refused, naming the largest
    count that works."""
    from eval_data import write_voc
    from loftup.eval.datasets import SegmentationSet
    from loftup.experiments.data import load_eval_set

    root = write_voc(tmp_path, n=4)
    val = root / "ImageSets" / "Segmentation" / "val.txt"
    val.write_text("\n".join(val.read_text().split()[:2]) + "\n")
    settings = dict(eval_root=str(root), eval_dataset="voc")
    with pytest.raises(LoftUpError, match=r"has only 2 validation images; give --eval-count 4 or"):
        load_eval_set(ExperimentSettings("coords", eval_count=8, **settings).resolved())
    with pytest.raises(LoftUpError, match=r"only 4 training and 2 validation images; .* 4 or"):
        load_eval_set(ExperimentSettings("coords", eval_count=10, **settings).resolved())
    evalset = load_eval_set(ExperimentSettings("coords", eval_count=4, **settings).resolved())
    train = SegmentationSet("voc", str(root), "train", 64, limit=2)
    valid = SegmentationSet("voc", str(root), "val", 64, limit=2)
    expected = torch.stack([ds[i]["image"] for ds in (train, valid) for i in range(2)])
    assert torch.equal(evalset.images, expected)  # fit: training images; scored: validation


def test_a_dataset_short_of_eval_count_is_refused_before_any_work(tmp_path, capsys):
    """The count was checked only when the held-out set was loaded: after the training scenes
    were written (and, for grid, after them too), not before any work as a wrong folder is."""
    from eval_data import write_voc

    root = write_voc(tmp_path / "voc", n=4)
    out = tmp_path / "out"
    argv = ["experiment", "coords", "--quick", "--out", str(out), "--no-progress",
            "--eval-root", str(root), "--eval-dataset", "voc", "--eval-count", "20"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--eval-count 20 takes 10 training and 10 validation images of voc" in err
    assert "give --eval-count 8 or less" in err and err.count("\n") == 1
    assert not out.exists()  # no scenes written, no report folder


def test_held_out_images_in_both_halves_are_refused_before_any_work(tmp_path, capsys):
    """The probes fit on the first training images and score the first validation ones: a
    split list sharing an image with the other fitted the probes on images they then scored."""
    from eval_data import write_voc
    from loftup.experiments.data import load_eval_set

    root = write_voc(tmp_path / "voc", n=4)
    lists = root / "ImageSets" / "Segmentation"
    shared = (lists / "train.txt").read_text().split()[0]
    (lists / "val.txt").write_text(shared + "\n" + (lists / "val.txt").read_text())
    out = tmp_path / "out"
    argv = ["experiment", "coords", "--quick", "--out", str(out), "--no-progress",
            "--eval-root", str(root), "--eval-dataset", "voc", "--eval-count", "4"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{shared}.jpg is in both the train and the val split" in err and not out.exists()
    s = ExperimentSettings("coords", eval_root=str(root), eval_dataset="voc", eval_count=4)
    with pytest.raises(LoftUpError, match="is in both the train and the val split"):
        load_eval_set(s.resolved())


def test_offline_scenes_are_written_without_a_bar_under_no_progress(tmp_path, capsys):
    """The training and held-out scenes an experiment writes drew their "scenes" bars on
    stderr under --no-progress too."""
    from loftup.experiments.data import load_eval_set, training_root
    from loftup.experiments.settings import ExperimentSettings

    s = ExperimentSettings(name="coords", quick=True, out=str(tmp_path), progress=False)
    s = s.resolved()
    assert (training_root(s) / "world.json").is_file()
    assert len(load_eval_set(s).images) == s.eval_count
    assert capsys.readouterr().err == ""


def test_offline_scenes_are_written_once_and_kept_on_a_rerun(tmp_path):
    """Every rerun wrote the training and held-out scenes again: seconds of work, and new
    mtimes, which the mask cache's keys hold (--masks sam made every mask again). Scenes of
    other options are still refused, not kept."""
    import os

    from loftup.experiments.data import load_eval_set, training_root

    s = ExperimentSettings("coords", quick=True, out=str(tmp_path), progress=False).resolved()
    train, _ = training_root(s), load_eval_set(s)
    files = [train / "world.json", train / "sa1b" / "sa_1.jpg", tmp_path / "scenes" / "val" /
             "world.json", tmp_path / "scenes" / "val" / "labels" / "sa_1.png"]  # fmt: skip
    for f in files:
        os.utime(f, ns=(10**9, 10**9))
    assert training_root(s) == train and len(load_eval_set(s).images) == s.eval_count
    assert [f.stat().st_mtime_ns for f in files] == [10**9] * len(files)
    more = ExperimentSettings("coords", quick=True, out=str(tmp_path), progress=False,
                              train_scenes=9).resolved()  # fmt: skip
    with pytest.raises(LoftUpError, match=r"other options \(--train-scenes 8 -> 9\)"):
        training_root(more)


def test_dataset_errors_name_the_experiments_own_options(tmp_path, capsys):
    """The dataset readers' messages said "pass --dataset cityscapes, or a --root that holds
    cocostuff" and "is --dataset right?": options of `loftup eval`, which `loftup experiment`
    calls --eval-dataset and --eval-root. A wrong folder was also said only after the training
    scenes were written, and a missing one as a missing split list."""
    from PIL import Image

    from eval_data import write_cityscapes, write_voc
    from loftup.experiments.data import load_eval_set

    city = write_cityscapes(tmp_path / "city")
    out = tmp_path / "out"
    base = ["experiment", "coords", "--quick", "--out", str(out), "--no-progress"]
    assert main([*base, "--eval-root", str(city), "--eval-dataset", "cocostuff"]) == 2
    err = capsys.readouterr().err
    assert "pass --eval-dataset cityscapes, or an --eval-root that holds cocostuff" in err
    assert " --dataset" not in err and " --root" not in err and err.count("\n") == 1
    assert not out.exists()  # before any work
    assert main([*base, "--eval-root", str(tmp_path / "nope"), "--eval-dataset", "voc"]) == 2
    assert f"--eval-root {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    assert main([*base, "--eval-root", str(city), "--eval-dataset", "vocx"]) == 2
    assert "unknown --eval-dataset 'vocx'; choose one of cocostuff" in capsys.readouterr().err

    voc = write_voc(tmp_path / "voc")
    label = next((voc / "SegmentationClass").glob("*.png"))
    values = np.asarray(Image.open(label)).copy()
    values[0, 0] = 50  # not a VOC label
    Image.fromarray(values).save(label)
    s = ExperimentSettings("coords", eval_root=str(voc), eval_dataset="voc", eval_count=8)
    with pytest.raises(LoftUpError, match=r"is --eval-dataset right\?") as e:
        load_eval_set(s.resolved())
    assert "--dataset" not in str(e.value).replace("--eval-dataset", "")


def test_the_training_data_is_told_by_the_files_training_reads(tmp_path):
    """--data without a world.json: its identity is the names and sizes of the files that
    training reads (images and their SA-1B JSON), not of anything else in the folder."""
    from loftup.experiments.data import run_inputs

    (tmp_path / "sa_1.jpg").write_bytes(b"jpeg")
    (tmp_path / "sa_1.json").write_text("{}")
    first = run_inputs({"sha256": None}, tmp_path, "sa1b")["training_data"]
    assert first["files"] == 2
    (tmp_path / "notes.txt").write_text("not read")
    assert run_inputs({"sha256": None}, tmp_path, "sa1b")["training_data"] == first
    (tmp_path / "sa_1.jpg").write_bytes(b"another jpeg")
    assert run_inputs({"sha256": None}, tmp_path, "sa1b")["training_data"] != first


def test_a_file_missing_past_the_held_out_images_read_is_not_asked_for(tmp_path):
    """--eval-count 4 reads 2 train and 2 val images: a val image missing past them refused
    the experiment ("1 listed files are missing"), though `loftup eval --limit 2` ran."""
    from eval_data import write_voc
    from loftup.experiments.data import check_eval_dataset, load_eval_set

    root = write_voc(tmp_path / "voc", n=6)
    val = sorted((root / "JPEGImages").glob("2007_1*.jpg"))
    val[-1].unlink()
    s = ExperimentSettings("coords", eval_root=str(root), eval_dataset="voc", eval_count=4)
    check_eval_dataset(s.resolved())
    assert len(load_eval_set(s.resolved()).images) == 4
    val[1].unlink()  # one it reads: still refused, naming it
    with pytest.raises(LoftUpError, match=f"missing, e.g. .*{val[1].name}"):
        check_eval_dataset(s.resolved())
