"""The work every run of an experiment shares: training data, held-out images, backbone features.

Offline (the defaults): training scenes and held-out scenes written as ``loftup demo`` writes
them (:func:`~loftup.world.demo.make_scenes`) into ``OUT/scenes``, read back from disk; a set
the user gives is not written. With the user's data: ``settings.data`` is the training folder
(SA-1B layout or plain images), ``settings.eval_root`` a scene folder or, with
``settings.eval_dataset``, a segmentation dataset whose first ``eval_count / 2`` training
images fit the probes and first ``eval_count / 2`` validation images score them.
"""

from __future__ import annotations

import hashlib
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LoftUpError
from ..paths import there
from ..read_refusal import read_refused
from .settings import ExperimentSettings


@dataclass
class EvalSet:
    """Held-out images: the first half fits each probe, the second half scores it.

    images: (N, 3, H, W) in [0, 1]; labels: (N, H, W) int64 (255: not scored); classes: K.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: int
    source: str


def training_root(s: ExperimentSettings) -> Path:
    """The training folder: ``settings.data``, or the offline training scenes (written now, or
    kept where ``OUT/scenes/train`` holds this very world; one of other options is refused)."""
    if not s.data:
        from ..world.demo import make_train_scenes

        # reuse: written once; rewritten, every file had a new mtime, which the mask cache's
        # keys hold (each rerun made every mask again), and the scenes took seconds to write
        return make_train_scenes(s.demo(0), reuse=True, progress=s.progress)
    root = Path(s.data)
    # pathlib's is_dir raises where a folder is not searchable
    if not there(root, "--data", test=os.path.isdir):
        raise LoftUpError(f"training data folder {root} does not exist; check --data")
    return root


def load_eval_set(s: ExperimentSettings) -> EvalSet:
    """The held-out set of the settings (see the module note; offline scenes written now)."""
    from ..data.scene_files import read_world
    from ..world.demo import load_val, make_val_scenes

    n = s.eval_count
    if s.eval_dataset:
        return _dataset_eval_set(s.eval_dataset, s.eval_root, s.size, n)
    if s.eval_root:
        root = Path(s.eval_root)
    else:  # written once, as the training scenes are
        root = make_val_scenes(s.demo(0), reuse=True, progress=s.progress)
    images, labels = load_val(root, "" if s.eval_root else "--out")  # written under --out
    if len(images) < n:
        raise LoftUpError(
            f"{root} holds {len(images)} scenes, fewer than --eval-count {n}; give "
            f"--eval-count {len(images)} or less"
        )
    classes = read_world(root).config.num_classes
    return EvalSet(images[:n], labels[:n], classes, str(root))


@contextmanager
def eval_options():
    """The dataset readers' errors told with this command's options: they name ``loftup
    eval``'s ``--dataset`` and ``--root``, which ``loftup experiment`` calls ``--eval-dataset``
    and ``--eval-root`` (its ``--dataset`` does not exist, its ``--root`` neither)."""
    from ..eval.datasets import DatasetError

    try:
        yield
    except DatasetError as e:
        text = re.sub(r"\ba --root\b", "an --root", str(e))
        raise DatasetError(re.sub(r"(?<![\w-])--(dataset|root)\b", r"--eval-\1", text)) from None


def check_eval_dataset(s: ExperimentSettings) -> None:
    """A DatasetError (naming --eval-dataset / --eval-root) when ``s.eval_root`` is not a
    folder of dataset ``s.eval_dataset``, and a LoftUpError when a split is short of its half
    of ``s.eval_count`` (:func:`_check_halves`): said before any work, not after the training
    scenes are written. Lists the splits' files only; their headers are read when the set is
    loaded."""
    from ..eval.datasets import check_disjoint, check_root, seg_pairs

    if not s.eval_dataset:
        return
    n = s.eval_count
    with eval_options():
        check_root("seg", s.eval_dataset, s.eval_root)
        # only the pairs the run reads: a file missing past them refused it
        train = seg_pairs(s.eval_dataset, s.eval_root, "train", n // 2)
        val = seg_pairs(s.eval_dataset, s.eval_root, "val", n - n // 2)
        check_disjoint(s.eval_dataset, train, val)
    _check_halves(s.eval_dataset, s.eval_root, n, len(train), len(val))


def _dataset_eval_set(name: str, root: str, size: int, n: int) -> EvalSet:
    with eval_options():
        return _read_dataset_eval_set(name, root, size, n)


def _read_dataset_eval_set(name: str, root: str, size: int, n: int) -> EvalSet:
    from ..eval.datasets import SegmentationSet, check_disjoint

    parts = [
        SegmentationSet(name, root, "train", size, limit=n // 2),
        SegmentationSet(name, root, "val", size, limit=n - n // 2),
    ]
    _check_halves(name, root, n, *(len(ds) for ds in parts))
    check_disjoint(name, parts[0].pairs, parts[1].pairs)
    items = [ds[i] for ds in parts for i in range(len(ds))]
    images = torch.stack([it["image"] for it in items])
    labels = torch.stack([it["label"].long() for it in items])
    return EvalSet(images, labels, parts[0].spec.num_classes, f"{name} at {root}")


def _check_halves(name: str, root: str, n: int, n_train: int, n_val: int) -> None:
    """The probes fit on the first ``n // 2`` images and score the rest: a split short of its
    share would move the boundary, fitting on validation images (or scoring training ones)."""
    if n_train == n // 2 and n_val == n - n // 2:
        return
    wanted = ((n_train, n // 2, "training"), (n_val, n - n // 2, "validation"))
    short = [f"{have} {split}" for have, want, split in wanted if have < want]
    raise LoftUpError(
        f"--eval-count {n} takes {n // 2} training and {n - n // 2} validation images of {name} "
        f"(the training ones fit the probes, the validation ones score them), but {root} has "
        f"only {' and '.join(short)} images; give --eval-count {min(2 * n_train + 1, 2 * n_val)} or less"
    )


def load_backbone(s: ExperimentSettings):
    """The frozen featurizer of the settings, in eval mode on the CPU."""
    from ..featurizers import get_featurizer

    return get_featurizer(s.backbone, s.backbone_weights).eval()


def weights_fingerprint(backbone: str, weights: str | None) -> dict:
    """Name, weights argument, the weights file and its sha256 (None when not a local file). A
    folder of shards (``model.safetensors.index.json``): every shard, ``file`` the folder and
    the sha256 that of each shard's name and sha256, a line each (the first shard alone told
    a change in the others from none)."""
    files = []
    if weights:
        p = Path(weights).expanduser()
        if p.is_dir():
            from ..featurizers.hf_files import weight_files

            files = weight_files(p) or sorted(p.glob("*.safetensors")) or sorted(p.glob("*.bin"))
        elif p.is_file():
            files = [p]
    elif backbone == "scenes_vit_p8":
        from ..featurizers.scenes_vit import NAME, shipped_weights

        files = [shipped_weights() / f"{NAME}.safetensors"]
    files = [f for f in files if f.is_file()]
    if len(files) > 1:
        lines = "".join(f"{f.name}\t{file_sha256(f)}\n" for f in files)
        path, sha = files[0].parent, hashlib.sha256(lines.encode()).hexdigest()
    else:
        path = files[0] if files else None
        sha = file_sha256(path) if path else None
    return {"name": backbone, "weights": weights, "file": str(path) if path else None,
            "sha256": sha}  # fmt: skip


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: How many of the training files the identity of a data folder looks at (their sizes): a
#: data set written again (resized, re-encoded) under the same names is told apart, and the
#: cost is bounded where a look at each file took minutes to hours at SA-1B's scale, at each
#: start of the experiment.
SIZE_SAMPLE = 1000


def run_inputs(backbone: dict, train_root: Path, masks: str, *, progress: bool = False) -> dict:
    """What a run is trained on besides its config (which names them only): the backbone's
    weights (``backbone``: :func:`weights_fingerprint`'s) and the training data, a scene folder
    by its ``world.json`` (its world, seed and scene names), other data by the files training
    reads: the names of all, the sizes of at most :data:`SIZE_SAMPLE` of them spread evenly over
    the listing, SA-1B's images and JSON alike (``progress``: the listing's bar). A run folder
    records them; one trained on others is not reused."""
    world = Path(train_root) / "world.json"
    if there(world, "--data", test=os.path.isfile):
        try:
            data = {"world_sha256": file_sha256(world)}
        except PermissionError as e:  # an input: its chmod (no other --out mends it)
            raise read_refused(world, e, "world record") or e from None
    else:
        digest, files = hashlib.sha256(), training_files(Path(train_root), masks, progress)
        step = max(1, -(-len(files) // SIZE_SAMPLE))
        # odd: SA-1B's listing alternates image and JSON, and an even step looked at the
        # images alone (every JSON written again with other masks went unseen)
        step += step > 1 and step % 2 == 0
        for i, f in enumerate(files):
            size = _size(f) if i % step == 0 else ""
            digest.update(f"{f.relative_to(train_root)}\t{size}\n".encode())
        data = {"files": len(files), "listing_sha256": digest.hexdigest()}
    return {"backbone_sha256": backbone["sha256"], "training_data": data}


def _size(path: Path) -> int:
    """The size of a file, -1 for one that cannot be looked at (a link to nothing, gone since it
    was listed): training skips it, and the identity must not stop the experiment for it."""
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def training_files(root: Path, masks: str, progress: bool = False) -> list[Path]:
    """The files of ``root`` that training reads with the mask source ``masks``: SA-1B images
    and their JSON, or the images (those a run drew in its ``viz/`` left out), as
    :class:`~loftup.data.dataset.MaskedImages` lists them (its own listing; ``progress``: a
    bar counting them, where the listing takes seconds)."""
    from ..data.dataset import training_listing

    images, annotations, _ = training_listing(root, masks, progress)
    if annotations is None:
        return images
    return [f for pair in zip(images, annotations, strict=True) for f in pair]
