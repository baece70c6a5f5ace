"""The Python API's other inputs that may lie in a folder this user may not search (another
user's, of mode 700; one of their own of mode 644): SAM's weights, the files of a dataset
root, a scene folder, an experiment's training data, a world backbone's weights. Each raised
pathlib's bare PermissionError (Python 3.11's exists, is_file and is_dir), a traceback naming
neither the folder nor the fix; now a PathPermissionError (a PermissionError too) names both.
So do ``loftup bench --reference`` ("no such file") and a dataset folder that cannot be read
("no frames"); the Hugging Face cache is test_unsearchable_cache.py's, the other folders of
the dataset readers test_unsearchable_datasets.py's. The ``unsearchable`` and ``locked``
fixtures (conftest) refuse such folders as root too."""

from __future__ import annotations

import errno
import os

import pytest

from loftup.errors import PathPermissionError, WeightsNotFoundError
from test_unsearchable_paths import _says_why


def _refused(call, secret) -> None:
    """``call()`` raises a PathPermissionError naming ``secret`` and the fix."""
    with pytest.raises(PathPermissionError) as caught:
        call()
    _says_why(str(caught.value), secret)


def test_sam_weights_in_a_folder_this_user_may_not_search(
    tmp_path, unsearchable, locked, monkeypatch
):
    """data.sam_weights behind such a folder, or a SAM folder that may be listed and not
    searched (its files unseen), raised a bare PermissionError naming the folder or its
    config.json; a short name or hub id, in a current folder of that kind, is still no path.
    A relative ORG/NAME is a hub id first (as a backbone's): where a folder of that name may
    lie here, unseen, the hub's error says so too."""
    from hub_helpers import _offline_cache
    from loftup.data.sam import SAM_FILES, SamMaskGenerator, resolve_sam

    secret, own = tmp_path / "secret", tmp_path / "own"
    for folder in (secret / "sam", own):
        folder.mkdir(parents=True)
        for group in SAM_FILES:
            (folder / group[0]).write_text("{}")
    (tmp_path / "w" / "sam").mkdir(parents=True)
    _offline_cache(monkeypatch, tmp_path / "hub")  # an empty cache: nothing downloaded
    monkeypatch.chdir(secret)  # (first: as another user than root, no chdir into it after)
    unsearchable(secret)
    locked(secret)  # not listed either: nothing tells a hub id's ORG from a folder there
    unsearchable(own)
    unsearchable(tmp_path / "w")
    _refused(lambda: resolve_sam(str(secret / "sam")), secret)
    _refused(lambda: SamMaskGenerator(str(secret / "sam")), secret)
    _refused(lambda: resolve_sam(str(own)), own)
    for name in ("sam_vit_base", "facebook/sam-vit-base"):
        with pytest.raises(WeightsNotFoundError, match="'config.json' of hub repo") as caught:
            resolve_sam(name)
        assert "is a folder here" not in str(caught.value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsNotFoundError, match="'config.json' of hub repo 'w/sam'") as caught:
        resolve_sam("w/sam")
    said = str(caught.value)
    assert "; if w/sam is a folder here, permission denied" in said, said
    _says_why(said, tmp_path / "w")


def test_dataset_files_in_a_folder_this_user_may_not_search(tmp_path, unsearchable):
    """A DAVIS or NYUv2 root behind such a folder (the Python API checks no --root first), or
    a folder of the dataset that may be listed, not searched: every reader raised a bare
    PermissionError for the first file it looked at, and a frame in such a folder was
    "cannot read ...: Permission denied; replace it (re-download or re-extract the dataset)"."""
    from eval_data import write_davis, write_nyu_normals, write_nyuv2
    from loftup.eval.datasets import NYUv2Depth, NYUv2Normals, davis_sequences
    from loftup.eval.datasets.common import unreadable
    from loftup.eval.datasets.normals_file import normals_file_for_run, nyu_normals_file
    from loftup.eval.datasets.nyu import nyu_indices

    secret = tmp_path / "secret"
    davis, nyu = write_davis(secret / "davis"), write_nyuv2(secret / "nyu")
    write_nyu_normals(nyu)
    annotations = write_davis(tmp_path / "annotations")
    frames = write_davis(tmp_path / "frames")
    unsearchable(secret)
    calls = [
        lambda: davis_sequences(davis),
        lambda: NYUv2Depth(nyu, "test", 32),
        lambda: nyu_indices(nyu, "test"),
        lambda: NYUv2Normals(nyu, "test", 32, cache_dir=tmp_path / "cache"),
        lambda: nyu_normals_file(nyu, tmp_path / "cache"),
    ]
    for call in calls:
        _refused(call, secret)
    with pytest.raises(PathPermissionError, match="permission denied"):
        with normals_file_for_run(nyu, None):
            pass
    unsearchable(annotations / "Annotations" / "480p" / "car")
    _refused(lambda: davis_sequences(annotations), annotations / "Annotations" / "480p" / "car")
    # a frame listed in such a folder, then opened: PIL's EACCES (which open() raises as
    # another user, not as root) said with that folder and its fix
    bear = frames / "JPEGImages" / "480p" / "bear"
    unsearchable(bear)
    refusal = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(bear / "00000.jpg"))
    said = unreadable(bear / "00000.jpg", refusal)
    assert isinstance(said, PathPermissionError), said
    _says_why(str(said), bear)


def test_a_dataset_folder_this_user_may_not_read(tmp_path, locked):
    """A DAVIS sequence's frames folder of another user (mode 700): pathlib's glob found no
    file in it, without a word, and the sequence had "no frames"."""
    from eval_data import write_davis
    from loftup.eval.datasets import davis_sequences

    root = write_davis(tmp_path / "davis")
    car = root / "JPEGImages" / "480p" / "car"
    locked(car)
    with pytest.raises(PathPermissionError) as caught:
        davis_sequences(root)
    said = str(caught.value)
    assert f"{car} is a folder that cannot be read" in said, said
    assert "have it made readable for this user (chmod a+rx, by its owner)" in said, said


def test_scene_folders_and_experiment_data_in_a_folder_this_user_may_not_search(
    tmp_path, unsearchable
):
    """A scene folder (``loftup demo``'s held-out scenes, an experiment's --eval-root) or an
    experiment's --data behind such a folder, or a scene folder that may be listed, not
    searched: read_world, load_val and the experiment's data raised a bare PermissionError."""
    from loftup.data.scene_files import read_world
    from loftup.experiments import ExperimentSettings
    from loftup.experiments.data import load_eval_set, run_inputs, training_root
    from loftup.world.config import DemoConfig
    from loftup.world.demo import make_val_scenes
    from loftup.world.heldout import load_val

    secret = tmp_path / "secret"
    scenes, own = (
        make_val_scenes(DemoConfig(out=str(out), size=32, val_scenes=4), progress=False)
        for out in (secret / "demo", tmp_path / "own")
    )
    (secret / "data").mkdir()
    settings = ExperimentSettings(
        "coords", quick=True, out=str(tmp_path / "out"), data=str(secret / "data"),
        eval_root=str(scenes), eval_count=4,
    )  # fmt: skip
    resolved = settings.resolved()  # it reads the scenes' world.json
    unsearchable(secret)
    unsearchable(own)
    _refused(settings.resolved, secret)
    _refused(lambda: read_world(scenes), secret)
    _refused(lambda: load_val(scenes), secret)
    _refused(lambda: training_root(resolved), secret)
    _refused(lambda: load_eval_set(resolved), secret)
    _refused(lambda: read_world(own), own)
    _refused(lambda: run_inputs({"sha256": None}, own, "sa1b"), own)


def test_a_world_backbone_in_a_folder_this_user_may_not_search(tmp_path, unsearchable):
    """``scenes_vit_p8`` weights of one's own (`loftup world backbone --out`) behind such a
    folder, or in a folder that may be listed, not searched: load_backbone and get_featurizer
    raised a bare PermissionError naming model.safetensors."""
    import loftup
    from loftup.featurizers.scenes_vit import load_backbone, save_backbone

    secret, own = tmp_path / "secret", tmp_path / "own"
    for folder in (secret / "bb", own):
        save_backbone(load_backbone(), folder)
    unsearchable(secret)
    unsearchable(own)
    _refused(lambda: load_backbone(secret / "bb"), secret)
    _refused(lambda: loftup.get_featurizer("scenes_vit_p8", secret / "bb"), secret)
    _refused(lambda: load_backbone(own), own)
    assert load_backbone().dim > 0  # the shipped weights: as they were


def test_a_bench_reference_in_a_folder_this_user_may_not_search(tmp_path, unsearchable, capsys):
    """``loftup bench --reference`` (load_reference_class) of a file behind such a folder said
    "no such file" of a file that is there."""
    import shutil
    from pathlib import Path

    from loftup.bench import load_reference_class
    from loftup.cli import main

    secret = tmp_path / "secret"
    secret.mkdir()
    reference = Path(__file__).parents[1] / "benchmarks" / "reference_impl.py"
    shutil.copyfile(reference, secret / "reference_impl.py")
    unsearchable(secret)
    _refused(lambda: load_reference_class(secret / "reference_impl.py"), secret)
    argv = ["bench", "--reference", str(secret / "reference_impl.py"), "--sizes", "16"]
    assert main([*argv, "--dim", "8", "--grid", "2", "--no-peak"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    _says_why(err, secret)
