"""Train ``scenes_vit_p8``: a small ViT whose patch features carry the class of their texture.

    loftup world backbone --out runs/scenes_vit            # the shipped recipe (defaults below)
    loftup world backbone --out /tmp/bb --steps 50 --scenes 64   # a smoke run

Recipe: a pool of scenes is generated once (seed ``seed``, indices 0..scenes-1, passed through
the same JPEG encoding as the files on disk); each step draws a batch from it and minimises the
cross-entropy between a linear head on the patch features and the class histogram under each
patch (soft targets: a patch on a boundary is taught the mixture it covers), plus
``appearance_weight`` times the squared error of a second linear head that reads, from the same
features, the mean colour of each of the ``appearance_cells`` x ``appearance_cells`` cells of the
patch (in the normalised image's units). Supervision is per patch only; the model never sees a
pixel-level label. The appearance term keeps in the features what real backbones' features keep
(the colour of each patch): without it an upsampler's cross-attention can match a pixel to the
patches around it by position only, never by how it looks, and in this world it then learns
region interiors but not where they stop (see the README's demo section). Textures appear at
periods between 1x and 2x their base (``texture_scale``) so that the same model works on zoomed
crops (stage 2). AdamW with linear warm-up and cosine decay. The head is dropped; the features
are the final LayerNorm's output. Afterwards the probes of :mod:`loftup.world.probe` run on
held-out scenes (seed ``seed + 1``) and their numbers go into ``config.json`` and
``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import InitVar, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.scenes import SceneConfig
from ..errors import UsageError, is_int
from ..featurizers.scenes_vit import SceneViT, SceneViTConfig, save_backbone
from ..words import said
from .probe import measure_backbone, scene_batch


@dataclass
class BackboneRecipe:
    """Arguments:
    steps: optimiser steps.
    batch_size: scenes per step.
    scenes: size of the pool of training scenes (generated once, reused across steps).
    size: scene height and width in pixels (multiple of 8).
    num_classes: classes of the world (texture families).
    texture_scale: (min, max) texture period factor of the training scenes.
    lr: peak AdamW learning rate; weight_decay: AdamW weight decay.
    warmup: linear warm-up steps before the cosine decay.
    appearance_weight: weight of the patch-colour term (0: class only, the first release).
    appearance_cells: the patch's colour is read as the mean of this many cells a side.
    seed: scene pool seed (held-out scenes use seed + 1) and parameter-initialisation seed.
    eval_scenes: held-out scenes for the probes (half fit, half score; 0 skips them).
    """

    steps: int = 2000
    batch_size: int = 32
    scenes: int = 3000
    size: int = 128
    num_classes: int = 8
    texture_scale: tuple[float, float] = (1.0, 2.0)
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 100
    appearance_weight: float = 1.0
    appearance_cells: int = 2
    seed: int = 0
    eval_scenes: int = 64
    #: not a field: how an error calls each field (e.g. {"batch_size": "--batch-size"})
    said_as: InitVar[dict | None] = None

    def __post_init__(self, said_as: dict | None = None) -> None:
        ints = {"steps": 1, "batch_size": 1, "scenes": 1, "warmup": 0, "seed": 0}
        for name, least in ints.items():
            value = getattr(self, name)
            if not is_int(value) or value < least:
                raise UsageError(
                    f"{said(name, said_as)} must be an integer >= {least}, got {value!r}"
                )
        if self.eval_scenes != 0 and not (
            isinstance(self.eval_scenes, int) and self.eval_scenes >= 2
        ):
            raise UsageError(
                f"eval_scenes must be 0 (no probes) or >= 2 (half fit, half score), got "
                f"{self.eval_scenes!r}"
            )
        if not isinstance(self.size, int) or self.size < 8 or self.size % 8:
            raise UsageError(f"size must be a multiple of the patch (8), got {self.size!r}")
        if self.appearance_cells not in (1, 2, 4, 8):
            raise UsageError(
                f"appearance_cells must divide the patch (8): 1, 2, 4 or 8, got "
                f"{self.appearance_cells!r}"
            )
        for name in ("lr", "weight_decay", "appearance_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UsageError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self.lr > 0:
            raise UsageError(f"lr must be > 0, got {self.lr!r}")
        self.scene_config()  # num_classes and texture_scale

    def scene_config(self) -> SceneConfig:
        return SceneConfig(
            height=self.size,
            width=self.size,
            num_classes=self.num_classes,
            texture_scale=tuple(self.texture_scale),
        )


def patch_targets(labels: torch.Tensor, patch: int, classes: int) -> torch.Tensor:
    """(B, H, W) class labels -> (B, classes, H/patch, W/patch) class fractions per patch."""
    onehot = F.one_hot(labels, classes).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(onehot, patch)


def patch_colours(image: torch.Tensor, patch: int, cells: int) -> torch.Tensor:
    """(B, 3, H, W) image -> (B, 3 * cells^2, H/patch, W/patch): mean colour of each cell."""
    return F.pixel_unshuffle(F.avg_pool2d(image, patch // cells), cells)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over positions of -sum_k target_k log softmax(logits)_k; both (B, K, h, w)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def _lr_at(step: int, recipe: BackboneRecipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    t = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def train_backbone(
    recipe: BackboneRecipe,
    out: str | Path,
    *,
    architecture: SceneViTConfig | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Train, measure and save the backbone to ``out`` (see the module note); returns metrics."""
    from tqdm.auto import tqdm

    from ..bars import bar_settings
    from ..data.paths import home_expanded
    from ..paths import check_folder_output

    out = home_expanded(out, "--out")  # ~nobody: one line, not expanduser's RuntimeError
    check_folder_output(str(out), "--out")  # a file, under one, or unwritable: not after training
    if recipe.size % 8:  # checked when the recipe is made, and again after any change to it
        raise UsageError(f"size must be a multiple of the patch (8), e.g. 128; got {recipe.size}")
    t0 = time.perf_counter()
    world = recipe.scene_config()
    torch.manual_seed(recipe.seed)
    model = SceneViT(config=architecture).to(device).train()
    head = torch.nn.Conv2d(model.dim, recipe.num_classes, 1).to(device)
    colour_dim = 3 * recipe.appearance_cells**2
    colour_head = torch.nn.Conv2d(model.dim, colour_dim, 1).to(device)
    params = [*model.parameters(), *head.parameters(), *colour_head.parameters()]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)

    # the pool first: 3,000 scenes took minutes before the training's bar showed anything
    images, labels = scene_batch(world, recipe.seed, range(recipe.scenes), progress=progress)
    t_data = time.perf_counter() - t0
    g = torch.Generator().manual_seed(recipe.seed)
    bar = tqdm(range(recipe.steps), desc="backbone", **bar_settings(shown=progress))
    for step in bar:
        pick = torch.randint(0, recipe.scenes, (recipe.batch_size,), generator=g)
        x = model.normalize(images[pick].to(device))
        target = patch_targets(labels[pick].to(device), model.patch_size, recipe.num_classes)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, recipe)
        feats = model(x)
        loss = soft_cross_entropy(head(feats), target)
        if recipe.appearance_weight:
            colours = patch_colours(x, model.patch_size, recipe.appearance_cells)
            loss = loss + recipe.appearance_weight * F.mse_loss(colour_head(feats), colours)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step == 0:
            first_loss = loss.item()
        if step % 10 == 0 or step == recipe.steps - 1:
            # shown at the bar's next draw: refreshed here, a log took one every 10 steps
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    t_train = time.perf_counter() - t0 - t_data

    model = model.cpu().eval()
    # config.json (read with the weights) and metrics.json go before the new weights come and
    # come back after them: a run cut short in between leaves a folder that load_backbone
    # refuses (no config.json), never new weights beside the last run's config or metrics
    for stale in ("config.json", "metrics.json"):
        (out / stale).unlink(missing_ok=True)
    save_backbone(model, out, {"recipe": dataclasses.asdict(recipe), "world": world.to_dict()})
    metrics = {}
    if recipe.eval_scenes:
        metrics = measure_backbone(model, world, seed=recipe.seed + 1, count=recipe.eval_scenes)
    metrics.update(
        first_loss=first_loss,
        final_loss=loss.item(),
        seconds_data=round(t_data, 1),
        seconds_train=round(t_train, 1),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )
    extra = {
        "recipe": dataclasses.asdict(recipe),
        "world": world.to_dict(),
        "classes": list(world.class_names),
        "metrics": metrics,
    }
    out = save_backbone(model, out, extra)
    from ..atomic import write_json

    write_json(out / "metrics.json", metrics)
    return metrics
