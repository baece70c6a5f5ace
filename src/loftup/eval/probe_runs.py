"""The steps every dense probing run shares (:mod:`loftup.eval.dense`): the probe's settings
from the run's, upsampled features computed batch by batch, the probe fitted on them, the
results' header; and the rest of a run whose scores are per image (depth, normals).
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from ..stops import check as check_stop
from .config import EvalConfig
from .pipeline import FeaturePipeline, make_loader
from .probe_training import ProbeConfig, train_probe, warmup_steps
from .report import run_info
from .results import finish

POLICY = "resize-short-bilinear+center-crop"
N_EXAMPLES = 4


def _probe_config(base: ProbeConfig, cfg: EvalConfig) -> ProbeConfig:
    return replace(
        base,
        epochs=cfg.epochs if cfg.epochs is not None else base.epochs,
        lr=cfg.lr if cfg.lr is not None else base.lr,
        # the probe's own batch: --batch-size only says how many images' features are
        # computed at once, so lowering it to fit memory leaves the probe's training as it was
        batch_size=cfg.probe_batch_size if cfg.probe_batch_size is not None else base.batch_size,
        seed=cfg.seed,
    )


def _features(pipe: FeaturePipeline, batch: dict, cfg: EvalConfig) -> torch.Tensor:
    """Upsampled features (B, C, S, S) of the images of ``batch``, computed ``cfg.batch_size``
    at a time (a probe step may hold more images than fit the backbone and upsampler at once)."""
    n, step = len(batch["key"]), cfg.batch_size
    big = batch.get("backbone_image")
    hr = None
    for i in range(0, n, step):
        part = slice(i, i + step)
        _, out = pipe(batch["image"][part], batch["key"][part], cfg.size,
                      None if big is None else big[part])  # fmt: skip
        if step >= n:
            return out
        if hr is None:  # filled in place: no second copy of the batch's features
            hr = out.new_empty((n, *out.shape[1:]))
        hr[part] = out
    return hr


def _fit(probe, train_set, pipe: FeaturePipeline, cfg: EvalConfig, target, loss_fn, pcfg):
    """Train ``probe`` on ``train_set``'s upsampled features against ``target``: a key of the
    batch, or a function of the batch. A step is ``pcfg.batch_size`` images, whose features
    are computed ``cfg.batch_size`` at a time. Returns the steps an epoch took."""
    device = pipe.device

    def loader(epoch: int = 0):
        return make_loader(train_set, cfg, shuffle=True, epoch=epoch, batch_size=pcfg.batch_size)

    def batches(epoch: int):
        for batch in loader(epoch):
            y = target(batch) if callable(target) else batch[target]
            yield _features(pipe, batch, cfg), y.to(device)

    steps = len(loader())
    train_probe(
        probe, batches, loss_fn, pcfg, steps, progress=cfg.progress, desc=f"{cfg.task} probe"
    )
    return steps


def _pca(lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    from ..viz import pca_pair

    return pca_pair(lr[None].cpu(), hr[None].cpu())[1][0]


def _header(
    cfg: EvalConfig, pcfg: ProbeConfig, per_epoch: int, sizes: dict, pipe: FeaturePipeline
) -> dict:
    # the warm-up the probe ran (warmup_epochs is capped at half a short run: said as steps)
    probe = {**pcfg.to_dict(), "steps": pcfg.epochs * per_epoch,
             "warmup_steps": warmup_steps(pcfg, per_epoch)}  # fmt: skip
    return {
        "task": cfg.task,
        "dataset": cfg.dataset,
        "backbone": cfg.backbone,
        "upsampler": cfg.upsampler,
        "num_images": sizes,
        "features": pipe.record(),
        "settings": {**cfg.to_dict(), "probe": probe, "policy": POLICY},
        "run": run_info(cfg.device),
    }


def _probe_per_image(
    cfg: EvalConfig,
    report,
    start: float,
    sets: tuple,
    base: ProbeConfig,
    make_probe,
    target,
    loss_fn,
    score,
    draw,
    title,
    extra: dict | None = None,
) -> dict:
    """The rest of a run whose scores are per image, averaged over the test split (depth,
    normals): fit ``make_probe(dim)`` on ``sets[0]`` against ``target`` with ``loss_fn``, then
    ``score(probe, batch, hr)`` -> ({metric: (B,) values}, [example per image]) on ``sets[1]``;
    the figure is ``draw(examples, path, title=title(metrics))``; ``extra`` joins the results."""
    from tqdm.auto import tqdm

    from ..bars import bar_settings

    train_set, test_set = sets
    pipe = FeaturePipeline(cfg, policy=POLICY)
    pcfg = _probe_config(base, cfg)
    probe = make_probe(pipe.dim).to(pipe.device)
    per_epoch = _fit(probe, train_set, pipe, cfg, target, loss_fn, pcfg)

    per_image: dict[str, list[torch.Tensor]] = {}
    examples = []
    loader = make_loader(test_set, cfg, shuffle=False)
    with tqdm(
        loader, desc=f"{cfg.task} test", leave=False, **bar_settings(shown=cfg.progress)
    ) as bar:
        for batch in bar:
            check_stop()  # one a finaliser swallowed: loftup.stops
            _, hr = pipe(batch["image"], batch["key"], cfg.size, batch.get("backbone_image"))
            values, shown = score(probe, batch, hr)
            for name, v in values.items():
                per_image.setdefault(name, []).append(v)
            examples += shown[: N_EXAMPLES - len(examples)]
    values = {name: torch.cat(v) for name, v in per_image.items()}
    # an image without a valid pixel has nothing to score: left out of the means, and counted
    scored = values.pop("valid_pixels") > 0
    metrics = {name: float(v[scored].mean()) for name, v in values.items()}
    sizes = {"train": len(train_set), "test": len(test_set)}
    results = _header(cfg, pcfg, per_epoch, sizes, pipe)
    results["metrics"] = metrics
    results["images_without_valid_pixels"] = int((~scored).sum())
    results.update(extra or {})
    results["cache"] = pipe.cache.record()
    results["elapsed_s"] = round(time.time() - start, 2)
    return finish(cfg, results, lambda path: draw(examples, path, title=title(metrics)), report)


def _what(cfg: EvalConfig) -> str:
    return f"{cfg.dataset} {cfg.backbone} + {cfg.upsampler}"
