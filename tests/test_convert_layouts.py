"""Checkpoints a user's own code writes around a LoftUp (loftup.convert, hub/loading.py): read
with the heads they were trained with, or told that they could not be."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from loftup import CheckpointError, LoftUp, load_upsampler
from loftup.convert import native_to_reference


def _loads(path, **kw) -> tuple[LoftUp, list[str]]:
    """``load_upsampler(path, **kw)`` and the warnings it gave (torch < 2.6's warning of its
    pickle loader left out: said once a process, the first test to load a pickle got it)."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", "loading .*CVE-2025-32434")
        model = load_upsampler(path, **kw)
    return model, [str(w.message) for w in said]


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "safetensors"])
def test_loftups_own_state_dict_without_a_record_of_its_heads_is_said_read_with_4(tmp_path, wrap):
    """A 2-head LoftUp's state dict, saved bare or as {"state_dict": ...}, loaded with 4 heads
    and no word (outputs off by about 1): the heads are not in the weights' shapes. It warns,
    once, naming the call that reads it right; the paper's files (its 4 heads) do not."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    path = tmp_path / ("w.safetensors" if wrap == "safetensors" else "w.pt")
    if wrap == "safetensors":
        save_file(model.state_dict(), path)
    else:
        torch.save(
            model.state_dict() if wrap == "bare" else {"state_dict": model.state_dict()}, path
        )
    got, said = _loads(path)
    assert got.config.num_heads == 4 and len(said) == 1, said
    assert said[0].startswith(f"{path} holds a LoftUp's weights without a record of its "), said
    assert f"load_upsampler({str(path)!r}, num_heads=N)" in said[0]
    assert said[0].endswith("(the command line then takes that folder as -m)")  # no --num-heads
    assert _loads(path)[1] == []  # once
    right, said = _loads(path, num_heads=2)
    lr, image = torch.randn(1, 8, 4, 4), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert said == [] and torch.equal(right(lr, image), model(lr, image))
    # the paper's layout, and a loftup train checkpoint, whose model_config records the heads
    torch.save(native_to_reference(model.state_dict()), tmp_path / "hub.bin")
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict()}
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    assert _loads(tmp_path / "hub.bin")[1] == [] and _loads(tmp_path / "checkpoint.pt")[1] == []


def test_a_loftup_held_beside_other_weights_or_under_the_tutorials_key_loads(tmp_path, monkeypatch):
    """A LightningModule's checkpoint of self.upsampler beside a frozen self.backbone, a bare
    lit_module.state_dict() (upsampler.*), and PyTorch's tutorial's {"model_state_dict": ...}
    were refused as "training checkpoint has no channel norm", "fits no known LoftUp reference
    layout" or "entry 'model_state_dict' is a OrderedDict": each loads the LoftUp it holds. One
    of a model and its EMA copy is refused naming both, with a line that keeps one, which runs."""
    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    state = model.state_dict()

    def under(prefix: str) -> dict:
        return {prefix + k: v for k, v in state.items()}

    files = {
        "lightning": {"state_dict": {**under("upsampler."), "backbone.w": torch.ones(3)}},
        "bare": {**under("upsampler."), "backbone.embeddings.weight": torch.ones(4, 4)},
        "tutorial": {"model_state_dict": state, "optimizer_state_dict": {}, "epoch": 1},
        "ddp": {"model_state_dict": under("module.")},
    }
    lr, image, want = _each_loads_as(model, files, tmp_path)
    ema = {k: v + 1 for k, v in state.items() if v.is_floating_point()}
    torch.save({"state_dict": {**under("model."), **{"ema." + k: v for k, v in ema.items()}}},
               tmp_path / "two.pt")  # fmt: skip
    with pytest.raises(CheckpointError) as e:
        load_upsampler(tmp_path / "two.pt", num_heads=2)
    said = str(e.value)
    assert said.startswith(f"{tmp_path / 'two.pt'} holds 2 LoftUps, under 'ema.', 'model.': ")
    monkeypatch.chdir(tmp_path)
    got = load_upsampler(_run_told(said, "model."), num_heads=2)
    with torch.no_grad():
        assert torch.equal(got(lr, image), want)


def _each_loads_as(model: LoftUp, files: dict, folder: Path):
    """Save each of ``files`` (name -> checkpoint object) in ``folder`` and check that it
    loads (2 heads) as ``model``; the inputs and the output compared."""
    lr, image = torch.randn(1, 8, 4, 4), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        want = model(lr, image)
    for name, obj in files.items():
        torch.save(obj, folder / f"{name}.pt")
        got = load_upsampler(folder / f"{name}.pt", num_heads=2)
        with torch.no_grad():
            assert torch.equal(got(lr, image), want), name
    return lr, image, want


def _run_told(said: str, prefix: str) -> str:
    """Run the line the refusal ``said`` gives to keep the LoftUp under ``prefix``, as given
    (after ``import torch``); the file it writes."""
    line = said.split(f"for {prefix!r}: ")[1]
    exec("import torch; " + line, {})
    return eval(line.rsplit(", ", 1)[1].removesuffix(")"))  # torch.save's second argument


def test_the_line_that_keeps_one_of_two_loftups_keeps_its_record_and_writes_a_new_file(
    tmp_path, monkeypatch
):
    """The line told for a file of two LoftUps dropped loftup train's record beside "model"
    (model_config, backbone: the 2-head model was read with 4), read a safetensors file with
    torch.load (which torch 2.4 cannot), and wrote model_upsampler.pt in the current folder
    whatever the file, over what an earlier line had written there. Run as told, each keeps
    the record, reads the file as it was written, and writes a name no file has beside it."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    state = model.state_dict()
    both = {**state, **{"ema." + k: v + 1 for k, v in state.items()}}
    ckpt = {"model": both, "model_config": model.config.to_dict(), "backbone": "dinov2_tiny"}
    torch.save(ckpt, tmp_path / "run.pt")
    save_file(both, tmp_path / "two.safetensors")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    lr, image = torch.randn(1, 8, 4, 4), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        want = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
        want.load_state_dict({k.removeprefix("ema."): v for k, v in both.items() if "ema." in k})
        want = want(lr, image)
    written = []
    for name in ("run.pt", "two.safetensors", "run.pt"):
        with pytest.raises(CheckpointError) as e:
            load_upsampler(tmp_path / name)
        read_as_safetensors = '__import__("safetensors.torch")' in str(e.value)
        assert ("c = torch.load(" in str(e.value)) != read_as_safetensors
        assert read_as_safetensors == name.endswith(".safetensors")
        written.append(_run_told(str(e.value), "ema."))
    assert len(set(written)) == 3 and {Path(p).parent for p in written} == {tmp_path}
    for path in written:
        got, said = _loads(path, num_heads=None if path.startswith(str(tmp_path / "run")) else 2)
        with torch.no_grad():
            assert torch.equal(got(lr, image), want) and said == [], path
    got = load_upsampler(written[0])
    assert got.config.num_heads == 2 and got.backbone == "dinov2_tiny"


def test_the_heads_warning_is_once_a_file_not_once_a_name(tmp_path, monkeypatch):
    """The default heads' warning was kept by the name given: "w.pt" loaded in one folder,
    then "w.pt" of another folder (another file, its heads as unknown) said nothing, and one
    file loaded by its relative name and then its absolute one was warned of twice."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        torch.save(LoftUp(dim=8, num_heads=2, n_freqs=2).state_dict(), tmp_path / folder / "w.pt")
    monkeypatch.chdir(tmp_path / "a")
    assert len(_loads("w.pt")[1]) == 1
    assert _loads(tmp_path / "a" / "w.pt")[1] == []  # the same file
    monkeypatch.chdir(tmp_path / "b")
    said = _loads("w.pt")[1]
    assert len(said) == 1 and "without a record of its attention heads" in said[0], said


def test_a_folder_of_the_papers_weights_is_silent_and_one_of_loftups_warns(tmp_path):
    """The paper's hub snapshot (a folder of its pytorch_model.bin, 4 heads) warned that its
    heads were not recorded ("if it was trained with another number its features are wrong"):
    the folder's file was not looked at, an empty dict taken for loftup's layout. It is
    silent, as the file given alone is, beside a backbone's config.json too; a folder of
    loftup's own state dict without a record warns, as its file does."""
    import json

    from loftup.convert import in_own_layout

    assert not in_own_layout({})
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    paper, own, other = tmp_path / "paper", tmp_path / "own", tmp_path / "beside"
    for folder in (paper, own, other):
        folder.mkdir()
    torch.save(native_to_reference(model.state_dict()), paper / "pytorch_model.bin")
    torch.save(native_to_reference(model.state_dict()), other / "pytorch_model.bin")
    (other / "config.json").write_text(json.dumps({"model_type": "dinov2", "hidden_size": 8}))
    torch.save(model.state_dict(), own / "pytorch_model.bin")
    for folder in (paper, other):
        assert _loads(folder)[1] == [] and _loads(folder / "pytorch_model.bin")[1] == []
    said = _loads(own)[1]
    assert len(said) == 1 and "without a record of its attention heads" in said[0], said


@pytest.mark.parametrize("holder", ["model", "state_dict"])
def test_the_line_that_keeps_one_of_two_loftups_runs_with_a_key_that_is_no_name(tmp_path, holder):
    """A number among the keys of a file of two LoftUps (left out by the load, as the other
    modules' weights are) made the line told to keep one an AttributeError when run as told
    ('int' object has no attribute 'startswith'): it is left out there too, and the file
    written loads as the LoftUp kept."""
    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    state = model.state_dict()
    both = {**{"up." + k: v for k, v in state.items()}, 7: torch.zeros(1)}
    both |= {"up.ema." + k: v + 1 for k, v in state.items()}
    torch.save({holder: both}, tmp_path / "two.pt")
    with pytest.raises(CheckpointError) as e:
        load_upsampler(tmp_path / "two.pt")
    got = load_upsampler(_run_told(str(e.value), "up.ema."), num_heads=2)
    want = {k: v + 1 for k, v in state.items()}
    assert all(torch.equal(v, want[k]) for k, v in got.state_dict().items())


def test_the_loftup_is_found_under_the_key_that_holds_it_and_two_of_them_are_refused(
    tmp_path, monkeypatch
):
    """An EMA copy saved alone ({"ema": ...}, timm's {"model_ema": ...}) was refused as "entry
    'ema' is a OrderedDict, not a tensor; this is not a LoftUp state dict", and a LoftUp under
    "state_dict" beside a "model" of something else (a config's dict, a backbone's weights) as
    "no weight 'channel_norm.weight', so this is not a LoftUp checkpoint": "model" was read
    because it came first. Each loads the LoftUp it holds. Two LoftUps of other weights under
    "model" and "state_dict" loaded the first, silently: refused naming both, with a line that
    keeps one, which runs; one state dict saved under both keys loads."""
    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    state = model.state_dict()
    other = {k: v + 1 for k, v in state.items() if v.is_floating_point()}
    lit = {"net." + k: v for k, v in state.items()}  # a LightningModule's self.net
    files = {
        "ema": {"ema": state, "step": 3},
        "model_ema": {"model_ema": state, "epoch": 1},
        "config": {"model": {"name": "loftup", "dim": 8}, "state_dict": state},
        "backbone": {"model": {"embeddings.weight": torch.ones(4, 4)}, "state_dict": state},
        "twice": {"model": state, "state_dict": dict(state)},
        "ddp": {"model": state, "state_dict": {"module." + k: v for k, v in state.items()}},
        "lit": {"model": state, "state_dict": {**lit, "backbone.w": torch.ones(3)}},
    }
    lr, image, want = _each_loads_as(model, files, tmp_path)
    torch.save({"model": other, "state_dict": state}, tmp_path / "two.pt")
    with pytest.raises(CheckpointError) as e:
        load_upsampler(tmp_path / "two.pt", num_heads=2)
    said = str(e.value)
    assert said.startswith(f"{tmp_path / 'two.pt'} holds 2 LoftUps of other weights, under its ")
    assert "keys 'model', 'state_dict': " in said
    monkeypatch.chdir(tmp_path)
    got = load_upsampler(_run_told(said, "state_dict"), num_heads=2)
    with torch.no_grad():
        assert torch.equal(got(lr, image), want)


def test_two_loftups_under_other_keys_are_refused_with_a_line_that_runs(tmp_path, monkeypatch):
    """A student and its EMA teacher saved under keys of their own, neither a holder's name,
    are refused naming both (one alone is read), with a line that keeps one, whose file is
    named after its key (a slash and a space in it made safe) and loads as that LoftUp."""
    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    state = model.state_dict()
    other = {k: v + 1 for k, v in state.items() if v.is_floating_point()}
    torch.save({"student": other, "ema/teacher w": state, "step": 1}, tmp_path / "two.pt")
    with pytest.raises(CheckpointError) as e:
        load_upsampler(tmp_path / "two.pt", num_heads=2)
    said = str(e.value)
    assert "holds 2 LoftUps of other weights, under its keys 'student', 'ema/teacher w': " in said
    monkeypatch.chdir(tmp_path)
    written = _run_told(said, "ema/teacher w")
    assert written == str(tmp_path / "two.ema_teacher_w.weights.pt")
    _each_loads_as(model, {"kept": torch.load(written, weights_only=True)}, tmp_path)
