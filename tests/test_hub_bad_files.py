"""A weights file that is not what it should be (missing, truncated, a git-lfs pointer, integers,
code in a pickle, other shapes or keys, something else entirely): one error naming the file
and the fix."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from loftup import CheckpointError, LoftUp, UnknownNameError, WeightsNotFoundError, load_upsampler
from loftup.hub import RELEASED, load_with_record, native_to_reference


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


@pytest.mark.parametrize("left", ["half", "all but its end record", "all but a byte"])
def test_a_torch_file_cut_short_is_said_to_be_cut_short(tmp_path, reference_state, left):
    """A download of torch.save's archive cut short anywhere (its end records, last, are gone):
    the refusal said zipfile's "File is not a zip file" of a file that is one, and `loftup
    download`'s look at its cached copy (:func:`~loftup.hub.damaged.damage`) said that too,
    where it had said the archive had no end. Now each says it is cut short, with the fix."""
    from loftup.hub.damaged import damage
    from loftup.hub.files import torch_load

    path = tmp_path / "w.bin"
    torch.save(reference_state, path)
    data = path.read_bytes()
    keep = {"half": len(data) // 2, "all but its end record": -22, "all but a byte": -1}[left]
    path.write_bytes(data[:keep])
    said = (
        f"{path} is corrupt or truncated and cannot be read (its zip archive has no end: cut "
        "short, as an interrupted download or copy leaves it)"
    )
    with pytest.raises(CheckpointError) as e:
        torch_load(path, fix="download it again")
    assert str(e.value) == f"{said}; download it again"
    with pytest.raises(CheckpointError) as e:
        load_upsampler(path)
    assert str(e.value).startswith(f"{said}; ")
    assert damage(path) == said


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_a_git_lfs_pointer_is_named_as_one(tmp_path, suffix):
    """A hub repo cloned without Git LFS holds a short text file in place of each weight
    file: it was called "corrupt" ("header too large", "neither a zip archive nor a pickle"),
    which said nothing of the cause or of `git lfs pull` (said in a clone: a folder above
    holds .git, and a .gitattributes that tracks files with Git LFS)."""
    from loftup.hub.damaged import damage

    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    path = tmp_path / f"pytorch_model{suffix}"
    path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 17\n")
    with pytest.raises(CheckpointError) as e:
        load_upsampler(path)
    msg = str(e.value)
    assert msg.startswith(f"{path} is a Git LFS pointer (67 bytes of text), not the file")
    assert msg.endswith("; `git lfs install` and `git lfs pull` in the clone fetch the files")
    assert "\n" not in msg
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
    """The architecture is read off these weights' sizes: a scalar was an IndexError. The
    weight is named as the file has it too."""
    torch.save({**reference_state, key: torch.tensor(1.0)}, tmp_path / "w.bin")
    theirs = rf"\({re.escape(repr(key))} in the paper's layout\)"
    with pytest.raises(CheckpointError, match=rf"w\.bin: weight '[\w.]+' {theirs} is a scalar"):
        load_upsampler(tmp_path / "w.bin")


def test_not_a_state_dict(tmp_path):
    torch.save({"weights": [1, 2, 3]}, tmp_path / "w.bin")
    with pytest.raises(CheckpointError, match="'weights' is a list, not a tensor"):
        load_upsampler(tmp_path / "w.bin")
