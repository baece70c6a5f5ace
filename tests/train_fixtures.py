"""Small real inputs for the training and data tests: image folders and SA-1B JSON."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch


def scene(seed: int, size: int = 48) -> tuple[np.ndarray, list[np.ndarray]]:
    """An RGB uint8 image of a few flat rectangles on a background, and their masks."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = rng.integers(0, 255, 3)
    masks = []
    for _ in range(4):
        h, w = rng.integers(size // 5, size // 2, 2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        m = np.zeros((size, size), dtype=bool)
        m[y : y + h, x : x + w] = True
        img[m] = rng.integers(0, 255, 3)
        masks.append(m)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return img, masks


def write_folder(root: Path, n: int, size: int = 48) -> Path:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(scene(i, size)[0]).save(root / f"img_{i:03d}.png")
    return root


def write_sa1b(root: Path, n: int, size: int = 48, height: int | None = None) -> Path:
    """``sa_N.jpg`` + ``sa_N.json`` with COCO RLE masks (pycocotools.mask.encode)."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, masks = scene(i, size)
        if height is not None:  # a non-square image: pad rows at the bottom
            img = np.concatenate([img, np.zeros((height - size, size, 3), np.uint8)])
            masks = [np.concatenate([m, np.zeros((height - size, size), bool)]) for m in masks]
        Image.fromarray(img).save(root / f"sa_{i}.jpg", quality=95)
        anns = []
        for k, m in enumerate(masks):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            anns.append({"id": k, "segmentation": rle, "area": int(m.sum())})
        info = {"image_id": i, "file_name": f"sa_{i}.jpg", "height": img.shape[0], "width": size}
        (root / f"sa_{i}.json").write_text(json.dumps({"image": info, "annotations": anns}))
    return root


def tiny_config(root, out, stage=1, steps=4, *extra):
    """A training config of a fraction of a second per step: the tiny random DINOv2, 56 px
    images (a 4x4 grid), a one-block upsampler; ``extra``: more ``key=value`` overrides."""
    from loftup.train import load_config

    return load_config({}, tiny_overrides(root, out, steps) + list(extra), stage=stage)


def tiny_overrides(root, out, steps=4) -> list[str]:
    """:func:`tiny_config`'s ``key=value`` overrides (for ``loftup train`` on its command line)."""
    return [
        "backbone=dinov2_tiny", f"data.root={root}", "data.num_workers=0",
        "batch_size=4", f"max_steps={steps}", f"log.out_dir={out}", "log.tensorboard=false",
        "log.progress=false", "log.viz_every=0", "log.ckpt_every=2",
        "model.depth=1", "model.num_heads=2", "model.n_freqs=4", "stage1.image_size=56",
        "stage2.load_size=112", "stage2.global_sizes=[56, 84]", "stage2.crop_align=4",
        "stage2.affinity_max_side=8", "stage2.ema_every=2", "optim.clip_steps=0",
        "optim.lr=3e-3",
    ]  # fmt: skip


def tiny_sam(folder):
    """A randomly initialised transformers SAM with 64 px inputs, saved like a hub checkpoint."""
    from transformers import SamConfig, SamModel, SamProcessor

    try:  # transformers 5.x without torchvision; others have the one processor
        from transformers import SamImageProcessorPil as SamImageProcessor
    except ImportError:
        from transformers import SamImageProcessor

    torch.manual_seed(0)
    config = SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=64, patch_size=16, output_channels=32, mlp_dim=64,
                           global_attn_indexes=[0], window_size=2, num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16,
                                   mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 mlp_dim=64, iou_head_hidden_dim=32),
    )  # fmt: skip
    SamModel(config).save_pretrained(folder)
    images = SamImageProcessor(
        size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
        mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16},
    )  # fmt: skip
    SamProcessor(images).save_pretrained(folder)
    return folder


@contextlib.contextmanager
def gone_terminal():
    """``sys.stdout`` on a terminal that is gone (a pseudo-terminal whose other end is closed,
    as after an SSH session ends) inside ``with``: every write to it fails with EIO. After it,
    stdout is put back (the gone one's buffer flushed to the null device)."""
    import os
    import pty
    import sys

    parent, child = pty.openpty()
    os.close(parent)
    gone = open(child, "w", buffering=1)  # line-buffered, as Python's stdout at a terminal
    stdout, sys.stdout = sys.stdout, gone
    try:
        yield
    finally:
        sys.stdout = stdout
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, child)
        os.close(null)
        gone.close()


@contextlib.contextmanager
def held_elsewhere(lock: Path, note: str | None = ""):
    """``lock`` (a lock file, made where missing) locked by another process (``fcntl.lockf``,
    as a loftup run locks its folder), ``note`` written in it as the run's (None: what the
    file holds kept), for the block; yields that process's pid."""
    import subprocess
    import sys

    write = "" if note is None else f"os.ftruncate(fd, 0); os.pwrite(fd, {note.encode()!r}, 0)\n"
    hold = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        f"{write}"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert other.stdout.readline() == b"held\n"
        yield other.pid
    finally:
        other.communicate(b"")


def signal_self(signum: int) -> None:
    """Send this process ``signum``, its handler's turn coming here."""
    import os

    os.kill(os.getpid(), signum)
    for _ in range(100):  # its handler's turn comes here
        pass


def signal_at_the_end(where: str, signum: int, setattr=setattr) -> None:
    """Have `loftup train` (``loftup.cli.main``) send this process ``signum`` at ``where`` of
    its end, once its run is complete: "after the vote" (the end's, of no stop), "at the
    teardown" (as train() lets go of the process group), "as its result is said", "as the
    command returns". Its functions are replaced with ``setattr``: a test's
    ``monkeypatch.setattr``, or the builtin in a process of the case's own."""
    import loftup.cli.common as common
    import loftup.cli.train as cli_train
    from loftup.train import loop

    real_end, torn, real_say, command = (
        loop.end_run, loop.teardown, common.say_done, cli_train._cmd_train
    )  # fmt: skip

    def end_run(*args):
        real_end(*args)
        if where == "after the vote":
            signal_self(signum)

    def teardown(info, error=None):
        if error is None and where == "at the teardown":  # (the run's own end)
            signal_self(signum)
        torn(info, error)

    def say_done(text):
        if where == "as its result is said":
            signal_self(signum)
        real_say(text)

    def _cmd_train(args):
        status = command(args)
        if where == "as the command returns":
            signal_self(signum)
        return status

    setattr(loop, "end_run", end_run)
    setattr(loop, "teardown", teardown)
    setattr(common, "say_done", say_done)
    setattr(cli_train, "_cmd_train", _cmd_train)
