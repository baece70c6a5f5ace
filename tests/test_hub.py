"""Loading from every source, saving, and the errors a user sees when something is wrong."""

from __future__ import annotations

import functools
import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import (
    READS_BACKBONE_PICKLES,
    REFERENCE_STATE,
    cli_script,
    make_hf_cache,
    pip_install_into,
    run_cli,
    run_python,
    run_scripts,
)
from loftup import (
    CheckpointError,
    LoftUp,
    UnknownNameError,
    WeightsNotFoundError,
    load_upsampler,
)
from loftup.hub import (
    RELEASED,
    load_with_record,
    native_to_reference,
    released_table,
    training_to_reference,
)
from loftup.hub.files import SAFE_PICKLE_TORCH, torch_release


def _case(reference_cases, name="square"):
    return reference_cases[f"{name}.lr_feats"], reference_cases[f"{name}.image"]


def _max_diff(model, reference_cases, name="square"):
    lr, image = _case(reference_cases, name)
    with torch.no_grad():
        return (model(lr, image) - reference_cases[f"{name}.output"]).abs().max().item()


def test_training_checkpoint_layout(tmp_path, reference_state, reference_cases):
    state = {k: v for k, v in reference_state.items() if k.startswith("upsampler.")}
    state["model.1.norm.weight"] = reference_state["channelnorm.norm.weight"]
    state["model.1.norm.bias"] = reference_state["channelnorm.norm.bias"]
    state["downsampler.attention_net.weight"] = torch.randn(1, 384)  # training-only
    state["model.0.backbone.weight"] = torch.randn(3)
    ckpt = {"state_dict": state, "epoch": 3, "optimizer_states": [{"lr": 1e-4}]}
    torch.save(ckpt, tmp_path / "last.ckpt")
    model = load_upsampler(tmp_path / "last.ckpt")
    assert _max_diff(model, reference_cases) <= 1e-4


def test_training_conversion_is_a_named_pure_function(reference_state):
    train = {
        "upsampler.x": torch.ones(1),
        "model.1.norm.weight": torch.ones(2),
        "other": torch.ones(3),
    }
    assert set(training_to_reference(train)) == {"upsampler.x", "channelnorm.norm.weight"}
    with pytest.raises(CheckpointError, match="model.1.norm"):
        training_to_reference({"upsampler.x": torch.ones(1)})


def test_safetensors_file(tmp_path, reference_state, reference_cases):
    save_file(reference_state, tmp_path / "w.safetensors")
    assert _max_diff(load_upsampler(tmp_path / "w.safetensors"), reference_cases) <= 1e-4


def test_save_pretrained_round_trip_is_bit_identical(tmp_path, reference_cases):
    torch.manual_seed(1)
    model = LoftUp(dim=384).eval()
    model.save_pretrained(tmp_path / "m", backbone="dinov2_vits14")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    again = load_upsampler(tmp_path / "m")
    assert again.backbone == "dinov2_vits14"
    lr, image = _case(reference_cases, "nonsquare")
    with torch.no_grad():
        assert torch.equal(model(lr, image), again(lr, image))


def test_save_pretrained_keeps_non_default_architecture(tmp_path):
    model = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=8, coords=False, attention_window=3).eval()
    model.save_pretrained(tmp_path)
    again = load_upsampler(tmp_path)
    assert again.config == model.config


def test_dtype_and_device_arguments(reference_cases):
    model = load_upsampler(REFERENCE_STATE, device="cpu", dtype=torch.bfloat16)
    assert model.stem.conv1.weight.dtype == torch.bfloat16
    lr, image = _case(reference_cases)
    with torch.no_grad():
        out = model(lr, image)  # float32 inputs are taken as they are
    assert out.dtype == torch.bfloat16 and out.shape == reference_cases["square.output"].shape
    # accurate to bf16 rounding: BatchNorm statistics and Fourier frequencies/phases stay in
    # float32 (in bf16 they gave a mean deviation of 0.2 and a max of 1.5 here)
    assert model.stem.bn1.running_var.dtype == model.image_encoder.freqs.dtype == torch.float32
    dev = (out.float() - reference_cases["square.output"]).abs()
    assert dev.mean().item() <= 0.01 and dev.max().item() <= 0.1


def test_dtype_by_name_as_load_pipeline_takes_it():
    from loftup.errors import UsageError

    model = load_upsampler(REFERENCE_STATE, dtype="bf16")
    assert model.stem.conv1.weight.dtype == torch.bfloat16
    with pytest.raises(UsageError, match="unknown precision 'int8'; choose one of float32"):
        load_upsampler(REFERENCE_STATE, dtype="int8")


@pytest.mark.parametrize(
    "source, said",
    [
        (torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()), "Sequential(...)"),
        (torch.zeros(3, 4), "a Tensor of shape (3, 4)"),
        (np.zeros((64, 64)), "an array of shape (64, 64)"),
        (list(range(100)), "list(...)"),
        (3, "3"),
    ],
)
def test_a_source_of_the_wrong_kind_is_named_in_a_few_words(source, said):
    """A module, tensor or array passed as the weights: the error named it by its whole repr
    (dozens of lines for a module or an array); now in a few words, the error one line."""
    from loftup.errors import UsageError

    for load in (load_upsampler, load_with_record):
        with pytest.raises(UsageError) as e:
            load(source)
        message = str(e.value)
        assert message.startswith("source is a released upsampler's name (e.g. loftup_dinov2s)")
        assert message.endswith(f", got {said}") and "\n" not in message


def test_unknown_name_lists_released_names():
    with pytest.raises(UnknownNameError) as e:
        load_upsampler("loftup_dinov3_huge")
    for name in RELEASED:
        assert name in str(e.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="no such file.*nothere.bin"):
        load_upsampler(tmp_path / "nothere.bin")


def test_a_training_runs_folder_points_to_its_weights(tmp_path):
    """-m runs/s1, the folder loftup train wrote: the error names the weights inside it."""
    run = tmp_path / "s1"
    with pytest.raises(WeightsNotFoundError, match="holds no weights") as e:
        load_upsampler(run.mkdir() or run)
    assert "training run" not in str(e.value)  # an empty folder is not one
    LoftUp(dim=16, num_heads=2).save_pretrained(run / "final")
    with pytest.raises(WeightsNotFoundError, match=f"training run's folder: give {run / 'final'}"):
        load_upsampler(run)
    assert load_upsampler(run / "final").config.dim == 16


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_truncated_file_is_named(tmp_path, reference_state, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".bin":
        torch.save(reference_state, path)
    else:
        save_file(reference_state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"w{suffix}.*corrupt or truncated"):
        load_upsampler(path)


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_a_git_lfs_pointer_is_named_as_one(tmp_path, suffix):
    """A hub repo cloned without Git LFS holds a short text file in place of each weight
    file: it was called "corrupt" ("header too large", "neither a zip archive nor a pickle"),
    which said nothing of the cause or of `git lfs pull`."""
    from loftup.hub.damaged import damage

    path = tmp_path / f"pytorch_model{suffix}"
    path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 17\n")
    with pytest.raises(CheckpointError) as e:
        load_upsampler(path)
    msg = str(e.value)
    assert msg.startswith(f"{path} is a Git LFS pointer (67 bytes of text), not the file")
    assert "`git lfs pull` in the clone" in msg and "save_pretrained" in msg and "\n" not in msg
    assert damage(path).startswith(f"{path} is a Git LFS pointer")  # what `download` checks


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_weights_stored_as_integers_or_complex_numbers_are_refused(tmp_path, dtype):
    """load_state_dict casts whatever it is given into the float parameters: integer weights
    (a quantized or hand-converted copy) loaded and ran, complex ones with a warning only."""
    model = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(native_to_reference(state), tmp_path / "w.bin")
    with pytest.raises(CheckpointError) as e:
        load_upsampler(tmp_path / "w.bin")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'w.bin'}: weight ") and f"stored as {dtype} (" in msg
    assert "not floating point" in msg and "save_pretrained" in msg
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(native_to_reference(half), tmp_path / "half.bin")  # float16 is a float: loads
    assert next(load_upsampler(tmp_path / "half.bin").parameters()).dtype == torch.float32


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch", "plain-pickle"])
# torch's safe unpickler notes the plain pickle's protocol (4) before it refuses the payload
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_code_in_a_pickle_never_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    payload = {"channelnorm.norm.weight": _Exploit(marker)}
    if how == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match="refusing to load|corrupt"):
        load_upsampler(path)
    assert not marker.exists()


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


def test_wrong_shapes_name_the_key(tmp_path, reference_state):
    state = dict(reference_state)
    state["upsampler.final_conv.0.weight"] = torch.zeros(384, 400, 1, 1)
    torch.save(state, tmp_path / "w.bin")
    with pytest.raises(CheckpointError, match=r"head\.conv\.weight.*\(384, 400, 1, 1\)"):
        load_upsampler(tmp_path / "w.bin")


def test_weights_of_a_diverged_run_are_refused_by_name(tmp_path, capsys):
    """NaN weights would write all-NaN features with exit 0: refused at load, in one line."""
    from loftup.cli import main

    torch.manual_seed(0)
    model = LoftUp(dim=32)
    with torch.no_grad():
        model.head.conv.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "up", backbone="dinov2_tiny")
    with pytest.raises(CheckpointError, match=r"1 of its \d+ weight tensors hold NaN or infinite"):
        load_upsampler(tmp_path / "up")
    (tmp_path / "a.png").write_bytes(b"")
    args = [
        "upsample",
        str(tmp_path / "a.png"),
        "-m",
        str(tmp_path / "up"),
        "-o",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "(first: head.conv.weight)" in err and "\n" not in err[:-1]
    assert not (tmp_path / "o").exists()


def test_foreign_keys_are_named(tmp_path, reference_state):
    state = dict(reference_state)
    state["upsampler.extra_layer.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "w.bin")
    with pytest.raises(CheckpointError, match=r"w\.bin: key 'upsampler.extra_layer.weight'"):
        load_upsampler(tmp_path / "w.bin")


@pytest.mark.parametrize(
    "obj,words",
    [
        ({"state_dict": {"encoder.weight": torch.ones(2)}}, "no channel norm"),
        ({"model": {"encoder.weight": torch.ones(2)}}, "no weight 'channel_norm.weight'"),
        ({"encoder.weight": torch.ones(2)}, "no weight 'channel_norm.weight'"),
        ({0: torch.ones(2)}, "key 0 is a int"),
        # entries that are not tensors were AttributeError tracebacks
        ({"model": {"channel_norm.weight": {"nested": torch.ones(2)}}}, "is a dict, not a"),
        ({"state_dict": {"model.1.norm.weight": 1.0, 0: 0}}, "is a float, not a tensor"),
    ],
)
def test_a_checkpoint_of_something_else_names_the_file_and_the_fix(tmp_path, obj, words):
    """Whatever does not fit a LoftUp layout is one line that names the file and what to pass."""
    torch.save(obj, tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as e:
        load_upsampler(tmp_path / "other.pt")
    text = str(e.value)
    assert text.startswith(str(tmp_path / "other.pt")) and words in text, text
    assert "save_pretrained" in text and "\n" not in text


def test_damaged_bytes_in_a_torch_file_are_refused(tmp_path, reference_state):
    """torch.load does not check the zip's CRC-32s: a flipped byte inside a tensor would load
    as a wrong weight without a word."""
    torch.save(reference_state, tmp_path / "w.bin")
    data = bytearray((tmp_path / "w.bin").read_bytes())
    at = data.index(b"PK\x03\x04", len(data) // 2) - 64  # inside a tensor's bytes
    data[at] ^= 0xFF
    (tmp_path / "w.bin").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"w\.bin is corrupt: its member .* checksum"):
        load_upsampler(tmp_path / "w.bin")


def test_a_torch_file_saved_without_checksums_loads(tmp_path, reference_state):
    config = pytest.importorskip("torch.utils.serialization").config  # torch >= 2.5
    before = config.save.compute_crc32
    config.save.compute_crc32 = False
    try:
        torch.save(reference_state, tmp_path / "w.bin")
    finally:
        config.save.compute_crc32 = before
    assert load_upsampler(tmp_path / "w.bin").dim == 384


def test_missing_keys_are_named(tmp_path, reference_state):
    state = {k: v for k, v in reference_state.items() if "layers.1.1.net.4" not in k}
    torch.save(state, tmp_path / "w.bin")
    with pytest.raises(CheckpointError, match=r"missing weight 'blocks\.1\.ffn\.fc2"):
        load_upsampler(tmp_path / "w.bin")


@pytest.mark.parametrize("key", ["channelnorm.norm.weight", "upsampler.lr_pe.biases"])
def test_a_scalar_where_a_size_is_read_is_named(tmp_path, reference_state, key):
    """The architecture is read off these weights' sizes: a scalar was an IndexError."""
    torch.save({**reference_state, key: torch.tensor(1.0)}, tmp_path / "w.bin")
    with pytest.raises(CheckpointError, match=r"w\.bin: weight '.*' is a scalar"):
        load_upsampler(tmp_path / "w.bin")


def test_not_a_state_dict(tmp_path):
    torch.save({"weights": [1, 2, 3]}, tmp_path / "w.bin")
    with pytest.raises(CheckpointError, match="'weights' is a list, not a tensor"):
        load_upsampler(tmp_path / "w.bin")


def test_released_name_from_local_hf_cache_offline(tmp_path, reference_dir):
    make_hf_cache(tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": REFERENCE_STATE})
    code = (
        "import torch, loftup\n"
        f"cases = torch.load({str(REFERENCE_STATE.parent / 'loftup_reference_cases.pt')!r}, weights_only=True)\n"
        "m = loftup.load_upsampler('loftup_dinov2s')\n"
        "out = m(cases['square.lr_feats'], cases['square.image'])\n"
        "print(m.backbone, float((out - cases['square.output']).abs().max()))\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    done = run_scripts({"load": code, "info": cli_script(["info"])}, env)  # one process start
    res, info = done["load"], done["info"]
    assert res.returncode == 0, res.stderr
    backbone, diff = res.stdout.split()
    assert backbone == "dinov2_vits14" and float(diff) <= 1e-4
    line = next(ln for ln in info.stdout.splitlines() if ln.startswith("loftup_dinov2s "))
    assert " yes " in line
    other = next(ln for ln in info.stdout.splitlines() if ln.startswith("loftup_clip "))
    assert " no " in other


def test_offline_without_cache_names_repo_file_and_local_path(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")}
    load = "import loftup; loftup.load_upsampler('loftup_clip')"
    done = run_scripts({"load": load, "download": cli_script(["download", "loftup_clip"])}, env)
    res = done["load"]
    assert res.returncode != 0
    msg = res.stderr.strip().splitlines()[-1]
    assert "haiwen/loftup-clip" in msg and "pytorch_model.bin" in msg and "local path" in msg
    # both ways of passing the file: Python and the command line
    assert "load_upsampler('/path/to/pytorch_model.bin')" in msg
    assert "loftup upsample -m /path/to/pytorch_model.bin --backbone clip_vitb16" in msg
    res = done["download"]
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "haiwen/loftup-clip" in res.stderr


def test_export_to_reference_layout_loads_back(tmp_path, reference_cases):
    torch.manual_seed(2)
    model = LoftUp().eval()
    torch.save(native_to_reference(model.state_dict()), tmp_path / "pytorch_model.bin")
    again = load_upsampler(tmp_path)  # a folder holding a hub-layout pytorch_model.bin
    lr, image = _case(reference_cases)
    with torch.no_grad():
        assert torch.equal(model(lr, image), again(lr, image))


#: Online, straight to the local mirror (a proxy in the environment must not carry 127.0.0.1).
_NO_PROXY = {
    "HF_HUB_OFFLINE": "0",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


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


def test_download_from_a_hub_mirror_then_run_offline(tmp_path, local_hub, reference_dir):
    """`loftup download` fetches the released upsampler and its backbone through
    huggingface_hub from the hub (here a local mirror, HF_ENDPOINT); another run then finds both
    in the cache with HF_HUB_OFFLINE=1 and computes features."""
    from PIL import Image
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(  # ViT-S/14's width (the released upsampler's 384 channels), one layer
        hidden_size=384, num_hidden_layers=1, num_attention_heads=6, patch_size=14, image_size=518
    )
    torch.manual_seed(0)
    Dinov2Model(cfg).save_pretrained(tmp_path / "dinov2")
    files = {("haiwen/loftup-dinov2s", "pytorch_model.bin"): REFERENCE_STATE.read_bytes()}
    for name in ("config.json", "model.safetensors"):  # what save_pretrained wrote
        files["facebook/dinov2-small", name] = (tmp_path / "dinov2" / name).read_bytes()
    endpoint = local_hub(files)
    online = {"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(tmp_path / "hub"), **_NO_PROXY}
    res = run_cli(["download", "loftup_dinov2s"], online, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("loftup_dinov2s: ") and lines[1].startswith("dinov2_vits14: ")
    cached = lines[0].split(": ", 1)[1].strip()
    assert open(cached, "rb").read() == REFERENCE_STATE.read_bytes()

    Image.new("RGB", (40, 30), (200, 90, 30)).save(tmp_path / "im.png")
    offline = {**online, "HF_HUB_OFFLINE": "1"}
    res = run_cli(
        ["upsample", str(tmp_path / "im.png"), "-o", str(tmp_path / "out"), "--size", "28"],
        offline,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    feats = torch.load(tmp_path / "out" / "im.pt", weights_only=True)
    assert feats.shape == (384, 28, 37) and torch.isfinite(feats).all()


def test_a_file_the_hub_does_not_have_is_named_with_the_reason(tmp_path, local_hub):
    endpoint = local_hub({})  # answers, but holds nothing
    env = {"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(tmp_path / "hub"), **_NO_PROXY}
    res = run_cli(["download", "loftup_clip"], env, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = res.stderr.strip().splitlines()
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


def test_a_gated_backbone_says_how_to_get_access(tmp_path, local_hub):
    """DINOv3's repos are gated: without access the hub answers 401 GatedRepo, whose text is
    only "401 Client Error."; the line says where to accept the terms and how to log in, and
    does not send the user to a machine with network (this one has it)."""
    repo = "facebook/dinov3-vits16-pretrain-lvd1689m"
    endpoint = local_hub({}, gated=(repo,))
    env = {"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(tmp_path / "hub"), **_NO_PROXY}
    res = run_cli(["download", "dinov3_vits16"], env, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert f"hub repo '{repo}' is gated" in line and f"{endpoint}/{repo}" in line
    assert "HF_TOKEN" in line and "hf auth login" in line
    assert "on a machine with network" not in line
    assert "--backbone-weights /path/to/folder" in line


def test_an_unreachable_hub_is_named_at_once(tmp_path):
    """No network and HF_HUB_OFFLINE unset: one line that says so within seconds, not minutes
    of huggingface_hub's retries."""
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HUB_OFFLINE": "0",
    }
    t0 = time.perf_counter()
    res = run_cli(["download", "dinov2_vits14"], env, timeout=300)
    assert time.perf_counter() - t0 < 60
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "'config.json' of hub repo 'facebook/dinov2-small'" in line
    assert "the Hugging Face hub cannot be reached" in line
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
    scripts = {"version": check, "download": download, "nothing": nothing}
    done = run_scripts(scripts, {**env, "HF_ENDPOINT": endpoint})
    assert done["version"].stdout.strip() == "0.24.0"
    res = done["download"]
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("loftup_dinov2s: ") and "pytorch_model.bin" in res.stdout
    res = done["nothing"]
    assert res.returncode == 2 and "The hub has no repo 'someone/nothing'" in res.stderr, res.stderr
    res = run_cli(["download", "loftup_clip", "--no-backbone"], {**env, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 2, res.stderr
    assert "'haiwen/loftup-clip'" in res.stderr and "HF_HUB_OFFLINE=1 is set" in res.stderr


# -- one-line errors for broken folders, offline downloads and backbone weights -----------------


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda info: info["config"].update(num_heads="four"),
         "num_heads must be an integer >= 1, got 'four'"),
        (lambda info: info["config"].update(dim=-5), "dim must be an integer >= 1, got -5"),
        (lambda info: info["config"].update(num_heads=3), "num_heads=3 does not divide"),
        (lambda info: info["config"].update(coords="yes"), "coords must be true or false"),
        (lambda info: info.update(config=[1, 2]), '"config" must be an object'),
        (lambda info: info.update(backbone=7), '"backbone" must be a backbone name or null'),
        (lambda info: [1, 2], "holds a JSON list, but a loftup config is an object"),
    ],
)  # fmt: skip
def test_a_config_json_of_bad_types_names_file_and_key(tmp_path, edit, words):
    import json

    LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(tmp_path)
    info = json.loads((tmp_path / "config.json").read_text())
    info = edit(info) or info
    (tmp_path / "config.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError) as e:
        load_upsampler(tmp_path)
    assert str(tmp_path / "config.json") in str(e.value) and words in str(e.value)


def test_download_with_hf_hub_offline_says_to_unset_it(monkeypatch, capsys):
    import huggingface_hub

    from loftup.cli import main

    def never(*args, **kwargs):
        raise AssertionError("offline: nothing may be downloaded")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", never)
    for name, repo in (("loftup_clip", "haiwen/loftup-clip"), ("dinov2_vits14", "dinov2-small")):
        assert main(["download", name, "--no-backbone"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "HF_HUB_OFFLINE=1 is set" in err and "Unset it to download" in err
        assert f"env -u HF_HUB_OFFLINE loftup download {name}" in err and repo in err
        assert "on a machine with network" not in err
        assert "copy the Hugging Face cache (~/.cache/huggingface/hub by default) of a " in err


def test_a_released_upsampler_missing_offline_is_said_as_its_backbone_is(
    monkeypatch, capsys, tmp_path
):
    """`loftup upsample -m loftup_dinov2s` offline without the weights names the file and how
    to provide them in one line, as for its backbone: in the cache from a machine with
    network, or a local path. It gave `loftup download`'s own advice (unset HF_HUB_OFFLINE to
    download), meant for the command that downloads."""
    import huggingface_hub
    from PIL import Image

    from loftup.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    assert main(["upsample", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "file 'pytorch_model.bin' of hub repo 'haiwen/loftup-dinov2s' is not in the " in err
    assert "HF_HUB_OFFLINE=1 is set" in err and "Unset it to download" not in err
    assert "`loftup download loftup_dinov2s` on a machine with network" in err
    # the file alone does not record its backbone: the advice names it, or it would fail again
    assert "`loftup upsample -m /path/to/pytorch_model.bin --backbone dinov2_vits14`" in err
    assert "load_pipeline('/path/to/pytorch_model.bin', backbone='dinov2_vits14')" in err
    # its backbone is missing too, and said so at once (not on the run after -m /path)
    assert "the backbone's weights are missing too" in err and "'facebook/dinov2-small'" in err
    assert "--backbone-weights /path/to/folder" in err


def test_an_upsampler_without_its_backbone_is_told_the_backbones_of_its_width():
    """The advice for an upsampler that does not record its backbone named dinov2_vits14
    (384-d) whatever its width: a 768-d one given that failed again, on its features' width.
    A LoftUp passed in was named by its module's repr, dozens of lines."""
    from loftup import LoftUpError, load_pipeline

    for dim, fits, not_fits in ((768, "dinov2_vitb14, ", "vits14"), (32, "dinov2_tiny", "vit")):
        with pytest.raises(LoftUpError, match="does not record its backbone") as e:
            load_pipeline(LoftUp(dim=dim, depth=1, num_heads=2, n_freqs=4))
        assert f"backbones of its {dim}-d features: " in str(e.value) and "\n" not in str(e.value)
        assert fits in str(e.value) and not_fits not in str(e.value)
        assert "siglip_vitb16" in str(e.value) or dim != 768


def test_the_released_table_says_which_checkpoint_is_cached_and_where(tmp_path, monkeypatch):
    """What `loftup info` prints and writes as JSON: every released checkpoint in the
    registry's order, and the cached file's path for the one the cache holds."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = make_hf_cache(tmp_path / "hub", "haiwen/loftup-clip", {"pytorch_model.bin": b"x"})
    rows = released_table()
    assert [r["name"] for r in rows] == list(RELEASED)
    clip = next(r for r in rows if r["name"] == "loftup_clip")
    assert clip == {
        "name": "loftup_clip",
        "backbone": "clip_vitb16",
        "dim": 512,
        "grid": "14x14",
        "hub": "haiwen/loftup-clip/pytorch_model.bin",
        "cached": True,
        "path": str(snap / "pytorch_model.bin"),
    }
    others = [r for r in rows if r is not clip]
    assert not any(r["cached"] or r["path"] for r in others)


def test_a_missing_upsampler_names_its_backbone_only_where_that_is_missing(tmp_path, monkeypatch):
    """Offline, load_pipeline names every missing file in its one error: the released
    upsampler's, and its backbone's where that is not in the cache (or at the folder given)."""
    from huggingface_hub import constants

    from loftup import WeightsNotFoundError, get_featurizer, load_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    both = "haiwen/loftup-dinov2s", "the backbone's weights are missing too"
    with pytest.raises(WeightsNotFoundError) as e:
        load_pipeline("loftup_dinov2s")
    assert all(words in str(e.value) for words in both) and "\n" not in str(e.value)
    assert "'facebook/dinov2-small'" in str(e.value)
    with pytest.raises(WeightsNotFoundError, match="'facebook/dinov2-base'"):
        load_pipeline("loftup_clip", backbone="dinov2_vitb14")  # the backbone asked for
    folder = tmp_path / "tiny"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    make_hf_cache(tmp_path / "hub", "facebook/dinov2-small", {p.name: p for p in folder.iterdir()})
    for kw in ({}, {"backbone_weights": folder}):  # in the cache, or a local folder
        with pytest.raises(WeightsNotFoundError, match="haiwen/loftup-dinov2s") as e:
            load_pipeline("loftup_dinov2s", **kw)
        assert "missing too" not in str(e.value) and "facebook/" not in str(e.value)


def test_a_truncated_backbone_safetensors_is_named(tmp_path, capsys):
    from loftup.cli import main
    from loftup.featurizers import get_featurizer

    folder = tmp_path / "tiny"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=str(folder))
    assert str(e.value).startswith(f"{weights} is truncated or corrupt")
    assert "write the folder again with save_pretrained" in str(e.value)
    LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(tmp_path / "up")
    (tmp_path / "a.png").write_bytes(b"png")
    capsys.readouterr()  # transformers' bar while saving
    args = ["upsample", str(tmp_path / "a.png"), "-m", str(tmp_path / "up"), "-o"]
    args += [str(tmp_path / "o"), "--backbone", "dinov2_tiny", "--backbone-weights", str(folder)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{weights} is truncated or corrupt" in err


def test_sam_weights_come_from_a_folder_the_cache_or_a_one_line_error(tmp_path):
    """data.sam_weights: a short name or hub id is read from the Hugging Face cache file by
    file, offline too; missing, the error names the file and `loftup download sam_vit_base`
    (transformers alone retried for minutes, and each image was then 'unreadable')."""
    from loftup.data.sam import SAM_FILES, resolve_sam
    from loftup.errors import WeightsNotFoundError

    files = {group[0]: b"{}" for group in SAM_FILES}
    snap = make_hf_cache(tmp_path / "hub", "facebook/sam-vit-base", files)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    code = "from loftup.data.sam import resolve_sam; print(resolve_sam('sam_vit_base'))"
    done = run_scripts(
        {"resolve": code, "download": cli_script(["download", "sam_vit_large"])}, env
    )
    res = done["resolve"]
    assert res.returncode == 0 and res.stdout.strip() == str(snap), res.stderr
    res = done["download"]
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "'config.json' of hub repo 'facebook/sam-vit-large'" in res.stderr
    assert "HF_HUB_OFFLINE=1" in res.stderr and "data.sam_weights=/path/to/folder" in res.stderr
    folder = tmp_path / "sam"
    folder.mkdir()
    for name in ("config.json", "pytorch_model.bin"):  # a .bin, as older hub repos hold
        (folder / name).write_text("{}")
    with pytest.raises(WeightsNotFoundError, match="no preprocessor_config.json or processor_c"):
        resolve_sam(str(folder))
    (folder / "processor_config.json").write_text("{}")  # as transformers 5 writes it
    assert resolve_sam(str(folder)) == folder
    with pytest.raises(WeightsNotFoundError, match="no such folder"):
        resolve_sam(str(tmp_path / "nothere"))


def test_subpackages_are_attributes_of_loftup_imported_on_first_use():
    """`import loftup` then `loftup.io.load_image_tensor` (as the README writes it) works, and
    the heavy parts (transformers, evaluation, training) are not imported until used."""
    code = (
        "import sys, loftup\n"
        "heavy = [m for m in ('transformers', 'loftup.eval', 'loftup.train') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(loftup.io.load_image_tensor) and callable(loftup.eval.miou)\n"
        "assert 'loftup.eval' in sys.modules and callable(loftup.train.load_config)\n"
        "try:\n"
        "    loftup.nothere\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    res = run_python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "module 'loftup' has no attribute 'nothere'"


def test_a_state_without_batchnorm_counters_loads(tmp_path, reference_state):
    """BatchNorm's num_batches_tracked is never read at inference: a state dict without it (a
    converter that keeps float tensors only) loads, with every weight the same."""
    from safetensors.torch import save_file

    stripped = {k: v for k, v in reference_state.items() if "num_batches_tracked" not in k}
    assert len(stripped) == len(reference_state) - 2
    save_file(stripped, tmp_path / "w.safetensors")
    got = load_upsampler(tmp_path / "w.safetensors").state_dict()
    want = load_upsampler(REFERENCE_STATE).state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], v) for k, v in want.items() if "num_batches_tracked" not in k)


def test_a_damaged_download_in_the_cache_says_to_delete_its_blob(tmp_path, monkeypatch):
    """A truncated file in the Hugging Face cache (a copied ~/.cache cut short) was answered
    with "re-download it" or "`loftup download NAME` fills the cache": that command finds the
    file cached and fetches nothing, and deleting the snapshot's link only relinks the damaged
    blob. The line names the blob to delete; once it is gone the file counts as missing."""
    from huggingface_hub import constants

    from loftup import get_featurizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    tiny = tmp_path / "tiny"
    get_featurizer("dinov2_tiny").model.save_pretrained(tiny)
    cases = (
        ("haiwen/loftup-dinov2s", "pytorch_model.bin", REFERENCE_STATE, "loftup_dinov2s"),
        ("facebook/dinov2-small", "model.safetensors", tiny / "model.safetensors", "dinov2_vits14"),
    )
    for repo, filename, source, name in cases:
        snap = make_hf_cache(tmp_path / "hub", repo, {"config.json": tiny / "config.json"})
        blob = snap.parents[1] / "blobs" / "0123abcd"  # the hub's layout: a link to a blob
        blob.parent.mkdir()
        blob.write_bytes(source.read_bytes()[:500])
        (snap / filename).symlink_to(blob)
        load = functools.partial(
            load_upsampler if name.startswith("loftup") else get_featurizer, name
        )
        with pytest.raises(CheckpointError) as e:
            load()
        msg = str(e.value)
        assert f"damaged download in the Hugging Face cache: delete {blob} and run " in msg
        assert f"`loftup download {name}`" in msg and "\n" not in msg
        blob.unlink()  # as told: now missing, so `loftup download` would fetch it
        with pytest.raises(WeightsNotFoundError, match=f"'{filename}' of hub repo '{repo}' is not"):
            load()
    folder = tmp_path / "mine"  # a damaged file outside the cache: no word of the cache
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"x" * 100)
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_vits14", weights=folder)
    assert "Hugging Face cache: delete" not in str(e.value)


def test_the_quick_reachability_check_goes_through_the_proxy_downloads_use(monkeypatch):
    """Behind a proxy (HTTPS_PROXY, which huggingface_hub honours) the hub itself cannot be
    reached directly, while downloads work through the proxy: the 3 s check connected to the
    endpoint directly and refused every download as "cannot be reached"."""
    import socket

    from loftup.hub import reach
    from loftup.hub.reach import hub_reachable
    from test_hub_reach import listener

    monkeypatch.setattr(reach, "UNREACHABLE", {})  # no failure remembered from elsewhere
    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        for name in (var, var.upper()):
            monkeypatch.delenv(name, raising=False)
    with socket.socket() as closed, listener() as proxy:
        closed.bind(("127.0.0.1", 0))  # nothing listens: the endpoint, unreachable directly
        monkeypatch.setenv("HF_ENDPOINT", f"https://127.0.0.1:{closed.getsockname()[1]}")
        assert not hub_reachable(timeout=1)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy}")
        assert hub_reachable(timeout=1)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the endpoint bypasses the proxy
        assert not hub_reachable(timeout=1)


def test_a_name_lookup_that_gets_no_answer_is_bounded_and_not_repeated(monkeypatch):
    """A resolver that gets no answer (no network, a DNS server configured but out of reach)
    retries for tens of seconds, which the 3 s connection timeout does not bound; each file
    of a backbone waited for it again."""
    import socket
    import time

    from loftup.hub import reach

    calls = []

    def no_answer(*args, **kwargs):
        calls.append(args[0])
        time.sleep(30)
        raise socket.gaierror("timed out")

    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_answer)
    monkeypatch.setattr(reach, "UNREACHABLE", {})
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")
    t0 = time.perf_counter()
    assert not reach.hub_reachable(timeout=0.5)
    assert not reach.hub_reachable(timeout=0.5)  # the next file: no second wait
    assert time.perf_counter() - t0 < 5 and calls == ["hub.example"]


def test_the_hub_is_reachable_by_any_of_its_addresses(monkeypatch):
    """A name resolves to several addresses (IPv6 first on many machines, where IPv6 may have no
    route): the check tried the first alone, as no download does, and refused the hub."""
    import socket

    from loftup.hub import reach
    from test_hub_reach import listener

    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(reach, "UNREACHABLE", {})
    with socket.socket() as closed, listener() as port:
        closed.bind(("127.0.0.2", 0))  # nothing listens there

        def two_addresses(host, port, *args, **kwargs):  # a literal address: itself alone
            found = addresses if host == "hub.example" else [host]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in found]

        addresses = ["127.0.0.2", "127.0.0.1"]
        monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
        monkeypatch.setenv("HF_ENDPOINT", f"https://hub.example:{port}")
        assert reach.hub_reachable(timeout=1)
        addresses = ["127.0.0.2"]
        monkeypatch.setattr(reach, "REACHABLE", {})  # the pass above is remembered a minute
        assert not reach.hub_reachable(timeout=1)


def test_an_upsampler_and_a_backbone_swapped_say_which_goes_where(tmp_path):
    """A backbone's folder given as the upsampler was "not a loftup config" or "not a LoftUp
    checkpoint" with advice for upsampler files; an upsampler's folder given as the backbone's
    weights was "a 'unknown' model"."""
    from loftup import get_featurizer

    LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(tmp_path / "up")
    get_featurizer("dinov2_tiny").model.save_pretrained(tmp_path / "bb")
    for source in (tmp_path / "bb", tmp_path / "bb" / "model.safetensors"):
        with pytest.raises(CheckpointError) as e:
            load_upsampler(source)
        msg = str(e.value)
        assert f"{tmp_path / 'bb'} holds a transformers 'dinov2' model, a backbone's weights" in msg
        assert "--backbone-weights" in msg and "save_pretrained folder" not in msg
    # a backbone in shards (no single weights file) was "holds no weights"
    get_featurizer("dinov2_tiny").model.save_pretrained(tmp_path / "sh", max_shard_size="50KB")
    with pytest.raises(WeightsNotFoundError) as e:
        load_upsampler(tmp_path / "sh")
    assert f"{tmp_path / 'sh'} holds a transformers 'dinov2' model, a backbone's" in str(e.value)
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_vits14", weights=tmp_path / "up")
    msg = str(e.value)
    assert f"{tmp_path / 'up'} holds a LoftUp upsampler (written by save_pretrained)" in msg
    assert "as the upsampler (the model, CLI -m)" in msg and "unknown" not in msg


@pytest.mark.parametrize("upsampler", ["loftup_dinov2s", "haiwen/loftup-dinov2s"])
def test_names_and_hub_ids_swapped_say_which_goes_where(upsampler, monkeypatch):
    """A backbone's name or hub id given as the upsampler was "unknown upsampler" or "no such
    file or folder: facebook/dinov2-small"; an upsampler's given as the backbone's weights was
    looked up as a backbone's repo ("not in the cache", with a snapshot_download command)."""
    from loftup import get_featurizer
    from loftup.errors import UsageError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for backbone in ("dinov2_vits14", "facebook/dinov2-small"):
        with pytest.raises(UsageError) as e:
            load_upsampler(backbone)
        msg = str(e.value)
        assert (
            msg.startswith(f"{backbone} is ") and "not an upsampler: pass it as the backbone" in msg
        )
        assert "(backbone='dinov2_vits14', CLI --backbone dinov2_vits14)" in msg
        assert "as the upsampler the released loftup_dinov2s or its weights" in msg
    with pytest.raises(UsageError) as e:
        get_featurizer("dinov2_vits14", weights=upsampler)
    msg = str(e.value)
    assert msg.startswith(f"backbone weights for dinov2_vits14: {upsampler} is ")
    assert "pass it as the upsampler (model=, CLI -m)" in msg and "facebook/dinov2-small" in msg
    assert "snapshot_download" not in msg


def test_download_fetches_a_damaged_cached_file_again(tmp_path, local_hub, monkeypatch):
    """`loftup download` found a cached file and said it had it, damaged or not (a copied
    cache cut short): it now checks what it finds and fetches a damaged copy again; offline it
    says the copy is damaged and which blob to delete."""
    import hashlib

    from loftup.hub import download

    good = REFERENCE_STATE.read_bytes()
    endpoint = local_hub({("haiwen/loftup-clip", "pytorch_model.bin"): good})
    commit = "89abcdef0123456789abcdef0123456789abcdef"  # the mirror's: the same snapshot
    repo = tmp_path / "hub" / "models--haiwen--loftup-clip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    blob = repo / "blobs" / hashlib.sha256(good).hexdigest()  # named by its ETag, as the hub's
    blob.write_bytes(good[:2000])
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "pytorch_model.bin").symlink_to(blob)
    _use_mirror(monkeypatch, endpoint, tmp_path / "hub", HF_HUB_OFFLINE="1")
    with pytest.raises(WeightsNotFoundError) as e:
        download("loftup_clip")
    msg = str(e.value)
    assert "the cached copy of file 'pytorch_model.bin' of hub repo 'haiwen/loftup-clip' is " in msg
    assert "is damaged (" in msg and "truncated" in msg and "HF_HUB_OFFLINE=1 is set" in msg
    assert f"delete {blob} and run `loftup download loftup_clip`" in msg
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert download("loftup_clip").read_bytes() == good
    assert load_upsampler(download("loftup_clip")).dim == 384  # and it loads (the reference state)


def test_a_released_upsampler_on_a_neighbouring_backbone_is_warned_about(tmp_path, monkeypatch):
    """loftup_siglip given siglip2_vitb16 (both 768-d): the width matched, so the features came
    out wrong without a word. The registry's backbone is compared with the one given."""
    import warnings

    from huggingface_hub import constants

    import loftup.pipeline
    from loftup import load_pipeline
    from loftup.featurizers import Featurizer
    from loftup.pipeline import BackboneMismatchWarning

    monkeypatch.setattr(loftup.mismatch, "_WARNED_MISMATCH", set())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = LoftUp(dim=768, depth=1, num_heads=2, n_freqs=4)  # a stand-in of the width
    torch.save(native_to_reference(model.state_dict()), tmp_path / "pytorch_model.bin")
    weights = {"pytorch_model.bin": tmp_path / "pytorch_model.bin"}
    make_hf_cache(tmp_path / "hub", "haiwen/loftup-siglip", weights)
    backbone = Featurizer()  # the pipeline is only built: a stand-in of the backbone's width
    backbone.dim, backbone.patch_size = 768, 16
    backbone.name = "siglip2_vitb16"  # the neighbour's name, on a backbone of the same width
    pickle_warned = torch_release() < SAFE_PICKLE_TORCH  # the released .bin, CVE-2025-32434
    with pytest.warns(BackboneMismatchWarning) as told:
        load_pipeline("loftup_siglip", backbone=backbone)
    told = [w for w in told if not (pickle_warned and "CVE-2025-32434" in str(w.message))]
    assert str(told[0].message).startswith(
        "backbone mismatch: the upsampler loftup_siglip was trained on siglip_vitb16's "
        "features, not siglip2_vitb16's"
    )
    backbone.name = "siglip_vitb16"  # its own: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if pickle_warned:
            warnings.filterwarnings("ignore", "loading .*CVE-2025-32434")
        load_pipeline("loftup_siglip", backbone=backbone)


def test_a_released_name_is_not_taken_for_a_folder_of_the_current_one(tmp_path, monkeypatch):
    """A damaged cached release loaded by name from inside a backbone's folder (a config.json of
    model_type dinov2 in the current folder) was told that "." holds a backbone's weights, not an
    upsampler's, in place of the blob to delete: the name was read as a file of that folder."""
    from huggingface_hub import constants

    from loftup import get_featurizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    tiny = tmp_path / "tiny"
    get_featurizer("dinov2_tiny").model.save_pretrained(tiny)
    snap = make_hf_cache(tmp_path / "hub", "haiwen/loftup-dinov2s", {})
    blob = snap.parents[1] / "blobs" / "0123abcd"
    blob.parent.mkdir()
    blob.write_bytes(REFERENCE_STATE.read_bytes()[:500])
    (snap / "pytorch_model.bin").symlink_to(blob)
    monkeypatch.chdir(tiny)
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    assert f"damaged download in the Hugging Face cache: delete {blob} and run " in str(e.value)
    assert "holds a transformers" not in str(e.value)


def test_two_upsamplers_without_a_source_are_each_warned_about(monkeypatch):
    """The mismatch warning is said once per upsampler and pairing; it was keyed by the
    upsampler's source, and every LoftUp built in the process has none ("None" for all): a
    second, different upsampler run on the same wrong backbone was not warned about."""
    import warnings

    import loftup.mismatch
    from loftup import load_pipeline
    from loftup.pipeline import BackboneMismatchWarning

    monkeypatch.setattr(loftup.mismatch, "_WARNED_MISMATCH", set())
    first, second = (LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4) for _ in range(2))
    for upsampler in (first, second):
        upsampler.backbone = "tiny_of_my_own"
        with pytest.warns(BackboneMismatchWarning, match="tiny_of_my_own's features, not dinov2"):
            load_pipeline(upsampler, backbone="dinov2_tiny")
    with warnings.catch_warnings():  # each once: the same one again is not said twice
        warnings.simplefilter("error")
        load_pipeline(first, backbone="dinov2_tiny")
        load_pipeline(second, backbone="dinov2_tiny")


def test_a_released_name_whose_cached_file_is_another_checkpoint_is_refused(tmp_path, monkeypatch):
    """A file of another width cached under a released name (copied into the wrong repo's
    folder) loaded as that name, and failed only at its backbone ("expects 384-d features:
    pass the backbone it was trained with, clip_vitb16", which was the one passed)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = make_hf_cache(
        tmp_path / "hub", "haiwen/loftup-clip", {"pytorch_model.bin": REFERENCE_STATE}
    )
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_clip")
    file = snap / "pytorch_model.bin"
    assert str(e.value) == (
        f"{file} holds a 384-d upsampler, but loftup_clip is 512-d (for clip_vitb16's "
        "features): it is another checkpoint's file; it is a damaged download in the Hugging "
        f"Face cache: delete {file} and run `loftup download loftup_clip` to fetch it again"
    )
    make_hf_cache(tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": REFERENCE_STATE})
    assert load_upsampler("loftup_dinov2s").dim == 384  # its own width: loads


def test_a_released_upsamplers_hub_repo_or_a_missing_path_says_what_to_pass(tmp_path):
    """``haiwen/loftup-dinov2s`` (what ``loftup download`` also takes) given as the upsampler,
    and a mistyped path, were both "no such file or folder: ...", which named no fix."""
    from loftup.errors import UsageError

    with pytest.raises(UsageError) as e:
        load_upsampler("haiwen/loftup-dinov2s")
    assert str(e.value) == (
        "haiwen/loftup-dinov2s is the hub repo of the released upsampler loftup_dinov2s: pass "
        "its name, loftup_dinov2s, which loads it from there (the Hugging Face cache, or a "
        "download)"
    )
    missing = tmp_path / "nowhere" / "up.safetensors"
    with pytest.raises(WeightsNotFoundError) as e:
        load_upsampler(missing)
    assert str(e.value).startswith(f"no such file or folder: {missing}; check the path, or ")
    assert "pass a released name (loftup_dinov2s, " in str(e.value)


@pytest.mark.parametrize("bad", ["nan", "int"])
def test_a_released_names_cached_file_of_bad_weights_says_to_fetch_it_again(
    tmp_path, monkeypatch, bad
):
    """NaN or integer weights in the file cached under a released name were told to "use an
    earlier checkpoint" or to "pass the file save_pretrained wrote, or a released name" (it
    was one): the fix is the cached file's, deleted and downloaded again."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    state = torch.load(REFERENCE_STATE, map_location="cpu", weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] * float("nan") if bad == "nan" else state[key].long()
    torch.save(state, tmp_path / "bad.bin")
    snap = make_hf_cache(
        tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": tmp_path / "bad.bin"}
    )
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    msg = str(e.value)
    said = "hold NaN or infinite values" if bad == "nan" else "is stored as torch.int64"
    assert msg.startswith("loftup_dinov2s: ") and said in msg and "\n" not in msg, msg
    blob = (snap / "pytorch_model.bin").resolve()
    assert msg.endswith(f"delete {blob} and run `loftup download loftup_dinov2s` to fetch it again")
    assert "earlier checkpoint" not in msg and "or a released name" not in msg


@pytest.mark.parametrize("damage", ["no-config", "cut-config", "lfs-no-config", "cut-no-config"])
def test_a_save_pretrained_folder_with_its_config_missing_or_cut_says_the_fix(tmp_path, damage):
    """A save_pretrained folder copied without (or with half of) its config.json was "has
    model.safetensors but no config.json" or "is corrupt", with nothing to do about it. Where
    its weights are a Git LFS pointer or cut short too, that is said (their header, which may
    hold the record, cannot be read), not the missing config.json."""
    from safetensors.torch import load_file, save_file

    folder = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(tmp_path / "up")
    config = folder / "config.json"
    if damage == "no-config":  # and weights without the record in their header (an older save)
        config.unlink()
        weights = folder / "model.safetensors"
        save_file(load_file(weights), weights, metadata={"format": "pt"})
    elif damage == "cut-config":
        config.write_bytes(config.read_bytes()[:30])
    else:  # a clone without Git LFS, or a copy cut short, of a folder without config.json
        config.unlink()
        weights = folder / "model.safetensors"
        lfs = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 17\n"
        weights.write_bytes(lfs if damage == "lfs-no-config" else weights.read_bytes()[:100])
    with pytest.raises((CheckpointError, WeightsNotFoundError)) as e:
        load_upsampler(folder)
    msg = str(e.value)
    if damage.endswith("-no-config") and damage != "no-config":
        said = "is a Git LFS pointer (67 bytes" if damage == "lfs-no-config" else "is corrupt or"
        assert msg.startswith(f"{folder / 'model.safetensors'} {said}"), msg
        assert "config.json" not in msg and "\n" not in msg
        return
    said = "but no config.json, which records" if damage == "no-config" else "is corrupt ("
    assert msg.startswith(str(folder)) and said in msg and "\n" not in msg
    assert msg.endswith("; write the folder again with save_pretrained (or loftup train)")


def test_a_save_stopped_between_its_two_files_is_told_on_load(tmp_path, monkeypatch):
    """save_pretrained writes model.safetensors, then config.json, each atomically: a save
    stopped between the two (killed) left the new weights beside the earlier save's
    config.json, whose record (2 heads) then read weights trained with 4, another function,
    without a word. The two records hold the weights' digest: the mismatch is said, with the
    fixes (save again, or drop config.json for the weights' own record)."""
    from loftup.hub import saving

    torch.manual_seed(0)
    first = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).eval()
    second = LoftUp(dim=32, depth=1, num_heads=4, n_freqs=4).eval()  # the same shapes
    folder = first.save_pretrained(tmp_path / "up")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the signal, once the weights are in place

    monkeypatch.setattr(saving, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        second.save_pretrained(folder)
    monkeypatch.undo()
    for source in (folder, folder / "model.safetensors"):
        with pytest.raises(CheckpointError) as e:
            load_upsampler(source)
        assert str(e.value) == (
            f"{folder / 'config.json'} is the record of another save than "
            f"{folder / 'model.safetensors'} (their weights_digests differ: a save_pretrained "
            "stopped between the two files, or files of two saves put together); write the "
            "folder again with save_pretrained, or delete config.json to load the weights with "
            "the record in their own header"
        )
    (folder / "config.json").unlink()  # as told: the weights' own record
    lr, image = torch.randn(1, 32, 4, 4), torch.rand(1, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(load_upsampler(folder)(lr, image), second(lr, image))
    second.save_pretrained(folder)  # a whole save: both files agree, and an edit keeps that
    info = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**info, "backbone": "dinov2_tiny"}))
    assert load_upsampler(folder).backbone == "dinov2_tiny"
    # weights written again by another tool (no header record): config.json is their only
    # record, and it still reads them, as it did before saves recorded a digest
    from safetensors.torch import load_file, save_file

    save_file(load_file(folder / "model.safetensors"), folder / "model.safetensors")
    assert load_upsampler(folder).config.num_heads == 4
    # other weights so written beside it: compared by what was read, and refused
    save_file(first.state_dict(), folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="their weights_digests differ") as e:
        load_upsampler(folder)
    assert str(e.value).endswith("write the folder again with save_pretrained")


def test_a_folder_where_the_weights_file_should_be_is_named(tmp_path):
    """A folder named model.safetensors (a copy gone wrong) in a save_pretrained folder was a
    bare IsADirectoryError."""
    folder = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(tmp_path / "up")
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").mkdir()
    with pytest.raises(WeightsNotFoundError) as e:
        load_upsampler(folder)
    assert str(e.value).startswith(f"{folder / 'model.safetensors'} is a folder, not a weights")


def test_a_save_pretrained_file_alone_loads_as_the_same_upsampler(tmp_path):
    """The heads and the backbone are in config.json, not in the weights' shapes: the
    model.safetensors of a 2-head upsampler, given alone or copied without its config.json,
    loaded as a 4-head one (another function, silently) or not at all. Its header holds the
    record too."""
    torch.manual_seed(0)
    model = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).eval()
    model.backbone, model.backbone_norm = "dinov2_vits14", "own"
    folder = model.save_pretrained(tmp_path / "up")
    lr, image = torch.randn(1, 32, 4, 4), torch.rand(1, 3, 28, 28)
    with torch.no_grad():
        want = model(lr, image)
    # given as a file beside its config.json, the folder's config.json decides (edited here)
    info = json.loads((folder / "config.json").read_text())
    info["backbone"] = "dinov2_vitb14"
    (folder / "config.json").write_text(json.dumps(info))
    assert load_upsampler(folder / "model.safetensors").backbone == "dinov2_vitb14"
    (folder / "config.json").unlink()
    for source in (folder, folder / "model.safetensors"):
        loaded = load_upsampler(source)
        assert loaded.config == model.config and loaded.config.num_heads == 2
        assert (loaded.backbone, loaded.backbone_norm) == ("dinov2_vits14", "own")
        with torch.no_grad():
            assert torch.equal(loaded(lr, image), want)


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


def test_an_upsampler_of_ones_own_loads_by_hub_id_from_the_cache(tmp_path, monkeypatch):
    """An upsampler saved with save_pretrained and pushed to the hub loads by its id, from the
    cache offline, as the saved one (heads and backbone from its record); a revision by
    ``@REV``; a local folder of the same name wins over the hub id."""
    model, folder, (lr, image) = _own_upsampler(tmp_path)
    other, other_folder, _ = _own_upsampler(tmp_path, heads=4, seed=1)
    files = {n: folder / n for n in ("model.safetensors", "config.json")}
    make_hf_cache(tmp_path / "hub", "someone/my-up", files)
    # a tag v1 pointing at another commit, holding the other upsampler
    repo = tmp_path / "hub" / "models--someone--my-up"
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    (repo / "refs" / "v1").write_text(commit)
    (repo / "snapshots" / commit).mkdir()
    for n in files:
        (repo / "snapshots" / commit / n).write_bytes((other_folder / n).read_bytes())
    _offline_cache(monkeypatch, tmp_path / "hub")
    monkeypatch.chdir(tmp_path)
    loaded = load_upsampler("someone/my-up")
    assert loaded.config == model.config and loaded.config.num_heads == 2
    assert (loaded.backbone, loaded.source) == ("dinov2_tiny", "someone/my-up")
    at_v1 = load_upsampler("someone/my-up@v1")
    assert at_v1.config.num_heads == 4 and at_v1.source == "someone/my-up@v1"
    # a Path names a file here: not the hub id its text spells (it loaded that repo instead)
    with pytest.raises(WeightsNotFoundError, match="^no such file or folder: someone/my-up; "):
        load_upsampler(Path("someone/my-up"))
    with torch.no_grad():
        assert torch.equal(loaded(lr, image), model(lr, image))
        assert torch.equal(at_v1(lr, image), other(lr, image))
    # a folder of that name here is the user's: it wins
    (tmp_path / "someone").mkdir()
    other_folder.rename(tmp_path / "someone" / "my-up")
    local = load_upsampler("someone/my-up")
    assert local.config.num_heads == 4 and local.source == "someone/my-up"
    with torch.no_grad():
        assert torch.equal(local(lr, image), other(lr, image))


def test_a_revision_of_a_released_or_backbone_repo_is_still_that_repo(tmp_path, monkeypatch):
    """ORG/NAME@REV of a released upsampler's or a backbone's repo is refused as the bare repo
    is (its name to pass; the backbone option), not looked up as an upsampler of one's own
    whose download advice `loftup download` then refused."""
    from loftup.cli import main
    from loftup.errors import UsageError

    _offline_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(UsageError, match="hub repo of the released upsampler loftup_dinov2s: "):
        load_upsampler("haiwen/loftup-dinov2s@main")
    with pytest.raises(UsageError, match="backbone dinov2_vits14's hub repo, not an upsampler"):
        load_upsampler("facebook/dinov2-small@v2")
    assert main(["download", "haiwen/loftup-dinov2s@main"]) == 2
    assert main(["download", "facebook/dinov2-small@main"]) == 2


def test_a_hub_repo_of_another_kind_is_refused_before_its_weights_download(
    tmp_path, monkeypatch, local_hub
):
    """An id whose repo holds a backbone (or anything with a config.json that is no loftup
    record): its config.json is read first and the repo refused, before its weights (gigabytes
    for a large backbone) are downloaded."""
    from huggingface_hub import try_to_load_from_cache

    config = {"model_type": "dinov2", "hidden_size": 32}
    files = {
        ("someone/bb", "config.json"): json.dumps(config).encode(),
        ("someone/bb", "model.safetensors"): b"x" * 1000,
    }
    _use_mirror(monkeypatch, local_hub(files), tmp_path / "hub")
    with pytest.raises(CheckpointError) as e:
        load_upsampler("someone/bb")
    assert str(e.value).startswith(
        "hub repo someone/bb holds no upsampler: its config.json is not a loftup config (no "
        '"format": "loftup"), so its weights were not downloaded; '
    )
    assert (
        "a transformers 'dinov2' model, a backbone's weights: pass it as the backbone's "
        "(backbone_weights='someone/bb', CLI --backbone-weights someone/bb)"
    ) in str(e.value)
    cached = try_to_load_from_cache("someone/bb", "model.safetensors", cache_dir=tmp_path / "hub")
    assert not isinstance(cached, str)


def test_download_of_ones_own_repo_fetches_what_its_owner_pushed_since(
    tmp_path, monkeypatch, local_hub, capsys
):
    """Loading an upsampler of one's own by id reads the cache, without asking the hub; `loftup
    download ORG/NAME` asks it, and fetches the newer commit its owner pushed since (it kept
    the cached copy and said it had it). Unreachable, it keeps the copy it has."""
    from loftup.cli import main

    first, folder1, (lr, image) = _own_upsampler(tmp_path)
    second, folder2, _ = _own_upsampler(tmp_path, heads=4, seed=1)

    def pushed(folder, commit):
        files = {("someone/my-up", n): (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}  # fmt: skip
        _use_mirror(monkeypatch, local_hub(files, commit=commit), tmp_path / "hub")

    pushed(folder1, "1" * 40)
    assert main(["download", "someone/my-up"]) == 0
    pushed(folder2, "2" * 40)
    with torch.no_grad():
        assert torch.equal(load_upsampler("someone/my-up")(lr, image), first(lr, image))
        assert main(["download", "someone/my-up"]) == 0
        assert torch.equal(load_upsampler("someone/my-up")(lr, image), second(lr, image))
    capsys.readouterr()
    # its files gone (the repo answers; of a repo gone, huggingface_hub gives the cached copy)
    gone = {("someone/my-up", "README.md"): b"moved elsewhere"}
    _use_mirror(monkeypatch, local_hub(gone, commit="3" * 40), tmp_path / "hub")
    assert main(["download", "someone/my-up"]) == 0  # the copy it has, said once a file
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in err] == [
        "warning: hub repo 'someone/my-up' did not give 'config.json'",
        "warning: hub repo 'someone/my-up' did not give 'model.safetensors'",
    ]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "someone/my-up"]) == 0  # offline: the copy is all there is
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("weights", ["failing", "missing"])
def test_a_refresh_whose_weights_cannot_be_had_keeps_the_cached_commit_loading(
    tmp_path, monkeypatch, local_hub, capsys, weights
):
    """`loftup download ORG/NAME` of a repo pushed again whose config.json arrives but whose
    weights do not (the hub fails, or the push holds none): the cache's ref moved to the new
    commit with the config and stayed there, so loading by id offline found no weights although
    the earlier commit's files were all cached. The refresh is all or nothing."""
    from loftup.cli import main

    first, folder1, (lr, image) = _own_upsampler(tmp_path)
    _, folder2, _ = _own_upsampler(tmp_path, heads=4, seed=1)
    names = ("model.safetensors", "config.json")
    files = {("someone/my-up", n): (folder1 / n).read_bytes() for n in names}
    _use_mirror(monkeypatch, local_hub(files, commit="1" * 40), tmp_path / "hub")
    assert main(["download", "someone/my-up"]) == 0
    files = {("someone/my-up", n): (folder2 / n).read_bytes() for n in names}
    failing = (("someone/my-up", "model.safetensors"),)
    if weights == "missing":  # a push of the config alone
        del files["someone/my-up", "model.safetensors"]
    _use_mirror(monkeypatch, local_hub(files, commit="2" * 40, failing=failing), tmp_path / "hub")
    capsys.readouterr()
    assert main(["download", "someone/my-up"]) == 2
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with torch.no_grad():
        assert torch.equal(load_upsampler("someone/my-up")(lr, image), first(lr, image))
    err = capsys.readouterr().err
    assert "'model.safetensors' of hub repo 'someone/my-up' could not be downloaded" in err, err
    assert err.rstrip().endswith(
        f"; loading someone/my-up still reads the files of commit {'1' * 40} cached before"
    ), err


def test_a_backbone_repo_refresh_whose_weights_fail_keeps_the_cached_commit(
    tmp_path, monkeypatch, local_hub
):
    """The same for a backbone's repo of one's own: its config.json of the newer commit came,
    its weights did not, and the cache still gives the weights of the commit it had."""
    from huggingface_hub import try_to_load_from_cache
    from safetensors.torch import save_file

    from loftup.cli import main

    for commit, width in (("1" * 40, 32), ("2" * 40, 64)):
        save_file({"w": torch.zeros(width)}, tmp_path / "w.safetensors")
        files = {
            ("someone/bb", "config.json"): json.dumps(
                {"model_type": "dinov2", "hidden_size": width}
            ).encode(),  # fmt: skip
            ("someone/bb", "model.safetensors"): (tmp_path / "w.safetensors").read_bytes(),
        }
        failing = (("someone/bb", "model.safetensors"),) if width == 64 else ()
        _use_mirror(monkeypatch, local_hub(files, commit=commit, failing=failing), tmp_path / "hub")
        assert main(["download", "someone/bb"]) == (2 if failing else 0)
    for name in ("config.json", "model.safetensors"):
        found = try_to_load_from_cache("someone/bb", name, cache_dir=tmp_path / "hub")
        assert isinstance(found, str) and f"/snapshots/{'1' * 40}/" in found, (name, found)


def test_an_upsampler_by_hub_id_missing_offline_names_the_files_and_the_fix(tmp_path, monkeypatch):
    """Offline with the repo's files not cached: one line naming the repo, the files it needs
    and how to provide them (a download elsewhere, or the local folder), as the released
    checkpoints say it; with the weights cached alone, the config.json is named."""
    _, folder, _ = _own_upsampler(tmp_path)
    _offline_cache(monkeypatch, tmp_path / "hub")
    for source, missing in (("someone/my-up", "'model.safetensors' of hub repo 'someone/my-up'"),
                            ("someone/my-up@v2", "'model.safetensors' of hub repo 'someone/my-up@v2'")):  # fmt: skip
        with pytest.raises(WeightsNotFoundError) as e:
            load_upsampler(source)
        msg = str(e.value)
        assert "\n" not in msg and missing in msg, msg
        assert msg.startswith(
            f"upsampler {source} (no file or folder {source} in the current folder {os.getcwd()}, "
            "so taken for a hub repo id): "
        )
        assert "is not in the Hugging Face cache (nor is 'config.json', which it needs too)" in msg
        assert "HF_HUB_OFFLINE=1 is set" in msg and f"Run `loftup download {source}`" in msg
        assert msg.endswith(
            "or pass a local path instead: the folder save_pretrained wrote (model.safetensors "
            "+ config.json), load_upsampler('/path/to/folder') or `loftup upsample -m "
            "/path/to/folder`"
        )
    make_hf_cache(
        tmp_path / "hub", "someone/my-up", {"model.safetensors": folder / "model.safetensors"}
    )
    with pytest.raises(WeightsNotFoundError) as e:
        load_upsampler("someone/my-up")
    assert (
        "file 'config.json' of hub repo 'someone/my-up' is not in the Hugging Face cache and "
        in str(e.value)
    )
    # what is no hub id is still a missing path, or an unknown name
    for path in ("someone/my-up.safetensors", "some one/my-up"):
        with pytest.raises(WeightsNotFoundError, match=f"^no such file or folder: {path}; "):
            load_upsampler(path)
    with pytest.raises(UnknownNameError, match="or the hub id ORG/NAME of one"):
        load_upsampler("my-up")


@pytest.mark.parametrize("cut", ["model.safetensors", "config.json"])
def test_an_upsampler_by_hub_id_cut_short_in_the_cache_says_which_blob_to_delete(
    tmp_path, monkeypatch, cut
):
    """A file of a hub id's upsampler cut short in the cache (an interrupted copy of the cache)
    was told the fix of a local folder ("write the folder again with save_pretrained"): it is
    the cached copy that must go, then `loftup download ORG/NAME` fetches it again."""
    _, folder, _ = _own_upsampler(tmp_path)
    files = {n: (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}
    files[cut] = files[cut][:40]
    snap = make_hf_cache(tmp_path / "hub", "someone/my-up", files)
    _offline_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(CheckpointError) as e:
        load_upsampler("someone/my-up")
    msg = str(e.value)
    assert msg.startswith(str(snap / cut)) and "\n" not in msg, msg
    assert msg.endswith(
        f"it is a damaged download in the Hugging Face cache: delete {snap / cut} and run "
        "`loftup download someone/my-up` to fetch it again"
    )


def test_download_an_upsampler_by_hub_id_then_upsample_offline_from_the_cli(
    tmp_path, local_hub, monkeypatch, capsys
):
    """`loftup download ORG/NAME` of a save_pretrained upsampler fetches its two files (it
    read them as a backbone's, whose alternatives happened to match), and `loftup upsample -m
    ORG/NAME` then runs offline from the cache with the backbone the record names."""
    from PIL import Image

    from loftup.cli import main

    _, folder, _ = _own_upsampler(tmp_path)
    files = {
        ("someone/my-up", n): (folder / n).read_bytes()
        for n in ("model.safetensors", "config.json")
    }
    _use_mirror(monkeypatch, local_hub(files), tmp_path / "hub")
    assert main(["download", "someone/my-up"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("someone/my-up: ") and line.endswith(
        "snapshots/89abcdef0123456789abcdef0123456789abcdef"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    Image.new("RGB", (40, 30), (200, 90, 30)).save(tmp_path / "im.png")
    args = [str(tmp_path / "im.png"), "--size", "28", "--device", "cpu"]
    assert main(["upsample", *args, "-m", "someone/my-up", "-o", str(tmp_path / "hub_out")]) == 0
    assert main(["upsample", *args, "-m", str(folder), "-o", str(tmp_path / "local_out")]) == 0
    got = torch.load(tmp_path / "hub_out" / "im.pt", weights_only=True)
    want = torch.load(tmp_path / "local_out" / "im.pt", weights_only=True)
    assert got.shape == (32, 28, 37) and torch.equal(got, want)


def test_bare_weights_are_read_with_4_heads_unless_told_and_a_record_decides(tmp_path, monkeypatch):
    """The weights' shapes do not say the heads: a 2-head upsampler's state dict without a
    record (the hub layout, a plain .pt) loaded as a 4-head one, another function, with no way
    to say otherwise. ``num_heads=`` says it; where a record exists (save_pretrained, a
    released name) it decides and a contradicting ``num_heads`` is refused by name."""
    from loftup.errors import UsageError

    model, folder, (lr, image) = _own_upsampler(tmp_path)
    torch.save(native_to_reference(model.state_dict()), tmp_path / "pytorch_model.bin")
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with torch.no_grad():
        want = model(lr, image)
        for bare in (tmp_path / "pytorch_model.bin", tmp_path / "plain.pt"):
            assumed = load_upsampler(bare)  # the paper's 4: documented, and not this model
            assert assumed.config.num_heads == 4
            assert not torch.allclose(assumed(lr, image), want)
            told = load_upsampler(bare, num_heads=2)
            assert told.config == model.config and torch.equal(told(lr, image), want)
        # heads that do not divide the token width (32 + 4 x 5): the ones that do
        with pytest.raises(UsageError, match=r"num_heads=3 does not divide .* one of 1, 2, 4, 13"):
            load_upsampler(tmp_path / "plain.pt", num_heads=3)
        with pytest.raises(UsageError, match="num_heads must be an integer >= 1, got 0"):
            load_upsampler(tmp_path / "nothere.pt", num_heads=0)  # before any file is read
        # a record decides: the same number is fine, another is refused
        assert torch.equal(load_upsampler(folder, num_heads=2)(lr, image), want)
    with pytest.raises(UsageError) as e:
        load_upsampler(folder / "model.safetensors", num_heads=4)
    assert str(e.value) == (
        f"num_heads=4 contradicts {folder / 'model.safetensors'}, which has num_heads=2 in its "
        "record (its weights were trained with them): leave num_heads out"
    )
    _offline_cache(monkeypatch, tmp_path / "hub")  # nothing cached: said before it is looked for
    with pytest.raises(UsageError) as e:
        load_upsampler("loftup_dinov2s", num_heads=2)
    assert str(e.value).startswith(
        "num_heads=2 contradicts loftup_dinov2s, which has the paper's 4 heads"
    )
