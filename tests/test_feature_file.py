""":class:`loftup.feature_file.FeatureFile` in a user's code: a ``with`` block commits it or,
left by an exception, discards it, and one dropped uncommitted leaves no temporary file (an
exception between its making and ``commit`` left full-size ``.tmp`` files, their space
reserved up front)."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from loftup.feature_file import FeatureFile

SHAPE = (4, 30, 20)


def load_features(path) -> torch.Tensor:
    """The features a file holds, read by its format's own reader."""
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path))
    if path.suffix == ".pt":
        return torch.load(path, weights_only=True)
    from safetensors.torch import load_file

    return load_file(path)["features"]


@pytest.mark.parametrize("fmt", ["npy", "pt", "safetensors"])
def test_a_with_block_left_by_an_exception_leaves_nothing(tmp_path, fmt):
    with pytest.raises(RuntimeError, match="the user's tile failed"):
        with FeatureFile(tmp_path / f"a.{fmt}", fmt, torch.float32, SHAPE) as f:
            f.features[:, :10] = 1.0
            assert list(tmp_path.iterdir())  # its temporary files, while it is written
            raise RuntimeError("the user's tile failed")
    assert f.done
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["npy", "pt", "safetensors"])
def test_a_with_block_ended_commits_the_file(tmp_path, fmt):
    values = torch.arange(np.prod(SHAPE), dtype=torch.float32).reshape(SHAPE)
    with FeatureFile(tmp_path / f"a.{fmt}", fmt, torch.float32, SHAPE) as f:
        f.features[:] = values
    assert f.done
    assert [p.name for p in tmp_path.iterdir()] == [f"a.{fmt}"]
    assert torch.equal(load_features(tmp_path / f"a.{fmt}"), values)


def test_a_with_block_of_a_file_committed_or_discarded_in_it_leaves_that(tmp_path):
    with FeatureFile(tmp_path / "kept.npy", "npy", torch.float32, SHAPE) as f:
        f.commit()
    with FeatureFile(tmp_path / "dropped.npy", "npy", torch.float32, SHAPE) as f:
        f.discard()
    assert [p.name for p in tmp_path.iterdir()] == ["kept.npy"]


@pytest.mark.parametrize("fmt", ["npy", "pt"])
def test_a_file_dropped_uncommitted_leaves_no_temporary_file(tmp_path, fmt):
    """As a user's loop that fails between making the file and committing it: the exception
    passes, the last reference goes, and its temporary files (two for .pt) go with it."""

    def work():
        f = FeatureFile(tmp_path / f"b.{fmt}", fmt, torch.float32, SHAPE)
        f.features[:, :5] = 2.0
        assert list(tmp_path.iterdir())
        raise RuntimeError("the user's computation failed")

    with pytest.raises(RuntimeError):
        work()
    gc.collect()  # (the traceback held the frame until now)
    assert list(tmp_path.iterdir()) == []
    f = FeatureFile(tmp_path / f"c.{fmt}", fmt, torch.float32, SHAPE)
    del f  # dropped at once, no exception
    assert list(tmp_path.iterdir()) == []


def test_a_committed_file_dropped_stays(tmp_path):
    f = FeatureFile(tmp_path / "d.npy", "npy", torch.float32, SHAPE)
    f.features[:] = 3.0
    f.commit()
    del f
    gc.collect()
    assert [p.name for p in tmp_path.iterdir()] == ["d.npy"]
    assert torch.equal(load_features(tmp_path / "d.npy"), torch.full(SHAPE, 3.0))


def test_a_block_left_before_any_write_leaves_no_file_of_zeros(tmp_path):
    """A ``break`` inside ``with FeatureFile(...)`` before its features were used put a file of
    zeros in place (a clean exit commits): discarded now, with a warning; one left after a
    write commits what was written, as documented."""
    for i in range(2):
        with pytest.warns(UserWarning, match=r"c0\.npy was not written: its block ended"):
            with FeatureFile(tmp_path / f"c{i}.npy", "npy", torch.float32, (1, 2, 2)) as f:
                break
    with FeatureFile(tmp_path / "d.npy", "npy", torch.float32, (1, 2, 2)) as f:
        f.features[:, :1] = 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npy"]
    assert np.load(tmp_path / "d.npy").tolist() == [[[1.0, 1.0], [0.0, 0.0]]]


def test_a_dtype_is_read_by_its_name_as_the_pipelines_is(tmp_path):
    """FeatureFile(..., "float32", ...) said "holds float32, ... not float32; pass one of
    those": names are read as load_pipeline's dtype is (bf16, fp16 too), and one that is no
    stored dtype is said in the same words."""
    from loftup.errors import UsageError

    for name, dtype in (
        ("float32", torch.float32),
        ("bf16", torch.bfloat16),
        ("half", torch.float16),
    ):
        with FeatureFile(tmp_path / f"{name}.pt", "pt", name, SHAPE) as f:
            assert f.dtype == dtype and f.features.dtype == dtype
            f.features[:] = 1.0
        assert torch.equal(load_features(tmp_path / f"{name}.pt"), torch.ones(SHAPE, dtype=dtype))
    for bad in ("float64", torch.int8, None):
        with pytest.raises(UsageError, match=r"feature file.* float32, float16 or bfloat16"):
            FeatureFile(tmp_path / "bad.pt", "pt", bad, SHAPE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bf16.pt", "float32.pt", "half.pt"]


def test_a_pt_file_reserves_the_room_its_commit_needs(tmp_path, monkeypatch):
    """A .pt file is saved into its archive at commit, beside its mapped data: a disk with room
    for one copy only is an OSError as the file is made, not at commit after all the work."""
    import errno
    import os

    nbytes = int(np.prod(SHAPE)) * 4
    room = [nbytes + 100]  # one copy's room, a little more

    def fallocate(fd, offset, length, real=os.posix_fallocate):
        if length > room[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        room[0] -= length
        real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    with pytest.raises(OSError, match="No space left"):
        FeatureFile(tmp_path / "a.pt", "pt", torch.float32, SHAPE)
    assert list(tmp_path.iterdir()) == []
    room[0] = 2 * nbytes  # room for both: the same file as ever, its reserved tail cut
    values = torch.arange(nbytes // 4, dtype=torch.float32).reshape(SHAPE)
    with FeatureFile(tmp_path / "a.pt", "pt", torch.float32, SHAPE) as f:
        f.features[:] = values
    assert torch.equal(load_features(tmp_path / "a.pt"), values)
    from loftup.outputs import feature_bytes

    assert (tmp_path / "a.pt").read_bytes() == feature_bytes(values, "pt")


def test_no_room_for_a_streamed_pt_file_says_it_takes_twice_its_size(tmp_path, monkeypatch):
    """With room for one copy of a streamed .pt file's data but not two, the failure said the
    room was there ("free now (filled meanwhile, or out of inodes ...)"), whose fix (free
    inodes) was no fix; it says the archive takes twice the file's size until it is complete."""
    import errno
    import os

    from loftup.extract import no_room

    monkeypatch.setattr(no_room, "_free", lambda out_dir: 3_000_000)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    said = no_room.write_failure(full, tmp_path, 2_000_000, "pt", torch.float32, streamed=True)
    assert "its features file is 2.0 MB (twice that until it is complete" in said
    assert "has 3.0 MB free;" in said and "filled meanwhile" not in said
    assert "try a smaller size" in said
    # held whole (saved from memory), or another format: the room for one copy is enough
    for fmt, streamed in (("pt", False), ("npy", True)):
        said = no_room.write_failure(
            full, tmp_path, 2_000_000, fmt, torch.float32, streamed=streamed
        )
        assert "twice" not in said and "filled meanwhile" in said


def test_a_path_under_the_home_folder_is_written_there(tmp_path, monkeypatch):
    """``~/x`` is the home folder, as upsample_to_npy and every path loftup reads take it: a
    FeatureFile and save_features made a folder named ``~`` in the working folder."""
    from loftup.outputs import save_features

    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir(), here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    with FeatureFile("~/a.npy", "npy", torch.float32, SHAPE) as f:
        f.features[:] = 1.0
    save_features("~/b.pt", torch.ones(SHAPE), "pt")
    assert f.path == home / "a.npy"
    assert sorted(p.name for p in home.iterdir()) == ["a.npy", "b.pt"]
    assert list(here.iterdir()) == []


def test_save_features_reads_a_dtype_by_its_name_as_a_feature_file_does(tmp_path):
    """save_features and feature_bytes take "float16" or "bf16" as FeatureFile takes them
    (they raised torch's TypeError from Tensor.to), and refuse bfloat16 in .npy by name."""
    from loftup.errors import UsageError
    from loftup.outputs import feature_bytes, save_features

    x = torch.randn(SHAPE)
    save_features(tmp_path / "a.pt", x, "pt", "bf16")
    assert load_features(tmp_path / "a.pt").dtype == torch.bfloat16
    assert (tmp_path / "a.pt").read_bytes() == feature_bytes(x, "pt", torch.bfloat16)
    assert feature_bytes(x, "npy", "float16") == feature_bytes(x, "npy", torch.float16)
    with pytest.raises(UsageError, match="no bfloat16"):
        save_features(tmp_path / "b.npy", x, "npy", "bfloat16")
    with pytest.raises(UsageError, match="unknown precision 'float8'"):
        save_features(tmp_path / "b.npy", x, "npy", "float8")
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]
