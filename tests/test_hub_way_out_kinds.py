"""The way out's line for the files its first rules told wrongly: a LoftUp inside a module of
one's own or a DataParallel (its config kept), a state dict of loftup's layout under
"state_dict", a user repo's file of the Hugging Face cache (no download loop, the copy written
outside the cache); and the walk of a crafted pickle given up at its caps, early."""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import zipfile

import pytest
import torch
from torch import nn

from loftup import LoftUp, load_upsampler
from loftup.hub import pickle_plain, pickle_walk
from loftup.hub.pickle_walk import OPS_CAP, PICKLE_CAP, Walk, WalkCapped
from test_hub_way_out import GENERAL, same_upsampler, told


class Wrapper(nn.Module):
    """A module of one's own holding the upsampler (module level: pickled by name)."""

    def __init__(self, upsampler: LoftUp):
        super().__init__()
        self.upsampler, self.head = upsampler, nn.Linear(2, 2)


@pytest.mark.parametrize(
    "saved, kept",
    [
        (Wrapper, ".upsampler).state_dict()"),
        (nn.DataParallel, ".module).state_dict()"),
        (lambda m: {"model": Wrapper(m)}, '["model"].upsampler).state_dict()'),
    ],
    ids=["own-module", "dataparallel", "own-module-under-model"],
)
def test_a_loftup_inside_a_module_is_kept_with_its_config(tmp_path, saved, kept):
    """Any module was told its .state_dict(): one of one's own holding the upsampler gave
    'upsampler.channel_norm.weight' keys that fit no LoftUp layout, a DataParallel's lost the
    heads (4 read for 2: other outputs). The LoftUp among its modules is kept with its config."""
    upsampler = LoftUp(dim=8, n_freqs=2, num_heads=2, attention_window=3).eval()
    torch.save(saved(upsampler), tmp_path / "w.pt")
    _, line, out = told(tmp_path / "w.pt")
    assert kept in line and '"model_config": m.config.to_dict()' in line
    exec(line, {"torch": torch})
    same_upsampler(load_upsampler(out), upsampler)


def test_a_state_dict_of_loftups_layout_under_state_dict_is_kept_alone(tmp_path):
    """{"state_dict": model.state_dict(), "args": ...} was told {"state_dict": ...}, which
    loftup reads as the paper's training layout and refused ("no channel norm"); its keys are
    loftup's own: the state dict is kept alone, and loads."""
    upsampler = LoftUp(dim=8, n_freqs=2).eval()
    obj = {"state_dict": upsampler.state_dict(), "args": argparse.Namespace(lr=1)}
    torch.save(obj, tmp_path / "s.pt")
    _, line, out = told(tmp_path / "s.pt")
    assert line.startswith("torch.save(torch.load(") and '["state_dict"], ' in line
    exec(line, {"torch": torch})
    same_upsampler(load_upsampler(out), upsampler)


def test_a_user_repos_cached_file_is_told_the_way_out_not_a_download(tmp_path, monkeypatch):
    """A file of one's own hub repo in the cache was told "a damaged download ... run `loftup
    download alice/my-loftup`", which fetches the same file: a loop. It is told the way out,
    its copy written in the current folder (the cache is no place for it)."""
    snapshot = tmp_path / "hub" / "models--alice--my-loftup" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    upsampler = LoftUp(dim=8, n_freqs=2).eval()
    torch.save(
        {"model": upsampler.state_dict(), "args": argparse.Namespace(a=1)}, snapshot / "m.pt"
    )
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    msg, line, out = told(snapshot / "m.pt")
    assert "loftup download" not in msg
    assert out == str(tmp_path / "work" / "m.weights.pt")
    exec(line, {"torch": torch})
    assert torch.equal(load_upsampler(out).stem.conv1.weight, upsampler.stem.conv1.weight)
    assert sorted(p.name for p in snapshot.iterdir()) == ["m.pt"]


def _zip_of(pkl: bytes) -> bytes:
    """A torch zip archive whose data.pkl is ``pkl``, stored (as torch.save stores it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def _capped() -> bytes:
    """A pickle that names os.system, then pushes a None past the walk's cap on opcodes (each
    kept on the stack: the cap on opcodes bounds the objects kept too, one an opcode at most)."""
    pkl = b"\x80\x02cos\nsystem\n" + b"N" * OPS_CAP + b"."
    assert len(pkl) < PICKLE_CAP
    return pkl


def test_a_crafted_pickle_is_given_up_at_the_walks_cap(monkeypatch):
    """A file of 8 KB whose pickle names os.system, then pushes 8,000,000 Nones, was walked
    whole (31 s, 1.7 GB): the walk stops at its cap on opcodes (4 million, some 8 s; here a
    cap of 100,000, the same check at a fortieth of its time: the real cap's own margin is
    test_the_caps_leave_a_wide_margin_for_real_checkpoints')."""
    cap = 100_000
    monkeypatch.setattr(pickle_walk, "OPS_CAP", cap)
    with pytest.raises(WalkCapped) as e:
        Walk(io.BytesIO(b"\x80\x02cos\nsystem\n" + b"N" * cap * 2 + b".")).next()
    assert (e.value.what, e.value.ops) == ("opcodes", cap + 1)


@pytest.mark.slow
def test_a_file_past_the_walks_cap_is_told_the_general_words(tmp_path):
    (tmp_path / "b.pt").write_bytes(_zip_of(_capped()))
    _, line, _ = told(tmp_path / "b.pt")
    assert line.startswith(GENERAL)


def test_the_caps_leave_a_wide_margin_for_real_checkpoints():
    """A LoftUp of C=768 saved whole, and a training checkpoint with its optimiser's state,
    are walked within a tenth of the caps (the lines for them told, not the general words)."""
    upsampler = LoftUp(dim=768)
    weights = list(upsampler.parameters())  # an AdamW's state: two tensors and a step each
    state = {
        i: {"step": torch.tensor(1.0), "exp_avg": w, "exp_avg_sq": w} for i, w in enumerate(weights)
    }
    adam = {"state": state, "param_groups": [{"lr": 1e-4, "params": list(range(len(weights)))}]}
    lightning = {"state_dict": upsampler.state_dict(), "optimizer_states": [adam], "epoch": 3}
    for obj in (upsampler, lightning):
        saved = io.BytesIO()
        torch.save(obj, saved)
        pkl = zipfile.ZipFile(saved).read("archive/data.pkl")
        walk = Walk(io.BytesIO(pkl))
        assert walk.next().kind in ("made", "dict")
        assert walk.ops < OPS_CAP // 10 and len(pkl) < PICKLE_CAP // 10


def test_other_results_are_one_object():
    """Each number, None or bool was a new object kept: all are the one OTHER now."""
    top = Walk(io.BytesIO(pickle.dumps([1, None, 2.5, True], protocol=2))).next()
    assert top.kind == "seq" and all(t is pickle_walk.OTHER for t in top.extra)


class _OrderedOf:
    """Pickled as OrderedDict(items): a dict whose items come in its call's arguments."""

    def __init__(self, items):
        self.items_ = items

    def __reduce__(self):
        return collections.OrderedDict, (self.items_,)


@pytest.mark.parametrize(
    "items, is_plain",
    [([("a", argparse.Namespace(a=1))], False), ([("a", (1, "b"))], True)],
    ids=["object", "plain"],
)
def test_an_ordered_dict_made_of_arguments_is_looked_into(items, is_plain):
    """An OrderedDict whose items came in its call's arguments was an empty, plain dict: a
    record built so, holding objects, was told a line whose file is refused again."""
    pkl = pickle.dumps({"model_config": _OrderedOf(items)}, protocol=2)
    top = Walk(io.BytesIO(pkl)).next()
    assert pickle_plain.plain(top.items["model_config"]) is is_plain


def _numpy(state: dict) -> dict:
    return {k: v.numpy() for k, v in state.items()}


@pytest.mark.parametrize(
    "saved",
    [
        lambda m: {"state_dict": _numpy(m.state_dict()), "epoch": 3},
        lambda m: {"model": _numpy(m.state_dict()), "model_config": m.config.to_dict()},
        lambda m: {"model": _numpy(m.state_dict())},
    ],
    ids=["state-dict", "train-layout", "model-alone"],
)
def test_weights_held_as_numpy_arrays_are_made_tensors(tmp_path, saved):
    """Weights held as numpy arrays were told a line that kept them so: its file was refused
    again, and told another line (a loop). The line makes them tensors; its file loads."""
    upsampler = LoftUp(dim=8, n_freqs=2, num_heads=2).eval()
    torch.save(saved(upsampler), tmp_path / "n.pt")
    _, line, out = told(tmp_path / "n.pt")
    assert "torch.as_tensor(v)" in line
    exec(line, {"torch": torch})
    loaded = load_upsampler(out)
    assert torch.equal(loaded.stem.conv1.weight, upsampler.stem.conv1.weight)


def test_weights_among_other_objects_are_told_in_general_words(tmp_path):
    """A state dict holding an object beside its tensors: no line keeps it surely."""
    state = {**LoftUp(dim=8, n_freqs=2).state_dict(), "note": argparse.Namespace(a=1)}
    torch.save({"state_dict": state}, tmp_path / "o.pt")
    _, line, _ = told(tmp_path / "o.pt")
    assert line.startswith(GENERAL)
