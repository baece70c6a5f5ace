"""A save_pretrained folder on load: its config.json of bad types, missing or cut, a save stopped
between its two files, a folder in the weights' place, the weights file alone."""

from __future__ import annotations

import json

import pytest
import torch

from loftup import CheckpointError, LoftUp, WeightsNotFoundError, load_upsampler


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
    model.backbone, model.backbone_norm = "dinov2_tiny", "own"
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
        assert (loaded.backbone, loaded.backbone_norm) == ("dinov2_tiny", "own")
        with torch.no_grad():
            assert torch.equal(loaded(lr, image), want)


def test_a_config_json_given_as_the_weights_is_told_to_pass_its_folder(tmp_path, capsys):
    """`-m up/config.json` was "corrupt or not a PyTorch or safetensors file: it is text (an
    error reply saved in its place?) ...; download the file itself again": the file is the
    folder's record, and the folder loads. A backbone's config.json is told to go to
    --backbone-weights; JSON under a weights file's name keeps the old diagnosis."""
    from PIL import Image

    from loftup.cli import main
    from loftup.errors import UsageError

    up = tmp_path / "up"
    LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(up)
    with pytest.raises(UsageError) as e:
        load_upsampler(up / "config.json")
    said = str(e.value)
    assert said.startswith(f"{up / 'config.json'} is the config.json of an upsampler save_pr")
    assert f"pass its folder, {up}, as the upsampler" in said and f"CLI -m {up})" in said
    assert "download" not in said
    load_upsampler(up)  # the fix works
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["upsample", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "-m", str(up / "config.json")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"pass its folder, {up}" in err and len(err.strip().splitlines()) == 1, err

    backbone = tmp_path / "dinov2"
    backbone.mkdir()
    (backbone / "config.json").write_text(json.dumps({"model_type": "dinov2"}))
    with pytest.raises(UsageError, match=f"pass its folder, {backbone}, as the backbone's weig"):
        load_upsampler(backbone / "config.json")
    run = tmp_path / "run"  # loftup train's folder: its record, beside the checkpoint
    run.mkdir()
    (run / "run.json").write_text('{"version": "0.1.0"}')
    (run / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(UsageError, match=f"run.json is a file of a training run's folder, not weights: give {run / 'checkpoint.pt'}"):  # fmt: skip
        load_upsampler(run / "run.json")
    (tmp_path / "reply.pt").write_text('{"error": "not found"}')  # a reply saved as weights
    with pytest.raises(CheckpointError, match="it is text"):
        load_upsampler(tmp_path / "reply.pt")


def test_a_json_file_given_as_the_weights_is_said_to_be_one(tmp_path):
    """A JSON file of the user's own ({"a": 1}) was "text (an error reply saved in its
    place?) ...; download the file itself again", though no download made it; a
    save_pretrained config.json copied away from its weights was told to pass its folder,
    which holds no weights either."""
    from loftup.errors import UsageError

    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    with pytest.raises(UsageError) as e:
        load_upsampler(other)
    assert str(e.value).startswith(f"{other} is a JSON file, not an upsampler's weights: pass")
    assert "download" not in str(e.value)
    LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(tmp_path / "up")
    (tmp_path / "up" / "config.json").rename(tmp_path / "config.json")
    with pytest.raises(UsageError) as e:
        load_upsampler(tmp_path / "config.json")
    assert f"its folder, {tmp_path}, holds no model.safetensors: pass the folder" in str(e.value)
    assert "pass its folder" not in str(e.value)


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", "", "\x00\x01"])
def test_a_json_file_of_no_object_given_as_the_weights_is_said_to_be_one(tmp_path, text):
    """A .json file holding a list, or no JSON, was "an error reply saved in its place?
    download the file itself again": its name says what it is, whatever it holds."""
    from loftup.errors import UsageError

    given = tmp_path / "list.json"
    given.write_text(text)
    with pytest.raises(UsageError) as e:
        load_upsampler(given)
    assert str(e.value).startswith(f"{given} is a JSON file, not an upsampler's weights: pass")
    assert "download" not in str(e.value)
