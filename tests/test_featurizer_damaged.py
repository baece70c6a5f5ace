"""A backbone folder whose weight files are there but damaged, unsafe or unreadable (a cut or
code-carrying pickle, a Git LFS pointer, integer or NaN weights, a shard cut or missing): one
line naming the file and the fix, never a traceback, never a backbone that runs on them.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from loftup import WeightsNotFoundError, get_featurizer
from loftup.errors import CheckpointError
from loftup.hub.files import SAFE_PICKLE_TORCH, torch_release
from model_helpers import READS_BACKBONE_PICKLES

pytestmark = pytest.mark.usefixtures("hf_offline")


class _RunsCode:
    def __reduce__(self):
        return (print, ("code in the pickle ran",))


@READS_BACKBONE_PICKLES
def test_a_damaged_or_unsafe_pytorch_model_bin_is_named(tmp_path, capsys):
    """A backbone folder with only pytorch_model.bin (as some hub repos have) is unpickled by
    transformers: an empty or truncated file was a bare EOFError or "does not fit backbone",
    one holding objects beyond tensors an UnpicklingError whose text suggests
    weights_only=False (running it), and one with damaged bytes loaded without a word (torch
    does not check the zip's checksums). Each is one line naming the file."""
    folder = tmp_path / "bin"
    folder.mkdir()
    tiny = get_featurizer("dinov2_tiny").model
    tiny.config.save_pretrained(folder)
    weights = folder / "pytorch_model.bin"
    torch.save(tiny.state_dict(), weights)
    good = weights.read_bytes()
    assert get_featurizer("dinov2_tiny", weights=folder).dim == 32  # the file as saved loads
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    torch.save({**tiny.state_dict(), "x": _RunsCode()}, weights)
    unsafe = weights.read_bytes()
    for data, said in (
        (b"", "is empty (0 bytes)"),
        (good[: len(good) // 2], "is corrupt or truncated and cannot be read"),
        (bytes(flipped), "does not match the checksum written with it"),
        (unsafe, "could run code when loaded; it was not loaded"),
    ):
        weights.write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            get_featurizer("dinov2_tiny", weights=folder)
        assert str(weights) in str(e.value) and said in str(e.value), str(e.value)
        assert "weights_only=False" not in str(e.value) and "\n" not in str(e.value)
    assert "code in the pickle ran" not in capsys.readouterr().out


def test_a_pickled_backbone_under_a_torch_older_than_2_6_says_to_upgrade(tmp_path, monkeypatch):
    """pyproject allows torch 2.4 and 2.5, beside which transformers 4 runs, but refuses there to
    unpickle a pytorch_model.bin (CVE-2025-32434): its ValueError was reported as a config.json
    that transformers rejects ("check its config.json"). One line names the file and the fix;
    safetensors still load. (The torch release is set to an older one's for the call.)"""
    tiny = get_featurizer("dinov2_tiny").model
    pickled, safe = tmp_path / "bin", tmp_path / "st"
    tiny.config.save_pretrained(pickled)
    torch.save(tiny.state_dict(), pickled / "pytorch_model.bin")
    tiny.save_pretrained(safe)
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=pickled)
    assert str(e.value) == (
        f"{pickled / 'pytorch_model.bin'} is a PyTorch pickle, which transformers reads only "
        "with torch 2.6 or newer (torch.load could run code from the file before it, "
        "CVE-2025-32434), and this is torch 2.5.1+cpu: upgrade torch (pip install "
        "'torch>=2.6'), or give backbone dinov2_tiny a folder with model.safetensors (write the "
        "folder again with save_pretrained)"
    )
    assert get_featurizer("dinov2_tiny", weights=safe).dim == 32
    monkeypatch.undo()
    if torch_release() >= SAFE_PICKLE_TORCH:  # the torch under test reads it
        assert get_featurizer("dinov2_tiny", weights=pickled).dim == 32
    else:  # and refuses it, as it did the older release's
        with pytest.raises(
            CheckpointError, match=re.escape(f"and this is torch {torch.__version__}: upgrade")
        ):
            get_featurizer("dinov2_tiny", weights=pickled)


LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 88225724\n"


def _edit_weights(folder, edit):
    """Write ``folder``'s model.safetensors again with ``edit(name, tensor)`` applied to each."""
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    save_file({k: edit(k, v) for k, v in state.items()}, folder / "model.safetensors")


def _nan_patch_embedding(key, tensor):
    return tensor * float("nan") if "patch_embeddings" in key else tensor


@pytest.mark.parametrize(
    "damage, file, said",
    [
        # a hub repo cloned without Git LFS: "corrupt (header too large)" named no cause
        ("lfs", "model.safetensors", "is a Git LFS pointer (73 bytes of text), not the file"),
        ("lfs-bin", "pytorch_model.bin", "is a Git LFS pointer (73 bytes of text), not the file"),
        # integers and booleans were cast to float32 by transformers, and ran
        ("int8", "model.safetensors", "stores embeddings.cls_token as I8, not as floating-point"),
        ("bool", "model.safetensors", "stores embeddings.cls_token as BOOL, not as floating"),
        # every feature NaN, without a word
        ("nan", "", "weight embeddings.patch_embeddings.projection.weight of backbone"),
        # transformers asked for accelerate or optimum, with a traceback
        ("quantized", "", "holds a quantized model (bitsandbytes, its config.json's quantiz"),
        # transformers' mmap of a cut zip: "[Errno 22] Invalid argument", called a missing file
        pytest.param(
            "cut-bin",
            "pytorch_model.bin",
            "is corrupt or truncated and cannot be read",
            marks=READS_BACKBONE_PICKLES,
        ),
    ],
)
def test_backbone_weights_that_are_not_float_weights_are_named(tmp_path, damage, file, said):
    """Each way a backbone folder's weights can be wrong although its files are there: one line
    naming the file (or the folder) and how to get the weights, never a traceback, never a
    backbone that runs on them."""
    folder = tmp_path / "dino"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    weights = folder / "model.safetensors"
    if damage == "lfs":
        weights.write_bytes(LFS_POINTER)
    elif damage in ("lfs-bin", "cut-bin"):  # a repo with only pytorch_model.bin
        from safetensors.torch import load_file

        torch.save(load_file(weights), folder / "pytorch_model.bin")
        whole = (folder / "pytorch_model.bin").read_bytes()
        weights.unlink()
        cut = LFS_POINTER if damage == "lfs-bin" else whole[: len(whole) // 4]
        (folder / "pytorch_model.bin").write_bytes(cut)
    elif damage in ("int8", "bool"):
        _edit_weights(folder, lambda k, v: (v > 0) if damage == "bool" else v.to(torch.int8))
    elif damage == "nan":
        _edit_weights(folder, _nan_patch_embedding)
    else:
        config = json.loads((folder / "config.json").read_text())
        config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_8bit": True}
        (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=folder)
    msg = str(e.value)
    assert msg.startswith(str(folder / file) if file else str(folder)) and said in msg, msg
    assert "save_pretrained" in msg and "\n" not in msg


def test_a_sharded_folder_with_a_shard_cut_or_missing_names_that_shard(tmp_path):
    """save_pretrained splits a large model into shards listed by model.safetensors.index.json:
    a missing shard was "it needs model.safetensors (or pytorch_model.bin)", and a cut one was
    called model.safetensors, a file the folder does not have."""
    import shutil

    folder = tmp_path / "sharded"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder, max_shard_size="50KB")
    shards = sorted(folder.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and get_featurizer("dinov2_tiny", weights=folder).dim == 32
    cut = shutil.copytree(folder, tmp_path / "cut") / shards[1].name
    cut.write_bytes(cut.read_bytes()[:3000])
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=cut.parent)
    assert str(e.value).startswith(f"{cut} is truncated or corrupt (")
    gone = shutil.copytree(folder, tmp_path / "gone")
    (gone / shards[-1].name).unlink()
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_tiny", weights=gone)
    assert str(e.value) == (
        f"{gone} lacks {shards[-1].name}, one of the weight files its "
        f"model.safetensors.index.json names (1 of {len(shards)} missing: a copy cut short?); "
        "copy them all, or write the folder again with save_pretrained"
    )
    # an index that is not JSON, or lacks its weight_map, was "check its config.json"
    index = gone / "model.safetensors.index.json"
    for text, said in (("{not json", "is corrupt (Expecting"), ("{}", 'has no "weight_map"')):
        index.write_text(text)
        with pytest.raises(CheckpointError) as e:
            get_featurizer("dinov2_tiny", weights=gone)
        assert str(e.value).startswith(f"{index} {said}") and "config.json" not in str(e.value)


def _sharded_bin(folder):
    """``folder`` written by save_pretrained again as pytorch_model.bin shards (three) listed by
    pytorch_model.bin.index.json, as a hub repo uploaded before safetensors holds them."""
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    keys = sorted(state)
    groups = [keys[i::3] for i in range(3)]
    weight_map = {}
    for i, group in enumerate(groups, 1):
        shard = f"pytorch_model-0000{i}-of-00003.bin"
        torch.save({k: state[k] for k in group}, folder / shard)
        weight_map.update(dict.fromkeys(group, shard))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    return sorted(folder.glob("pytorch_model-*.bin"))


@READS_BACKBONE_PICKLES
def test_a_sharded_bin_folder_with_a_shard_cut_or_missing_names_that_shard(tmp_path):
    """Sharded pytorch_model.bin (pytorch_model.bin.index.json): a missing shard was
    transformers' traceback, and a cut one was not named; both are said as for safetensors
    shards, naming the shard and the index."""
    import shutil

    folder = tmp_path / "sharded"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    shards = _sharded_bin(folder)
    assert get_featurizer("dinov2_tiny", weights=folder).dim == 32
    gone = shutil.copytree(folder, tmp_path / "gone")
    (gone / shards[1].name).unlink()
    said = (
        f"{gone} lacks {shards[1].name}, one of the weight files its "
        "pytorch_model.bin.index.json names (1 of 3 missing: a copy cut short?); copy them "
        "all, or write the folder again with save_pretrained"
    )
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_tiny", weights=gone)
    assert str(e.value) == said
    cut = shutil.copytree(folder, tmp_path / "cut") / shards[2].name
    cut.write_bytes(cut.read_bytes()[:3000])
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=cut.parent)
    assert str(e.value).startswith(f"{cut} is corrupt or truncated and cannot be read"), e.value
    lfs = shutil.copytree(folder, tmp_path / "lfs") / shards[0].name
    lfs.write_bytes(LFS_POINTER)
    with pytest.raises(CheckpointError, match="is a Git LFS pointer"):
        get_featurizer("dinov2_tiny", weights=lfs.parent)


@READS_BACKBONE_PICKLES
def test_a_failed_read_of_weights_that_are_there_is_not_called_missing(tmp_path, monkeypatch):
    """An OSError while transformers loads a folder whose pytorch_model.bin is whole (a read
    error of the disk, say) said the folder "needs model.safetensors (or pytorch_model.bin)",
    which it has, after reading the file whole once more: now the error is given as it is."""
    from transformers import Dinov2Model

    folder = tmp_path / "dino"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()

    def fails(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Dinov2Model, "from_pretrained", fails)
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a))
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=folder)
    assert str(e.value) == (
        f"cannot load backbone dinov2_tiny from {folder} ([Errno 5] Input/output error); "
        "write the folder again with save_pretrained"
    )
    assert loads == []  # the file, which transformers did not say was bad, was not read
