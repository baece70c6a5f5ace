"""Below torch 2.6 (CVE-2025-32434) the pickle loader's risk is said once a process, by rank 0;
with a torch that fixed it, never."""

import warnings

import pytest
import torch

from loftup import load_upsampler
from loftup.hub import files
from loftup.hub.files import SAFE_PICKLE_TORCH, torch_load, torch_release
from loftup.train.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture
def old_torch(monkeypatch):
    """This process as one on torch 2.5.1 that has said nothing yet."""
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu121")
    monkeypatch.setattr(files, "_risk_said", False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def _said(load) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # what Python's own filter would let through or not
        load()
    return [str(w.message) for w in caught if "CVE-2025-32434" in str(w.message)]


def _pickles(tmp_path, n):
    paths = [tmp_path / f"w{i}.pth" for i in range(n)]
    for path in paths:
        torch.save({"w": torch.zeros(2)}, path)
    return paths


def test_the_risk_is_said_once_a_process_naming_the_first_pickle(tmp_path, old_torch):
    """An experiment's resumed runs, or the demo's stages, said it for each file (each
    message named its file, so Python's once-a-place filter let every one through)."""
    first, second = _pickles(tmp_path, 2)
    said = _said(lambda: [torch_load(p, fix="-") for p in (first, second, first)])
    assert len(said) == 1, said
    assert "w0.pth" in said[0] and "with torch 2.5.1" in said[0] and "torch>=2.6" in said[0]
    assert "said once, for every pickle this process loads" in said[0]


def test_under_torchrun_only_rank_0_says_it(tmp_path, old_torch, monkeypatch):
    (path,) = _pickles(tmp_path, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert _said(lambda: torch_load(path, fix="-")) == []
    monkeypatch.setenv("RANK", "0")
    assert len(_said(lambda: torch_load(path, fix="-"))) == 1


@pytest.mark.parametrize("world", [None, "1"])
def test_a_process_alone_says_it_whatever_its_rank(tmp_path, old_torch, monkeypatch, world):
    """A job script's RANK=$SLURM_PROCID for one process (no WORLD_SIZE, or WORLD_SIZE=1):
    a process alone, rank 0 as torchrun's reading of the environment has it (it computes
    every batch), yet taken for rank 1 of a job, which said nothing."""
    (path,) = _pickles(tmp_path, 1)
    monkeypatch.setenv("RANK", "1")
    if world:
        monkeypatch.setenv("WORLD_SIZE", world)
    assert len(_said(lambda: torch_load(path, fix="-"))) == 1


def test_a_resume_says_it_once_for_its_checkpoint_and_the_init_it_loads(tmp_path, old_torch):
    """The checkpoint a run resumes is a pickle like any other (a crafted one put in its
    place runs its code there): it is said for it, and not again for stage 2's init."""
    ckpt = save_checkpoint(tmp_path / "checkpoint.pt", {"step": 3})
    (init,) = _pickles(tmp_path, 1)
    said = _said(lambda: [load_checkpoint(ckpt), torch_load(init, fix="-")])
    assert len(said) == 1 and said[0].startswith(f"loading training checkpoint {ckpt}, a PyTorch")


def test_nothing_is_said_with_a_torch_that_fixed_it(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_risk_said", False)
    monkeypatch.setattr(torch, "__version__", "2.6.0+cpu")
    (path,) = _pickles(tmp_path, 1)
    assert _said(lambda: torch_load(path, fix="-")) == []


def test_a_pickle_under_a_torch_older_than_2_6_is_loaded_with_its_risk_said(
    tmp_path, reference_state, monkeypatch
):
    """pyproject allows torch 2.4, whose weights-only loader a crafted file can make run code
    (CVE-2025-32434): a pickle still loads there, and the user is told to trust the file or
    upgrade; with a newer torch nothing is said."""
    torch.save(dict(reference_state), tmp_path / "w.pth")
    if torch_release() >= SAFE_PICKLE_TORCH:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing said with this torch
            load_upsampler(tmp_path / "w.pth")
    else:  # the torch under test is such a torch (said once a process: said anew for each case)
        monkeypatch.setattr("loftup.hub.files._risk_said", False)
        with pytest.warns(UserWarning, match="CVE-2025-32434"):
            load_upsampler(tmp_path / "w.pth")
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu121")
    monkeypatch.setattr("loftup.hub.files._risk_said", False)
    with pytest.warns(UserWarning, match=r"w\.pth, a PyTorch pickle, with torch 2\.5\.1") as w:
        load_upsampler(tmp_path / "w.pth")
    assert "CVE-2025-32434" in str(w[0].message) and "torch>=2.6" in str(w[0].message)
    # a pre-release of 2.6 (as some containers ship) is not 2.6, as transformers reads it too
    monkeypatch.setattr(torch, "__version__", "2.6.0a0+ecf3bae40a")
    monkeypatch.setattr("loftup.hub.files._risk_said", False)
    with pytest.warns(UserWarning, match="CVE-2025-32434"):
        load_upsampler(tmp_path / "w.pth")
    for version, release in (("2.6.1a0", (2, 6)), ("2.6.0.dev20250101", (2, 5)),
                             ("2.13.0+cpu", (2, 13)), ("2.10.0a0+git", (2, 9))):  # fmt: skip
        monkeypatch.setattr(torch, "__version__", version)
        assert torch_release() == release, version
