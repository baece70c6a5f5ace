"""``save_pretrained``'s folder: where it can write (a home folder, a path where no folder can
be, a read-only folder, said before anything is written), what it saves (a wrapped upsampler),
and folders of its files that load (beside a pickle, a cache snapshot's copy). Its record:
test_hub_save_record.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from loftup import LoftUp
from loftup.errors import UsageError


class _Wrapper(torch.nn.Module):
    """A module holding the upsampler as its attribute ``name``, as torch.compile's
    OptimizedModule holds it (``_orig_mod``) and DistributedDataParallel (``module``): its
    weights are named ``{name}.*`` (torch.compile itself takes seconds to import)."""

    def __init__(self, model, name: str):
        super().__init__()
        setattr(self, name, model)


@pytest.mark.parametrize("name", ["_orig_mod", "module"])
def test_a_wrapped_upsampler_saves_as_the_upsampler_it_wraps(tmp_path, name):
    """A compiled (or DDP) upsampler's weights are named ``_orig_mod.*`` (``module.*``): saved
    as they were, the folder loaded as "missing weight 'channel_norm.weight'". Anything but a
    LoftUp is said in a line."""
    from loftup import load_upsampler
    from loftup.hub import save_pretrained

    torch.manual_seed(0)
    model = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4)
    save_pretrained(_Wrapper(model, name), tmp_path / "up", backbone="dinov2_tiny")
    loaded = load_upsampler(tmp_path / "up")
    assert loaded.config == model.config and loaded.backbone == "dinov2_tiny"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(UsageError, match=r"^save_pretrained saves a LoftUp, got Linear\(\.\.\.\)$"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "linear")
    assert not (tmp_path / "linear").exists()


def test_a_pickles_folder_with_a_loftup_config_json_is_read_with_its_record(tmp_path, monkeypatch):
    """save_pretrained's config.json beside a pytorch_model.bin (a folder or hub repo whose
    weights were saved with torch.save): its record (heads, attention window, backbone) is
    read, as beside model.safetensors; it was ignored, and the weights ran with 4 heads and
    global attention, without a word."""
    from hub_builders import make_hf_cache
    from loftup import load_upsampler

    torch.manual_seed(0)
    model = LoftUp(dim=32, num_heads=13, n_freqs=2, attention_window=3).eval()
    folder = model.save_pretrained(tmp_path / "saved", backbone="dinov2_tiny")
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    files = {n: folder / n for n in ("pytorch_model.bin", "config.json")}
    make_hf_cache(tmp_path / "hub", "someone/up", files)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    lr, image = torch.randn(1, 32, 4, 4), torch.rand(1, 3, 16, 16)
    for source in (folder, "someone/up"):
        got = load_upsampler(source)
        assert (got.config.num_heads, got.config.attention_window) == (13, 3), source
        assert (got.backbone, got.backbone_norm) == ("dinov2_tiny", model.backbone_norm)
        with torch.no_grad():
            assert torch.equal(got(lr, image), model(lr, image)), source


def test_save_pretrained_reads_a_home_folder_as_load_upsampler_does(tmp_path, monkeypatch):
    """save_pretrained(model, "~/mymodel") wrote ./~/mymodel, where load_upsampler("~/mymodel")
    does not look; a file's path was a raw FileExistsError from deep in the atomic write."""
    from loftup import load_upsampler

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    model.save_pretrained("~/mymodel")
    assert (tmp_path / "home" / "mymodel" / "model.safetensors").is_file()
    assert not (tmp_path / "~").exists()
    assert load_upsampler("~/mymodel").config == model.config
    (tmp_path / "file").write_text("mine")
    with pytest.raises(UsageError, match=r"writes a folder, but .*file is a file: pass a folder"):
        model.save_pretrained(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize("source", ["", "  "])
def test_an_empty_model_is_refused_not_read_as_the_current_folder(
    tmp_path, monkeypatch, capsys, source
):
    """An empty string (an unset $MODEL in `loftup upsample -m "$MODEL"`) is Path("."): the
    current folder was loaded, here an upsampler saved there, as though it had been named."""
    from loftup import load_upsampler
    from loftup.cli import main

    LoftUp(dim=8, num_heads=2, n_freqs=2).save_pretrained(tmp_path)
    monkeypatch.chdir(tmp_path)
    # (from Python: no -m "$MODEL", which the command line is told)
    said = r"source is empty or blank \(an unset variable or an empty string\?\)"
    with pytest.raises(UsageError, match=said):
        load_upsampler(source)
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (28, 28)).save(image)
    capsys.readouterr()
    assert main(["upsample", "-m", source, str(image), "-o", str(tmp_path / "o")]) == 2
    assert '-m is empty or blank (an unset variable, as in -m "$MODEL"?)' in capsys.readouterr().err


def test_a_snapshot_copied_without_its_blobs_is_said_so(tmp_path, monkeypatch):
    """`cp -r` of a snapshot folder of the Hugging Face cache copies its links, not the blobs
    they point to: it was said to hold no weights (expected model.safetensors + config.json).
    A snapshot in the cache whose blob was deleted was said to be such a copy, with cp -rL as
    the fix; a backup of the repo's cache folder outside HF_HUB_CACHE was said to be in the cache
    (loftup download, which cannot repair it)."""
    import shutil

    from hub_builders import make_hf_cache
    from loftup import WeightsNotFoundError, load_upsampler

    folder = LoftUp(dim=8, num_heads=2, n_freqs=2).save_pretrained(tmp_path / "saved")
    snap = make_hf_cache(tmp_path / "hub", "someone/up", {})
    for name in ("model.safetensors", "config.json"):  # as the cache lays them out: links
        blob = snap.parent.parent / "blobs" / name
        blob.parent.mkdir(exist_ok=True)
        shutil.copyfile(folder / name, blob)
        (snap / name).symlink_to(f"../../blobs/{name}")
    shutil.copytree(snap, tmp_path / "copied", symlinks=True)  # cp -r
    with pytest.raises(WeightsNotFoundError, match=r"copied without the blobs .* `cp -rL`"):
        load_upsampler(tmp_path / "copied")
    shutil.rmtree(tmp_path / "copied")
    shutil.copytree(snap, tmp_path / "copied")  # cp -rL: the files themselves
    assert load_upsampler(tmp_path / "copied").config.num_heads == 2
    # in the cache itself, a blob deleted (as a damaged download's fix says): no copy's fault
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    (snap.parent.parent / "blobs" / "model.safetensors").unlink()
    # a backup of the repo's cache folder elsewhere, the blob missing there too: `loftup
    # download` fills HF_HUB_CACHE and cannot repair it (it was told to run it)
    backup = tmp_path / "backup" / snap.parents[1].name
    shutil.copytree(snap.parents[1], backup, symlinks=True)
    with pytest.raises(WeightsNotFoundError, match=r"copied without the blobs .* `cp -rL`"):
        load_upsampler(backup / "snapshots" / snap.name)
    said = r"a blob missing from the Hugging Face cache .* run `loftup download someone/up`"
    (tmp_path / "linked").symlink_to(snap)  # a link to the snapshot: the same
    for source in (snap, tmp_path / "linked"):
        with pytest.raises(WeightsNotFoundError, match=said):
            load_upsampler(source)


@pytest.mark.parametrize("where", ["", "   ", "dangling", "dangling/sub", "afile/sub", "loop"])
def test_save_pretrained_refuses_a_path_where_no_folder_can_be(tmp_path, monkeypatch, where):
    """save_pretrained("") wrote into the current folder (which the load refuses as ""); a link
    to nothing as the folder was a raw FileExistsError, a file above it a NotADirectoryError;
    a link to itself was told to "make that folder". Each is a UsageError naming what is in the way, and nothing is written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "loop").symlink_to("loop")  # no folder can be made there: not "make that folder"
    said = {
        "": "directory is a folder's path",
        "   ": "directory is a folder's path",
        "dangling": "dangling is a link to .*gone, which does not exist",
        "dangling/sub": "dangling is a link to .*gone, which does not exist",
        "afile/sub": "afile is a file: pass a folder's path",
        "loop": "loop is a link to loop, which leads back to itself .*; remove the link or",
    }[where]
    with pytest.raises(UsageError, match=said):
        LoftUp(dim=8, num_heads=2, n_freqs=2).save_pretrained(where)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "dangling", "loop"]


def _read_only_folder(tmp_path) -> Path:
    """A folder that takes no new files from this user: one made read-only, or for root (who
    writes anywhere chmod forbids) sysfs's /sys/kernel, where Linux has it."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    folder = Path("/sys/kernel")
    try:
        os.close(os.open(folder / "loftup-check", os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError:
        return folder
    os.unlink(folder / "loftup-check")
    pytest.skip("no folder here takes no files from root")


@pytest.mark.parametrize("below", ["", "up/sub"])
def test_save_pretrained_refuses_a_read_only_folder_before_writing(tmp_path, below):
    """A read-only folder (or one above a folder to make) was a PermissionError's traceback from
    the first write, naming model.safetensors or the folder mkdir tried; it is a UsageError
    naming the folder that takes no files and the fix, and nothing is written."""
    folder = _read_only_folder(tmp_path)
    before = sorted(os.listdir(folder))
    target = folder / below if below else folder
    said = (
        f"save_pretrained's directory {target} cannot be written: {folder} takes no new files "
        r"\([^)]+\); choose another folder"
    )
    with pytest.raises(UsageError, match=said):
        LoftUp(dim=8, num_heads=2, n_freqs=2).save_pretrained(target)
    assert sorted(os.listdir(folder)) == before
