"""The training loader: its workers, their timeout, and what a stuck one says."""

import multiprocessing
import os
import signal

import pytest
import torch

from loftup.data.dataset import StepSampler
from loftup.errors import LoftUpError
from loftup.train.loader import batches, make_loader, training_data
from train_fixtures import tiny_config as tiny
from train_fixtures import write_sa1b

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

CPU = torch.device("cpu")


def _loader(cfg):
    dataset = training_data(cfg, CPU)
    sampler = StepSampler(len(dataset), global_batch=cfg.batch_size, steps=2, seed=0)
    return make_loader(dataset, sampler, cfg, CPU, main=True)


def test_a_stuck_data_worker_is_an_error_naming_the_folder_and_the_fix(tmp_path):
    """A worker that never gives its batch (a file on a stalled network disk; here every JSON
    is a named pipe that no one writes) hung training for ever. After data.timeout seconds
    the run stops with one line naming the folder and the fix, and the stuck worker is gone:
    it ignores SIGTERM, and left alive the interpreter's exit would wait on it for ever."""
    data = write_sa1b(tmp_path / "sa1b", 4, size=56)
    for ann in data.glob("*.json"):
        ann.unlink()
        os.mkfifo(ann)
    cfg = tiny(data, tmp_path / "run", 1, 2, "data.num_workers=1", "data.timeout=1")

    def hung(*_):
        raise TimeoutError("the loader hung on its stuck worker")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        with pytest.raises(LoftUpError) as e:
            next(batches(_loader(cfg), cfg.data.root))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        alive = multiprocessing.active_children()
        for p in alive:
            p.kill()
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("no batch came from the data-loading workers in 1 s (data.timeout)")
    assert f"stuck reading a file under {data}" in message
    assert "run with data.num_workers=0 to read in the main process" in message
    assert not alive


def test_the_timeout_is_given_to_workers_only(tmp_path):
    """PyTorch takes no timeout without workers (its single-process iterator asserts none):
    data.timeout applies where workers read, and num_workers=0 reads as before."""
    data = write_sa1b(tmp_path / "sa1b", 4, size=56)
    cfg = tiny(data, tmp_path / "run", 1, 2, "data.timeout=7")
    loader = _loader(cfg)
    assert (loader.num_workers, loader.timeout) == (0, 0)
    assert next(batches(loader, cfg.data.root))["image"].shape == (4, 3, 56, 56)
    assert _loader(tiny(data, tmp_path / "run", 1, 2, "data.num_workers=1")).timeout == 600
