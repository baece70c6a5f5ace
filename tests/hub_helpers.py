"""Helpers of the hub tests: a local mirror as the hub (``_use_mirror``), an upsampler of
one's own saved to a folder, an offline cache."""

from __future__ import annotations

import pytest
import torch

from loftup import LoftUp
from loftup.errors import CheckpointError
from loftup.hub import read_weights

#: How text in a weights file's place is said, before its quoted line
TEXT = "is corrupt or not a PyTorch or safetensors file: it is text (an error reply saved in "
TEXT += "its place?) and begins "

#: Online, straight to the local mirror (a proxy in the environment must not carry 127.0.0.1).
_NO_PROXY = {
    "HF_HUB_OFFLINE": "0",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}

#: A Git LFS pointer, as the hub's /raw/ link or a clone without Git LFS gives in a weights
#: file's place
POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 88225724\n"
)


def _use_mirror(monkeypatch, endpoint: str, cache, **env) -> None:
    """This process downloads from the local mirror ``endpoint`` into the Hugging Face cache
    ``cache`` (``env``: more variables, e.g. HF_HUB_OFFLINE="1"), without a process of its own:
    huggingface_hub read HF_ENDPOINT and the cache's place at import."""
    from huggingface_hub import constants

    for var, value in {"HF_ENDPOINT": endpoint, **_NO_PROXY, **env}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    import huggingface_hub.file_download as fd  # before 1.0 it reads its own copy, taken at import

    if hasattr(fd, "HUGGINGFACE_CO_URL_TEMPLATE"):
        monkeypatch.setattr(fd, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    # read at import: on where a test before set HF_HUB_OFFLINE=1 while importing it; here the
    # environment decides (loftup reads it first)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def _own_upsampler(tmp_path, heads: int = 2, seed: int = 0):
    """A small upsampler of one's own (2 heads: not the 4 a bare state dict is read with) with a
    backbone that needs no files, written by save_pretrained; (model, its folder, a case)."""
    torch.manual_seed(seed)
    model = LoftUp(dim=32, depth=1, num_heads=heads, n_freqs=4).eval()
    model.backbone, model.backbone_norm = "dinov2_tiny", "imagenet"
    folder = model.save_pretrained(tmp_path / f"saved{seed}")
    return model, folder, (torch.randn(1, 32, 4, 4), torch.rand(1, 3, 28, 28))


def _offline_cache(monkeypatch, cache) -> None:
    """This process reads the Hugging Face cache ``cache``, with HF_HUB_OFFLINE=1."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


#: The second commit of :func:`_two_commits`' cache
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def _two_commits(cache, repo_id: str, folder, other_folder, ref: str):
    """A Hugging Face cache ``cache`` holding hub repo ``repo_id``: save_pretrained's files of
    ``folder`` at main's commit, those of ``other_folder`` at :data:`OTHER_COMMIT`, which the
    branch or tag ``ref`` names; the repo's folder in the cache."""
    from hub_builders import make_hf_cache

    names = ("model.safetensors", "config.json")
    make_hf_cache(cache, repo_id, {n: folder / n for n in names})
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs" / ref).write_text(OTHER_COMMIT)
    (repo / "snapshots" / OTHER_COMMIT).mkdir()
    for n in names:
        (repo / "snapshots" / OTHER_COMMIT / n).write_bytes((other_folder / n).read_bytes())
    return repo


def _released_cached_said(tmp_path, monkeypatch, data: bytes):
    """The offline cache under ``tmp_path / "hub"`` holding ``data`` as loftup_dinov2s's file
    (a blob and the snapshot's link to it): its snapshot folder, and what loading the name
    said (a CheckpointError's text)."""
    import pytest

    from hub_builders import make_hf_cache
    from loftup import load_upsampler
    from loftup.errors import CheckpointError

    files = {"pytorch_model.bin": data}
    snap = make_hf_cache(tmp_path / "hub", "haiwen/loftup-dinov2s", files, blobs=True)
    _offline_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    return snap, str(e.value)


def _said(tmp_path, suffix: str, data: bytes) -> tuple[str, str]:
    """The file ``data`` as weights named ``model{suffix}``: its path, and what reading it said."""
    path = tmp_path / f"model{suffix}"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as e:
        read_weights(path)
    return str(path), str(e.value)
