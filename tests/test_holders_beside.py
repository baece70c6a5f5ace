"""A LoftUp under a holder key (loftup.holders.HOLDERS) with another of other weights beside it
under a key of its own (an EMA copy saved beside its model): the holder's loads, and a warning
says so once, with a line that keeps the other, which runs as pasted."""

from __future__ import annotations

import warnings

import pytest
import torch

from loftup import LoftUp, load_upsampler
from processes import run_python


def _loads(path, **kw) -> tuple[LoftUp, list[str]]:
    """``load_upsampler(path, **kw)`` and the warnings of other weights beside it that it gave."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        model = load_upsampler(path, **kw)
    return model, [str(w.message) for w in said if "of other weights" in str(w.message)]


def _model_and_other() -> tuple[LoftUp, dict, dict]:
    """A 2-head LoftUp, its state dict, and a state dict of other weights (an EMA copy's)."""
    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    state = model.state_dict()
    return model, state, {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}


def _same_weights(model: LoftUp, state: dict) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "holder, other",
    [("model", "ema"), ("model_state_dict", "ema_state_dict"), ("state_dict", "ema")],
)
def test_another_loftup_beside_the_holders_is_said_once_with_a_line_that_keeps_it(
    tmp_path, holder, other
):
    """{"model": a, "ema": b} (and the tutorial's, and Lightning's key, beside an EMA copy)
    loaded a with no word of b. It still loads a (the usual convention), and warns once per
    file, naming b's key, with a line that, pasted into Python, writes a file that loads b."""
    _, state, ema = _model_and_other()
    path = tmp_path / "run.pt"
    torch.save({holder: state, other: ema, "epoch": 3}, path)
    got, said = _loads(path, num_heads=2)
    assert _same_weights(got, state) and len(said) == 1, said
    assert said[0].startswith(
        f"{path} holds, beside the LoftUp under its key {holder!r} (the one loaded), a LoftUp "
        f"of other weights under its key {other!r} (an EMA copy?): "
    )
    assert _loads(path, num_heads=2)[1] == []  # once a file and process
    line = said[0].split(f"for {other!r}: ", 1)[1]
    ran = run_python("import torch; " + line)
    assert ran.returncode == 0, ran.stderr
    written = eval(line.rsplit(", ", 1)[1].removesuffix(")"))  # torch.save's second argument
    assert written == str(tmp_path / f"run.{other}.weights.pt")
    kept, said = _loads(written, num_heads=2)
    assert _same_weights(kept, ema) and said == []


def test_the_line_for_an_ema_copy_beside_loftups_layout_keeps_its_record(tmp_path):
    """Beside "model" and its record (model_config: 2 heads), two other LoftUps: both named,
    and the line kept the record for the last, whose file loads with its heads untold."""
    model, state, ema = _model_and_other()
    path = tmp_path / "run.pt"
    record = {"model_config": model.config.to_dict()}
    torch.save({"model": state, **record, "ema": ema, "swa": dict(ema)}, path)
    said = _loads(path)[1]
    assert len(said) == 1 and "LoftUps of other weights under its keys 'ema', 'swa' " in said[0]
    ran = run_python("import torch; " + said[0].split("for 'swa': ", 1)[1])
    assert ran.returncode == 0, ran.stderr
    kept = load_upsampler(tmp_path / "run.swa.weights.pt")
    assert kept.config.num_heads == 2 and _same_weights(kept, ema)


def test_one_state_dict_saved_twice_is_not_said(tmp_path):
    """An EMA copy of the same weights ({"state_dict": a, "state_dict_ema": a copy}: the EMA
    not yet started) is no other model: nothing is said."""
    _, state, _ = _model_and_other()
    same = {k: v.clone() for k, v in state.items()}
    torch.save({"state_dict": state, "state_dict_ema": same}, tmp_path / "w.pt")
    got, said = _loads(tmp_path / "w.pt", num_heads=2)
    assert said == [] and _same_weights(got, state)


def test_loftup_trains_checkpoint_with_its_teacher_is_not_said(tmp_path):
    """loftup train's checkpoint.pt, as the run writes it: its "teacher" (stage 2's EMA) beside
    "model" is documented (the student loads, the teacher is final_teacher/): not warned of,
    though its weights are other."""
    from loftup.train.build import build_optimizer, checkpoint_payload
    from loftup.train.checkpoint import save_checkpoint
    from loftup.train.ema import EMATeacher
    from loftup.train.objectives import Trainee
    from train_fixtures import tiny_config

    cfg = tiny_config(tmp_path, tmp_path / "out", 2)
    torch.manual_seed(0)
    student = LoftUp(dim=8, depth=1, num_heads=2, n_freqs=4)
    r = cfg.recon
    trainee = Trainee(student, patch=14, dropout=r.dropout, blur=r.blur, uncertainty=False)
    teacher = EMATeacher(student, beta=cfg.stage2.ema_beta, every=cfg.stage2.ema_every)
    with torch.no_grad():
        for p in student.parameters():  # the student moved on since the teacher's copy
            p.add_(1)
    optimizer = build_optimizer(cfg, trainee.parameters())
    payload = checkpoint_payload(cfg, trainee, optimizer, teacher, 2, [], 0, 4)
    path = save_checkpoint(tmp_path / "checkpoint.pt", payload)
    got, said = _loads(path)
    assert said == [] and _same_weights(got, student.state_dict())
    assert not _same_weights(got, teacher.state_dict())  # other weights, left unsaid


def test_a_copy_in_the_papers_training_layout_is_read_as_its_model_is(tmp_path, reference_state):
    """The paper's training checkpoint ({"state_dict": upsampler.* and model.1.norm.*}) with
    an EMA copy of the same weights beside it: the copy was read alone, as no training
    checkpoint (its channel norm unread), so taken for other weights and warned of. Read as
    the one loaded is, it is said only where its weights are other; its line wrote it under
    its own key, a file that did not load ("fits no known LoftUp reference layout"): now
    under the loaded one's, read as that one is."""
    norm = "channelnorm.norm."
    train = {k.replace(norm, "model.1.norm.") if k.startswith(norm) else k: v
             for k, v in reference_state.items()}  # fmt: skip
    same = {k: v.clone() for k, v in train.items()}
    torch.save({"state_dict": train, "ema": same, "epoch": 3}, tmp_path / "same.ckpt")
    assert _loads(tmp_path / "same.ckpt")[1] == []
    other = {**same, "model.1.norm.weight": same["model.1.norm.weight"] + 1}
    torch.save({"state_dict": train, "ema": other}, tmp_path / "other.ckpt")
    said = _loads(tmp_path / "other.ckpt")[1]
    assert len(said) == 1 and "a LoftUp of other weights under its key 'ema' " in said[0]
    line = said[0].split("for 'ema': ", 1)[1]
    ran = run_python("import torch; " + line)
    assert ran.returncode == 0, ran.stderr
    kept, said = _loads(tmp_path / "other.ema.weights.pt")
    assert torch.equal(kept.channel_norm.weight, other["model.1.norm.weight"]) and said == []


def test_copies_beside_the_holder_are_read_once_and_judged_once_a_file(tmp_path, monkeypatch):
    """{"model": a, "ema": copy of a, "swa": copy of a} (separate tensors, the same values):
    a's weights were converted again for each copy beside them, and, nothing said, each load
    converted and compared them all again. a is read once now, and a file judged is not read
    again until it is written again (then judged anew: an EMA copy of other weights is said)."""
    import os

    import loftup.convert
    import loftup.holders

    _, state, other = _model_and_other()
    path = tmp_path / "run.pt"
    copies = {k: {n: v.clone() for n, v in state.items()} for k in ("ema", "swa")}
    torch.save({"model": state, **copies}, path)
    read, to_native = [], loftup.convert.to_native

    def counted(obj, origin, fix=None):
        read.extend(obj)
        return to_native(obj, origin, fix)

    monkeypatch.setattr(loftup.convert, "to_native", counted)
    monkeypatch.setattr(loftup.holders, "_SETTLE_NS", 0)  # (as if written a while ago)
    got, said = _loads(path, num_heads=2)
    assert _same_weights(got, state) and said == []
    assert len(read) == 3, read  # (was 4: "model" read again for "swa")
    read.clear()
    assert _loads(path, num_heads=2)[1] == [] and read == []  # (was 3 more)
    torch.save({"model": state, "ema": other, "swa": copies["swa"]}, path)  # written again
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # (a later write's time)
    said = _loads(path, num_heads=2)[1]
    assert len(said) == 1 and "of other weights under its key 'ema' (an EMA" in said[0], said


def test_a_file_written_again_at_its_size_and_time_is_judged_anew(tmp_path, monkeypatch):
    """{"model": a, "ema": a copy}, loaded, then written again in place with an EMA copy of
    other weights, the same size, within the same tick of its file system's clock (a second on
    some: its time set back here): its stamp (name, size, mtime, inode) was the same, so the
    copy was never said. A file judged so soon after its write is judged again; one judged
    later, whose bytes a copy that keeps its source's time replaced (``cp -p``), is told by
    its change time."""
    import os
    import shutil

    import loftup.holders

    _, state, other = _model_and_other()
    path = tmp_path / "run.pt"
    same, other = ({k: v.clone() for k, v in s.items()} for s in (state, other))
    torch.save({"model": state, "ema": same}, path)
    st = os.stat(path)
    assert _loads(path, num_heads=2)[1] == []
    torch.save({"model": state, "ema": other}, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # (written within the same tick)
    assert os.stat(path)[1:7] == st[1:7]  # the same inode, device, size
    said = _loads(path, num_heads=2)[1]
    assert len(said) == 1 and "under its key 'ema' (an EMA" in said[0], said
    monkeypatch.setattr(loftup.holders, "_SETTLE_NS", 0)  # judged long after its write
    for name, ema in (("a", same), ("b", other)):  # (names of one length: the zip holds them)
        torch.save({"model": state, "ema": ema}, tmp_path / f"{name}.pt")
        os.utime(tmp_path / f"{name}.pt", ns=(0, 10**18))  # the same time
    shutil.copy2(tmp_path / "a.pt", path)  # cp -p, in place
    assert _loads(path, num_heads=2)[1] == []
    st = os.stat(path)
    shutil.copy2(tmp_path / "b.pt", path)
    assert os.stat(path)[1:7] == st[1:7] and os.stat(path).st_mtime_ns == st.st_mtime_ns
    said = _loads(path, num_heads=2)[1]
    assert len(said) == 1 and "under its key 'ema' (an EMA" in said[0], said


def test_what_no_file_holds_is_judged_each_time_and_a_file_once_under_any_name(
    tmp_path, monkeypatch
):
    """to_native(obj, "checkpoint") of what was read from memory (a BytesIO's torch.load):
    the name, no file's, was all the verdict was kept by, so another object of that name,
    its EMA copy of other weights, was never said. A file is known by its inode: loaded again
    by another name (a link, a relative path), it was warned of again."""
    import os

    import loftup.holders
    from loftup.hub import to_native

    _, state, other = _model_and_other()
    same = {k: v.clone() for k, v in state.items()}
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        to_native({"model": state, "ema": same}, "checkpoint")
        to_native({"model": state, "ema": other}, "checkpoint")
    assert [str(w.message)[:36] for w in said] == ["checkpoint holds, beside the LoftUp "]
    monkeypatch.setattr(loftup.holders, "_SETTLE_NS", 0)  # (as if written a while ago)
    torch.save({"model": state, "ema": other}, tmp_path / "run.pt")
    os.symlink(tmp_path / "run.pt", tmp_path / "link.pt")
    assert len(_loads(tmp_path / "run.pt", num_heads=2)[1]) == 1
    assert _loads(tmp_path / "link.pt", num_heads=2)[1] == []


def test_the_line_for_a_file_in_a_folder_not_writable_writes_in_the_current_one(
    tmp_path, monkeypatch
):
    """A checkpoint on a read-only mount (shared checkpoints): the line that keeps the other
    LoftUp wrote beside it, so pasted it was a PermissionError. It writes in the current
    folder, as for a file of the Hugging Face cache. (Here the folder is told not writable:
    root writes in any folder of the tests' file system.)"""
    import os

    shared, here = tmp_path / "shared", tmp_path / "here"
    for folder in (shared, here):
        folder.mkdir()
    _, state, ema = _model_and_other()
    torch.save({"model": state, "ema": ema}, shared / "run.pt")
    access = os.access

    def read_only(path, mode, **kw):
        return not (os.fspath(path) == str(shared) and mode & os.W_OK) and access(path, mode, **kw)

    monkeypatch.setattr(os, "access", read_only)
    monkeypatch.chdir(here)
    said = _loads(shared / "run.pt", num_heads=2)[1]
    assert len(said) == 1 and said[0].endswith(f"{str(here / 'run.ema.weights.pt')!r})"), said
