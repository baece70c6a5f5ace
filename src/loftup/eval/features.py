"""Backbone features for evaluation, cached on disk so that comparing upsamplers is cheap.

A cache entry is one safetensors file holding the low-resolution features (C, h, w) of one
image. Its key is a hash of the backbone name, its weights (a local folder by its files' size
and modification time, as an image; the hub's by a digest of what was loaded), what it is given (where that changes
its features: CLIP, SigLIP), the image (path, size in bytes and modification time), the input
size and the preprocessing policy: change any of these and the entry is recomputed. Files are
written atomically, so an interrupted run leaves no half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..featurizers import Featurizer, imagenet_normalize


def default_cache_dir() -> Path:
    """``$LOFTUP_CACHE/features`` or ``~/.cache/loftup/features``."""
    base = os.environ.get("LOFTUP_CACHE") or Path.home() / ".cache" / "loftup"
    return Path(base) / "features"


def image_identity(key: str) -> dict:
    """Path plus size and mtime of the file part of ``key`` (``PATH`` or ``PATH#item``; a
    ``#`` inside PATH is part of it)."""
    path = key if os.path.isfile(key) else key.rsplit("#", 1)[0]
    try:
        st = os.stat(path)
        return {"key": key, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"key": key}


def weights_identity(weights: str | None):
    """``weights`` as a cache key part: a hub id (or None) as it is; a local file or folder by
    its absolute path and the size and mtime of its files (of the folder's own files: the
    Hugging Face layout is flat), so that weights saved again under the same name, or the same
    relative name seen from another folder, are other weights."""
    if weights is None:
        return None
    path = Path(weights).expanduser()
    if not path.exists():
        return weights
    path = path.resolve()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    stats = [(p.name, p.stat()) for p in files]
    return {"path": str(path), "files": [[n, st.st_size, st.st_mtime_ns] for n, st in stats]}


class FeatureCache:
    """Low-resolution features on disk, one safetensors file per (image, settings).

    Arguments:
      root: cache folder (None: no caching, every lookup misses and nothing is written).
      backbone: backbone name.
      weights: the backbone's weights (hub id or path; None for the default).
      size: side of the (square) input the backbone sees.
      policy: the preprocessing (how the image became that input).
      input_norm: the featurizer's ``input_norm_key()`` (None where the choice changes nothing,
        which keeps the keys of entries written before it existed).
      revision: the featurizer's ``revision`` (None for a backbone whose features loftup has
        never computed otherwise, which keeps its earlier entries).
      weights_digest: a digest of the weights as loaded, for weights from the hub, whose id
        names no version: a repo updated upstream is other features (None: weights a local
        folder, keyed by its files, or none, which keeps their entries).
    """

    def __init__(
        self,
        root,
        *,
        backbone: str,
        weights: str | None,
        size: int,
        policy: str,
        input_norm: str | None = None,
        revision: str | None = None,
        weights_digest: str | None = None,
    ):
        self.root = Path(root).expanduser() if root is not None else None
        self.settings = {
            "backbone": backbone,
            "weights": weights_identity(weights),
            "size": size,
            "policy": policy,
        }
        if input_norm is not None:  # CLIP and SigLIP entries made before it are never read
            self.settings["input_norm"] = input_norm
        if revision is not None:  # entries of the features computed before are never read
            self.settings["revision"] = revision
        if weights_digest is not None:  # the hub's weights by content, not by the repo's name
            self.settings["weights_digest"] = weights_digest
        self.hits = 0
        self.misses = 0

    def record(self) -> dict | None:
        """For a run's results: the lookups that found an entry and those that computed the
        features; None without a cache (nothing was looked up: no miss to report)."""
        return None if self.root is None else {"hits": self.hits, "misses": self.misses}

    def path(self, key: str) -> Path | None:
        if self.root is None:
            return None
        blob = json.dumps({**self.settings, "image": image_identity(key)}, sort_keys=True)
        digest = hashlib.sha256(blob.encode()).hexdigest()
        folder = str(self.settings["backbone"]).replace("/", "_")
        return self.root / folder / digest[:2] / f"{digest}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        if path is None or not path.exists():
            self.misses += 1
            return None
        from safetensors.torch import load_file

        try:
            feats = load_file(str(path))["feats"]
        except Exception:  # noqa: BLE001 - a corrupt entry is recomputed
            self.misses += 1
            return None
        self.hits += 1
        return feats

    def put(self, key: str, feats: torch.Tensor) -> None:
        path = self.path(key)
        if path is None:
            return
        from safetensors.torch import save_file

        from ..atomic import atomic_write

        path.parent.mkdir(parents=True, exist_ok=True)
        tensor = feats.detach().cpu().contiguous()
        atomic_write(path, lambda tmp: save_file({"feats": tensor}, tmp))


@torch.no_grad()
def lowres_features(
    featurizer,
    images01: torch.Tensor,
    keys: list[str],
    cache: FeatureCache,
    input_size: int,
    device=None,
) -> torch.Tensor:
    """(B, C, h, w) backbone features of (B, 3, S, S) images in [0, 1], through the cache.

    The backbone sees the images resized (bilinear) to ``input_size`` x ``input_size`` (larger
    than S for the ``highres`` reference), normalised its own way.
    """
    found = [cache.get(k) for k in keys]
    todo = [i for i, f in enumerate(found) if f is None]
    if todo:
        batch = images01[todo].to(device)  # a copy (indexed by a list): spent below
        if batch.shape[-1] != input_size or batch.shape[-2] != input_size:
            batch = F.interpolate(batch, size=(input_size, input_size), mode="bilinear")
        feats = featurizer(_normalized(featurizer, batch)).float().cpu()
        for j, i in enumerate(todo):
            found[i] = feats[j]
            cache.put(keys[i], feats[j])
    return torch.stack(found)


def _normalized(featurizer, batch: torch.Tensor) -> torch.Tensor:
    """``featurizer.normalize(batch)``: in ``batch`` itself (a copy the caller spends, one
    tensor of its size less) where that is the default ImageNet normalisation, else through
    the featurizer's own (a registered backbone may normalise its own way)."""
    if getattr(featurizer.normalize, "__func__", None) is Featurizer.normalize:
        return imagenet_normalize(batch, inplace=True)
    return featurizer.normalize(batch)
