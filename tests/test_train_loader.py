"""The training loader: its workers, their timeout, and what a stuck one says."""

import multiprocessing
import os
import re
import signal
import time

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
    the run stops with one line naming the file the worker is stuck on and the fix, and the
    stuck worker is gone:
    it ignores SIGTERM, and left alive the interpreter's exit would wait on it for ever."""
    data = write_sa1b(tmp_path / "sa1b", 4, size=56)
    cfg = tiny(data, tmp_path / "run", 1, 2, "data.num_workers=1", "data.timeout=1")
    loader = _loader(cfg)  # listed while the JSONs are files (a pipe is passed over)
    for ann in data.glob("*.json"):
        ann.unlink()
        os.mkfifo(ann)

    def hung(*_):
        raise TimeoutError("the loader hung on its stuck worker")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        with pytest.raises(LoftUpError) as e:
            next(batches(loader, cfg.data.root))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        alive = multiprocessing.active_children()
        for p in alive:
            p.kill()
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("no batch came from the data-loading workers in 1 s (data.timeout)")
    assert re.search(
        rf"worker 0 has been reading {re.escape(str(data))}/sa_\d+\.json for \d+ s \(", message
    )
    assert "raise data.timeout (0: wait for ever) if the files are only slow" in message
    assert not alive


def test_without_workers_a_stuck_read_is_an_error_naming_the_file(tmp_path):
    """With data.num_workers=0 the main process read with no timeout: a file on a stalled
    network disk hung the run for ever, saying nothing (PyTorch takes no timeout without
    workers). It reads in a thread, waited on data.timeout seconds: then one line names the
    file and the fix. Readable files give the batches that the main process would read."""
    data = write_sa1b(tmp_path / "sa1b", 4, size=56)
    cfg = tiny(data, tmp_path / "run", 1, 2, "data.timeout=7")
    loader = _loader(cfg)
    assert (loader.num_workers, loader.timeout) == (0, 0)
    direct = torch.utils.data.DataLoader(
        loader.dataset.dataset, batch_sampler=loader.batch_sampler, collate_fn=loader.collate_fn
    )
    for got, want in zip(batches(loader, cfg.data.root), direct, strict=True):
        assert torch.equal(got["image"], want["image"]) and torch.equal(got["masks"], want["masks"])
    assert _loader(tiny(data, tmp_path / "run", 1, 2, "data.num_workers=1")).timeout == 600

    loader = _loader(tiny(data, tmp_path / "run", 1, 2, "data.timeout=1"))
    os.unlink(data / "sa_2.json")  # after the listing, which passes over a pipe
    os.mkfifo(data / "sa_2.json")  # no one writes it: open() waits for ever
    started = time.monotonic()
    with pytest.raises(LoftUpError) as e, batches(loader, str(data)) as feed:
        list(feed)
    assert time.monotonic() - started < 30
    message = str(e.value)
    assert "\n" not in message and message.startswith("reading item ")
    json = re.escape(str(data / "sa_2.json"))
    said = rf"took over 1 s \(data.timeout\): {json} has been read for [01] s \("
    assert re.search(said, message), message
    assert "raise data.timeout (0: wait for ever)" in message


def test_a_worker_killed_while_the_step_runs_is_one_line_naming_its_file(tmp_path):
    """A data worker killed by the system (out of host memory) while the main process runs a
    step: PyTorch's SIGCHLD handler raised its RuntimeError in the middle of the step, which the
    command line showed as a traceback, naming no file. Now it is one line naming the file the
    worker was reading and the fix, and the loader's workers are shut down."""
    data = write_sa1b(tmp_path / "sa1b", 8, size=56)
    cfg = tiny(data, tmp_path / "run", 1, 2, "data.num_workers=1", "data.timeout=60")
    loader = _loader(cfg)
    second = list(loader.batch_sampler)[1]
    for i in second:  # the second step's masks hang the worker (a stalled disk), until killed
        (data / f"sa_{i}.json").unlink()
        os.mkfifo(data / f"sa_{i}.json")
    dataset, others = loader.dataset, set(multiprocessing.active_children())
    with pytest.raises(LoftUpError) as e, batches(loader, str(data)) as feed:
        next(feed)
        [worker] = set(multiprocessing.active_children()) - others
        stuck = str(data / f"sa_{second[0]}.json")
        deadline = time.monotonic() + 60
        while (dataset.reading(0) or ("",))[0] != stuck and time.monotonic() < deadline:
            time.sleep(0.01)  # its image first, then the masks it hangs on
        assert dataset.reading(0)[0] == stuck
        os.kill(worker.pid, signal.SIGKILL)
        time.sleep(30)  # a step: PyTorch's SIGCHLD handler ends it
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"a data-loading worker process died without an error (DataLoader "
                              f"worker (pid {worker.pid}) is killed by signal: Killed, while "
                              f"reading {stuck})")  # fmt: skip
    assert "lower data.num_workers, or set it to 0" in message
    assert not set(multiprocessing.active_children()) - others


def test_data_workers_go_on_feeding_through_ctrl_c_sigterm_and_a_hang_up(tmp_path):
    """The terminal sends Ctrl-C to every process of the job (and Slurm SIGTERM): the run
    stops after its current step, which the workers go on feeding. A worker that ended at
    Ctrl-C (PyTorch's workers do, quietly) left the run without its next batch."""
    data = write_sa1b(tmp_path / "sa1b", 8, size=56)
    cfg = tiny(data, tmp_path / "run", 1, 6, "data.num_workers=1")
    dataset = training_data(cfg, CPU)
    sampler = StepSampler(len(dataset), global_batch=cfg.batch_size, steps=6, seed=0)
    with batches(make_loader(dataset, sampler, cfg, CPU, main=True), str(data)) as feed:
        first = next(feed)
        [worker] = multiprocessing.active_children()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(worker.pid, sig)
        time.sleep(0.5)  # time to end, for a worker that would
        assert worker.is_alive()
        rest = list(feed)
    assert len(rest) == 5 and first["image"].shape == rest[-1]["image"].shape
    assert not multiprocessing.active_children()


def test_the_reads_before_the_loaders_are_waited_on_data_timeout_too(tmp_path):
    """The pictures' images (rank 0, at the start) and SAM's masks computed up front were read
    with no time-out, unlike the loader's: a file on a stalled network disk (here a named pipe
    that no one writes) hung the run at its start, saying nothing. Each read is now waited on
    data.timeout seconds, and then one line names the file and the fix."""
    from loftup.train.distributed import DistInfo
    from loftup.train.loader import precompute_masks
    from loftup.train.pictures import validation_images

    data = write_sa1b(tmp_path / "sa1b", 4, size=56)
    # 2 s, not 1: under load the reader may not yet have come to the stuck file at 1 s (its
    # image read and decoded first), and then rightly names no file
    cfg = tiny(data, tmp_path / "run", 1, 2, "data.timeout=2", "log.viz_every=1")
    dataset = training_data(cfg, CPU)
    stuck = data / "sa_1.json"  # after the listing, which passes over a pipe
    stuck.unlink()
    os.mkfifo(stuck)

    def hung(*_):
        raise TimeoutError("the read hung the run")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        for read in (
            lambda: validation_images(dataset, cfg, [56], CPU),
            lambda: precompute_masks(dataset, DistInfo(), cfg.data.timeout),
        ):
            with pytest.raises(LoftUpError) as e:
                read()
            message = str(e.value)
            assert "\n" not in message and message.startswith("reading item 1 took over 2 s")
            assert f"{stuck} has been read for " in message
            assert "raise data.timeout (0: wait for ever)" in message
            os.close(os.open(stuck, os.O_WRONLY | os.O_NONBLOCK))  # the stuck reader goes on
        no_pictures = tiny(data, tmp_path / "run", 1, 2, "log.viz_every=0")
        assert validation_images(dataset, no_pictures, [56], CPU) is None  # and none read
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class _SlowMasks:
    """A stand-in for SAM on a weak CPU: each image's masks take ``seconds`` to compute."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls, self.released = seconds, 0, False

    def __call__(self, hwc):
        import numpy as np

        time.sleep(self.seconds)
        self.calls += 1
        mask = np.zeros(hwc.shape[:2], bool)
        mask[: hwc.shape[0] // 2] = True
        return mask[None]

    def release(self) -> None:
        self.released = True


@pytest.mark.parametrize("progress", ["true", "false"])
def test_the_sam_masks_bar_is_hidden_by_log_progress_false(tmp_path, capsys, progress):
    """The bar over SAM's masks computed up front was drawn on rank 0 whatever log.progress
    said (the loss's bar and the listing's were hidden)."""
    import dataclasses

    from loftup.train.distributed import DistInfo
    from loftup.train.loader import masks_up_front
    from train_fixtures import write_folder

    data = write_folder(tmp_path / "imgs", 2, size=56)
    cfg = tiny(data, tmp_path / "run", 1, 2, "data.masks=superpixels", f"log.progress={progress}",
               f"data.cache_dir={tmp_path / 'cache'}")  # fmt: skip
    dataset = training_data(cfg, CPU)
    dataset._sam = _SlowMasks(0)
    sam = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, masks="sam"))
    capsys.readouterr()
    masks_up_front(dataset, sam, DistInfo())
    assert dataset._sam.calls == 2
    assert ("SAM masks" in capsys.readouterr().err) == (progress == "true")


def test_sams_masks_computed_up_front_are_not_timed_as_reads(tmp_path):
    """SAM's masks computed before the loader were waited on data.timeout seconds each, as a
    read: SAM ViT-H on a weak CPU, slower than that an image, ended the run blaming a stalled
    disk. Only the files' reads are timed: slow masks are computed and cached, and a read
    that hangs after them (a named pipe here) still ends the run naming its file."""
    from loftup.train.distributed import DistInfo
    from loftup.train.loader import precompute_masks
    from train_fixtures import write_folder

    data = write_folder(tmp_path / "imgs", 2, size=56)
    cfg = tiny(data, tmp_path / "run", 1, 2, "data.masks=superpixels",
               f"data.cache_dir={tmp_path / 'cache'}")  # fmt: skip
    dataset = training_data(cfg, CPU)
    sam = dataset._sam = _SlowMasks(0.6)
    precompute_masks(dataset, DistInfo(), timeout=0.4)
    assert sam.calls == 2 and sam.released and dataset._sam is sam
    assert dataset.load(1)[1].shape[0] == 1 and sam.calls == 2  # cached: not computed again

    dataset = training_data(cfg, CPU)
    sam = dataset._sam = _SlowMasks(0.6)
    dataset.cache.path(data / "img_000.png").unlink()  # computed again: slow
    stuck = dataset.cache.path(data / "img_001.png")
    stuck.unlink()
    os.mkfifo(stuck)  # then a read that hangs (no one writes it: open() waits for ever)
    started = time.monotonic()
    with pytest.raises(LoftUpError) as e:
        precompute_masks(dataset, DistInfo(), timeout=0.4)
    assert time.monotonic() - started < 10 and sam.calls == 1
    message = str(e.value)
    assert message.startswith("reading item 1 took over 0.4 s (data.timeout): "), message
    assert f"the superpixels masks of {data / 'img_001.png'} (cached in " in message
    os.close(os.open(stuck, os.O_WRONLY | os.O_NONBLOCK))  # the stuck reader goes on


def test_sams_masks_are_computed_only_where_the_runs_alpha_uses_them(tmp_path, monkeypatch, caplog):
    """Stage 2 adjusts its teacher's output with the masks by stage2.teacher_alpha, stage 1 its
    target by stage1.mask_alpha; at 0 they change nothing, yet SAM computed every image's masks
    up front (minutes an image for ViT-H on a CPU) and the loader read them. They are not
    computed then (said once in the log), and still are, once an image, where alpha > 0."""
    import logging

    from loftup.data.sam import SamMaskGenerator
    from loftup.featurizers import resolve
    from loftup.hub import save_pretrained
    from loftup.model import LoftUp
    from loftup.train import train
    from train_fixtures import tiny_sam, write_folder

    computed = []
    sam_call = SamMaskGenerator.__call__

    def counted(self, image):  # SAM itself runs: the count is of its real calls
        computed.append(image.shape)
        return sam_call(self, image)

    monkeypatch.setattr(SamMaskGenerator, "__call__", counted)
    data = write_folder(tmp_path / "imgs", 2, size=56)
    init = tmp_path / "init"
    dim = resolve("dinov2_tiny").dim
    save_pretrained(LoftUp(dim=dim, depth=1, num_heads=2, n_freqs=4), init, backbone="dinov2_tiny")
    sam = tiny_sam(tmp_path / "sam")

    def run(stage, key, alpha):
        init_key = [f"init={init}"] if stage == 2 else []
        cfg = tiny(data, tmp_path / f"run{stage}_{alpha}", stage, 1, *init_key, "batch_size=2",
                   "data.masks=sam", f"data.sam_weights={sam}",
                   f"data.cache_dir={tmp_path / 'cache'}", f"{key}={alpha}")  # fmt: skip
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="loftup.train"):
            result = train(cfg)
        assert len(result.history) == 1 and torch.isfinite(torch.tensor(result.losses)).all()
        return [r.getMessage() for r in caplog.records if "are not computed" in r.message]

    for stage, key in ((2, "stage2.teacher_alpha"), (1, "stage1.mask_alpha")):
        said = run(stage, key, 0)
        assert computed == [] and not list((tmp_path / "cache").rglob("*.npz"))
        assert said == [f"{key}=0: no mask changes the targets, so SAM's masks are not computed"]
    assert run(2, "stage2.teacher_alpha", 0.5) == []
    assert len(computed) == 2 and len(list((tmp_path / "cache").rglob("*.npz"))) == 2
    # nor are SAM's weights looked for, nor the cache made, at 0: offline, without them, such
    # a run was refused for weights it would not use
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny(data, tmp_path / "no-sam", 1, 1, "batch_size=2", "data.masks=sam",
               "data.sam_weights=sam_vit_huge", f"data.cache_dir={tmp_path / 'cache2'}",
               "stage1.mask_alpha=0")  # fmt: skip
    assert len(train(cfg).history) == 1 and not (tmp_path / "cache2").exists()
