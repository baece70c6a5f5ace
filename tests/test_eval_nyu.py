"""The NYUv2 readers on a tiny copy of the release's layout: the labelled set's MATLAB
transposition undone, and Ladicky et al.'s normals read safely, converted once, cropped as the
depth is."""

import pickle
import re
import tempfile

import numpy as np
import pytest
import torch

from eval_data import (
    write_nyu_normals,
    write_nyuv2,
)
from loftup.eval.datasets import (
    DatasetError,
    NYUv2Depth,
    NYUv2Normals,
    nyu_normals_file,
    read_normals_pickle,
)


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


def _splits(root, train, test) -> None:
    from scipy.io import savemat

    as_mat = [np.asarray(s, dtype=np.float64)[:, None] for s in (train, test)]
    savemat(root / "splits.mat", {"trainNdxs": as_mat[0], "testNdxs": as_mat[1]})


def test_a_splits_file_with_an_image_twice_or_in_both_splits_is_refused(tmp_path):
    """A splits.mat listing an image twice counted its scores twice; one whose train and test
    share an image scored the probe on what it was trained on. The official file does neither."""
    write_nyuv2(tmp_path, n=6)
    splits = tmp_path / "splits.mat"
    _splits(tmp_path, [1, 2, 2], [4, 5, 6])
    with pytest.raises(
        DatasetError, match=f"^{re.escape(str(splits))}: trainNdxs lists image 2 2 times"
    ):
        NYUv2Depth(tmp_path, "train", 28)
    assert len(NYUv2Depth(tmp_path, "test", 28)) == 3  # the other split is sound
    _splits(tmp_path, [1, 2, 3, 4], [3, 4, 5, 6])
    for split in ("train", "test"):
        with pytest.raises(DatasetError) as e:
            NYUv2Depth(tmp_path, split, 28)
        assert str(e.value).startswith(f"{splits}: image 3 is in both trainNdxs and testNdxs")
        assert "(2 images are)" in str(e.value) and "\n" not in str(e.value)
    for bad in ([1, float("nan")], [1, 2.5]):  # not an index: int() raised, or truncated
        _splits(tmp_path, bad, [4, 5, 6])
        with pytest.raises(DatasetError, match="trainNdxs is not a list of indices >= 1"):
            NYUv2Depth(tmp_path, "train", 28)
    _splits(tmp_path, [1, 2, 3], [4, 5, 6])
    assert NYUv2Depth(tmp_path, "train", 28).indices == [0, 1, 2]
