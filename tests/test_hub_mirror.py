"""Downloads from a hub mirror (:func:`conftest.local_hub`, through ``HF_ENDPOINT``), then
offline use: released upsamplers, backbone repos of one's own (a pickle, shards), a gated repo,
the oldest huggingface_hub we declare."""

from __future__ import annotations

import json

import pytest
import torch

from hub_helpers import _NO_PROXY, _use_mirror
from loftup import CheckpointError
from loftup.hub.files import SAFE_PICKLE_TORCH, torch_release
from model_helpers import READS_BACKBONE_PICKLES
from processes import cli_script, pip_install_into, run_scripts
from reference_files import REFERENCE_STATE


def test_download_from_a_hub_mirror_then_run_offline(
    tmp_path, local_hub, reference_dir, monkeypatch, capsys
):
    """`loftup download` fetches the released upsampler and its backbone through
    huggingface_hub from the hub (here a local mirror, HF_ENDPOINT); another run then finds both
    in the cache with HF_HUB_OFFLINE=1, asking the hub nothing, and computes features. (In this
    process, as a test below does: two of their own took 3 s each to start.)"""
    from PIL import Image
    from transformers import Dinov2Config, Dinov2Model

    from loftup.cli import main

    cfg = Dinov2Config(  # ViT-S/14's width (the released upsampler's 384 channels), one layer
        hidden_size=384, num_hidden_layers=1, num_attention_heads=6, patch_size=14, image_size=518
    )
    torch.manual_seed(0)
    Dinov2Model(cfg).save_pretrained(tmp_path / "dinov2")
    files = {("haiwen/loftup-dinov2s", "pytorch_model.bin"): REFERENCE_STATE.read_bytes()}
    for name in ("config.json", "model.safetensors"):  # what save_pretrained wrote
        files["facebook/dinov2-small", name] = (tmp_path / "dinov2" / name).read_bytes()
    _use_mirror(monkeypatch, local_hub(files), tmp_path / "hub")
    assert main(["download", "loftup_dinov2s"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("loftup_dinov2s: ") and lines[1].startswith("dinov2_vits14: ")
    cached = lines[0].split(": ", 1)[1].strip()
    assert open(cached, "rb").read() == REFERENCE_STATE.read_bytes()

    Image.new("RGB", (40, 30), (200, 90, 30)).save(tmp_path / "im.png")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asked = len(local_hub.requests)
    out = tmp_path / "out"
    assert main(["upsample", str(tmp_path / "im.png"), "-o", str(out), "--size", "28"]) == 0
    assert len(local_hub.requests) == asked  # offline: from the cache alone
    feats = torch.load(out / "im.pt", weights_only=True)
    assert feats.shape == (384, 28, 37) and torch.isfinite(feats).all()


def test_a_file_the_hub_does_not_have_is_named_with_the_reason(
    tmp_path, local_hub, monkeypatch, capsys
):
    from loftup.cli import main

    _use_mirror(monkeypatch, local_hub({}), tmp_path / "hub")  # answers, but holds nothing
    assert main(["download", "loftup_clip"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "'pytorch_model.bin' of hub repo 'haiwen/loftup-clip'" in line
    assert "the download failed (" in line and "404" in line
    assert "load_upsampler('/path/to/pytorch_model.bin')" in line


def test_a_backbone_repo_with_only_pytorch_model_bin_downloads(
    tmp_path, local_hub, monkeypatch, capsys
):
    """Some hub repos uploaded before safetensors hold pytorch_model.bin and no
    model.safetensors: the backbone downloads from the .bin, and a later offline run loads it
    from the cache. (In this process: two of their own, each importing torch and transformers,
    took 6 s each.)"""
    from transformers import CLIPConfig, CLIPModel

    from loftup.cli import main
    from loftup.featurizers import get_featurizer

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    cfg = CLIPConfig(
        vision_config=dict(**vision, patch_size=16, image_size=64, projection_dim=24),
        text_config=dict(**vision, vocab_size=99),
        projection_dim=24,
    )
    torch.manual_seed(0)
    clip = CLIPModel(cfg)
    clip.config.save_pretrained(tmp_path / "clip")
    torch.save(clip.state_dict(), tmp_path / "clip" / "pytorch_model.bin")
    repo = "openai/clip-vit-base-patch16"
    files = {
        (repo, n): (tmp_path / "clip" / n).read_bytes()
        for n in ("config.json", "pytorch_model.bin")
    }
    _use_mirror(monkeypatch, local_hub(files), tmp_path / "hub")
    assert main(["download", "clip_vitb16"]) == 0
    assert capsys.readouterr().out.startswith("clip_vitb16: ")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if torch_release() < SAFE_PICKLE_TORCH:  # downloaded, but this torch cannot read it
        with pytest.raises(CheckpointError, match="pytorch_model.bin is a PyTorch pickle"):
            get_featurizer("clip_vitb16")
        return
    with torch.no_grad():
        assert get_featurizer("clip_vitb16")(torch.zeros(1, 3, 64, 64)).shape == (1, 24, 4, 4)


@READS_BACKBONE_PICKLES
def test_a_backbone_repo_of_ones_own_in_shards_downloads_then_loads_offline(
    tmp_path, local_hub, monkeypatch
):
    """A large model's repo holds its weights in shards (model.safetensors.index.json, or
    pytorch_model.bin.index.json from before safetensors) and no single weights file: such a
    repo of the user's own could not be fetched (`loftup download ORG/NAME` took it for SAM's,
    asking for a preprocessor_config.json, and fetched single files only), nor found in the
    cache offline after a snapshot_download."""
    from safetensors.torch import load_file

    from loftup.downloads import download_names
    from loftup.featurizers import get_featurizer

    model = get_featurizer("dinov2_tiny").model
    model.save_pretrained(tmp_path / "st", max_shard_size="50KB")
    files = {("someone/dino-st", p.name): p.read_bytes() for p in (tmp_path / "st").iterdir()}
    assert ("someone/dino-st", "model.safetensors.index.json") in files and len(files) > 3
    state = {k: v for p in (tmp_path / "st").glob("*.safetensors") for k, v in load_file(p).items()}
    weight_map = {k: f"pytorch_model-0000{i % 2 + 1}-of-00002.bin" for i, k in enumerate(state)}
    for shard in set(weight_map.values()):
        torch.save({k: state[k] for k, s in weight_map.items() if s == shard}, tmp_path / shard)
        files["someone/dino-bin", shard] = (tmp_path / shard).read_bytes()
    files["someone/dino-bin", "pytorch_model.bin.index.json"] = json.dumps(
        {"metadata": {}, "weight_map": weight_map}
    ).encode()
    files["someone/dino-bin", "config.json"] = files["someone/dino-st", "config.json"]
    # a SAM repo of one's own is still fetched as SAM's (its processor's settings too)
    sam = {"config.json": b'{"model_type": "sam"}', "preprocessor_config.json": b"{}"}
    sam["model.safetensors"] = next(d for (_, n), d in files.items() if n.startswith("model-"))
    files.update({("someone/sam", n): data for n, data in sam.items()})
    endpoint = local_hub(files)
    _use_mirror(monkeypatch, endpoint, tmp_path / "hub")
    repos = ["someone/dino-st", "someone/dino-bin"]
    got = dict(download_names([*repos, "someone/sam"]))
    assert list(got) == [*repos, "someone/sam"]
    assert sorted(p.name for p in got["someone/sam"].iterdir()) == sorted(sam)
    x = torch.linspace(-1, 1, 3 * 28 * 28).reshape(1, 3, 28, 28)
    with torch.no_grad():
        want = get_featurizer("dinov2_tiny")(x)
    # online, what the cache holds is used without a request for each single file the repo
    # lacks (a 404 each, at every load)
    import huggingface_hub

    asked = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: asked.append(a))
    for offline in ("0", "1"):
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        for repo in repos:
            with torch.no_grad():
                assert torch.equal(get_featurizer("dinov2_tiny", weights=repo)(x), want)
    assert asked == []


def test_a_repo_of_safetensors_shards_and_a_pickle_gives_the_shards(
    tmp_path, local_hub, monkeypatch
):
    """A repo holding its weights as safetensors shards and as one pytorch_model.bin (as many
    converted ones do) gave the pickle, as though it held only that: transformers prefers the
    shards, and the README says pytorch_model.bin comes from a repo that has only that."""

    from loftup.featurizers.hf_weights import resolve_weights

    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = {"metadata": {}, "weight_map": {"a": shards[0], "b": shards[1]}}
    held = {"config.json": b"{}", "pytorch_model.bin": b"pickle", **dict.fromkeys(shards, b"st")}
    held["model.safetensors.index.json"] = json.dumps(index).encode()
    endpoint = local_hub({("someone/mixed", n): data for n, data in held.items()})
    _use_mirror(monkeypatch, endpoint, tmp_path / "hub")
    folder = resolve_weights("someone/mixed", "facebook/dinov2-small", "dinov2_vits14")
    got = sorted(p.name for p in folder.iterdir())
    assert got == sorted(["config.json", "model.safetensors.index.json", *shards])


def test_a_gated_backbone_says_how_to_get_access(tmp_path, local_hub, monkeypatch, capsys):
    """DINOv3's repos are gated: without access the hub answers 401 GatedRepo, whose text is
    only "401 Client Error."; the line says where to accept the terms and how to log in, and
    does not send the user to a machine with network (this one has it)."""
    from loftup.cli import main

    repo = "facebook/dinov3-vits16-pretrain-lvd1689m"
    endpoint = local_hub({}, gated=(repo,))
    _use_mirror(monkeypatch, endpoint, tmp_path / "hub")
    assert main(["download", "dinov3_vits16"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert f"hub repo '{repo}' is gated" in line and f"{endpoint}/{repo}" in line
    assert "HF_TOKEN" in line and "hf auth login" in line
    assert "on a machine with network" not in line
    assert "--backbone-weights /path/to/folder" in line


def test_the_oldest_huggingface_hub_we_declare_downloads_and_says_offline(
    tmp_path, local_hub, reference_dir
):
    """pyproject asks for huggingface_hub>=0.24: with 0.24.0 itself (installed from the package
    registry into a folder of its own), a download from a mirror and the offline error both
    work. They failed before (an ImportError of is_offline_mode, which 0.24 does not have)."""
    pins = ["huggingface_hub==0.24.0", "requests", "urllib3", "idna", "charset-normalizer",
            "certifi"]  # fmt: skip
    target = pip_install_into(tmp_path / "site", pins, timeout=180)
    endpoint = local_hub(
        {("haiwen/loftup-dinov2s", "pytorch_model.bin"): REFERENCE_STATE.read_bytes()}
    )
    env = {"PYTHONPATH": str(target), "HF_HUB_CACHE": str(tmp_path / "hub"), **_NO_PROXY}
    check = "import huggingface_hub; print(huggingface_hub.__version__)"
    download = cli_script(["download", "loftup_dinov2s", "--no-backbone"])
    nothing = cli_script(["download", "someone/nothing"])  # the hub's answer read by 0.24
    # offline, as a later `loftup download` would be: loftup reads the switch at each call
    offline = "import os; os.environ['HF_HUB_OFFLINE'] = '1'\n" + cli_script(
        ["download", "loftup_clip", "--no-backbone"]
    )
    scripts = {"version": check, "download": download, "nothing": nothing, "offline": offline}
    done = run_scripts(scripts, {**env, "HF_ENDPOINT": endpoint})
    assert done["version"].stdout.strip() == "0.24.0"
    res = done["download"]
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("loftup_dinov2s: ") and "pytorch_model.bin" in res.stdout
    res = done["nothing"]
    assert res.returncode == 2 and "The hub has no repo 'someone/nothing'" in res.stderr, res.stderr
    res = done["offline"]
    assert res.returncode == 2, res.stderr
    assert "'haiwen/loftup-clip'" in res.stderr and "HF_HUB_OFFLINE=1 is set" in res.stderr
