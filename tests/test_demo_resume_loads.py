"""`loftup demo --resume` reads each stage's training checkpoint in full once: the command's
"nothing to resume" look, the demo's up-front check of the folder and each stage's training
loaded every checkpoint.pt in full (three loads each). The up-front check now maps its tensors
(it needs their config, step and history) and the training loads it, its folder locked."""

from __future__ import annotations

from pathlib import Path

import pytest

from loftup.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

ARGV = ["--size", "8", "--train-scenes", "4", "--val-scenes", "2", "--stage1-steps", "1"]
ARGV += ["--stage2-steps", "1", "--probe-epochs", "1"]


def test_a_demo_resume_loads_each_checkpoint_in_full_once(tmp_path, monkeypatch):
    import loftup.hub

    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), *ARGV]
    assert main(argv) == 0
    (out / "report.json").unlink()  # both stages' checkpoints there: a demo to go on with
    real, reads = loftup.hub.torch_load, []

    def recorded(path, **kw):  # loftup's one loader of torch files, called through
        if Path(path).name == "checkpoint.pt":
            reads.append((Path(path).parent.name, "mapped" if kw.get("mmap") else "full"))
        return real(path, **kw)

    monkeypatch.setattr(loftup.hub, "torch_load", recorded)
    assert main([*argv, "--resume"]) == 0
    assert (out / "report.json").is_file()
    # both stages checked before stage 1 trains on (a refusal of stage 2's comes first), then
    # each loaded by its training
    assert reads == [
        ("stage1", "mapped"),
        ("stage2", "mapped"),
        ("stage1", "full"),
        ("stage2", "full"),
    ]


def test_a_checkpoint_is_read_whole_where_its_file_cannot_be_mapped(tmp_path, monkeypatch):
    """A file system that maps no files (some FUSE mounts): the look reads it as a load does,
    not refuses a good checkpoint as corrupt."""
    import torch

    from loftup.train.checkpoint import load_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path / "checkpoint.pt", {"step": 3, "w": torch.arange(4.0)})

    def unmappable(*args, **kwargs):
        raise OSError(19, "No such device")  # ENODEV, mmap's error there

    monkeypatch.setattr(torch.UntypedStorage, "from_file", unmappable)
    with pytest.raises(OSError):  # what torch's mapped load meets here
        torch.load(path, weights_only=True, mmap=True)
    ckpt = load_checkpoint(path, mapped=True)
    assert ckpt["step"] == 3 and ckpt["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
