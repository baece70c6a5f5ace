"""SAM automatic mask generation on transformers' ``SamModel`` (no torchvision needed).

A grid of ``points_per_side``^2 single-point prompts; each gives SAM's 3 candidate masks with their
predicted IoU. Candidates pass if their predicted IoU and their stability (the IoU of the mask
thresholded at +1 and at -1 logits) reach the thresholds; duplicates are removed greedily by
mask IoU, best score first. What is left comes largest first. This is SAM's automatic mask
generator in its plain form (one crop level, no small-region clean-up).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import LoftUpError, WeightsNotFoundError, one_line
from ..listing import hidden
from ..paths import check_visible, there

#: SAM checkpoints by short name (``loftup download sam_vit_base``); data.sam_weights takes
#: these, any hub id, or a local folder.
SAM_WEIGHTS = {
    "sam_vit_base": "facebook/sam-vit-base",
    "sam_vit_large": "facebook/sam-vit-large",
    "sam_vit_huge": "facebook/sam-vit-huge",
}
#: What a transformers SAM folder holds, one file of each group (the first where both are):
#: the model's config, its weights (the hub's older repos also keep a .bin, read by
#: transformers without unpickling code) and its image processor's settings (transformers 5
#: writes processor_config.json, the hub's repos hold preprocessor_config.json).
SAM_FILES = (
    ("config.json",),
    ("model.safetensors", "pytorch_model.bin"),
    ("preprocessor_config.json", "processor_config.json"),
)


def resolve_sam(weights: str, *, downloading: bool = False):
    """The local folder of SAM ``weights`` (a short name of :data:`SAM_WEIGHTS`, a hub id or a
    folder). A hub id is read from the Hugging Face cache or downloaded, file by file, as the
    backbones are: offline, or with the hub out of reach (found out in seconds, not after
    transformers' minutes of retries), a WeightsNotFoundError names the missing file and how
    to provide it."""
    from ..hub import hub_folder, hub_id, looks_like_path
    from .paths import home_expanded

    source = SAM_WEIGHTS.get(str(weights), str(weights))
    path = home_expanded(source, "SAM weights")
    layout = (
        f"a folder with {', '.join(' or '.join(group) for group in SAM_FILES)} (transformers' "
        f"save_pretrained)"
    )
    if hub_id(source) is None:  # a hub id is looked for here first, but is no path to check
        check_visible(path, "SAM weights")
    if os.path.isdir(path):  # os.path: pathlib's raises where a folder is not searchable
        for group in SAM_FILES:
            if not any(there(path / f, "SAM weights") for f in group):
                raise WeightsNotFoundError(
                    f"SAM weights {path} have no {' or '.join(group)}: pass {layout}"
                )
        return path
    if os.path.exists(path) or looks_like_path(source):
        raise WeightsNotFoundError(
            f"SAM weights {source}: {'a file' if os.path.exists(path) else 'no such folder'}; set "
            f"data.sam_weights to {layout}, a hub id or one of {', '.join(SAM_WEIGHTS)}"
        )
    name = next((k for k, v in SAM_WEIGHTS.items() if v == source), source)
    kw = {
        "what": f"SAM ({source})",
        "local_hint": f"data.sam_weights=/path/to/folder, {layout}",
        "download_name": name,
        "downloading": downloading,
    }
    try:
        return hub_folder(source, SAM_FILES, **kw)
    except WeightsNotFoundError as e:
        # a folder ORG here, which this user may not search, may hold NAME: said too (a hub
        # id's ORG, not there, in a current folder nobody may look in, is no path)
        why = os.path.lexists(path.parts[0]) and hidden(path)
        if not why:
            raise
        raise WeightsNotFoundError(f"{e}; if {source} is a folder here, {why}") from None


class SamMaskGenerator:
    """``generator(image (H, W, 3) uint8) -> bool (K, H, W)``; the model is loaded on first use.

    Arguments:
      weights: hub id or local folder of a transformers SAM checkpoint (model + processor).
      device: where SAM runs (default: CUDA when available).
      points_per_side: prompt grid side.
      points_per_batch: prompts decoded at once (memory vs speed).
      pred_iou_thresh, stability_thresh: quality thresholds (SAM's defaults 0.88 and 0.95).
      nms_thresh: masks overlapping a better one by more than this IoU are dropped.
    """

    def __init__(
        self,
        weights: str | None,
        *,
        device=None,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_thresh: float = 0.95,
        nms_thresh: float = 0.7,
    ) -> None:
        if not weights:
            raise LoftUpError(
                "masks=sam needs SAM weights: set data.sam_weights to a hub id such as "
                "facebook/sam-vit-base or a local folder (or use masks=superpixels)"
            )
        self.weights = str(weights)
        self.folder = resolve_sam(self.weights)  # said now, before any image is read
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.points_per_side, self.points_per_batch = points_per_side, points_per_batch
        self.pred_iou_thresh, self.stability_thresh = pred_iou_thresh, stability_thresh
        self.nms_thresh = nms_thresh
        self._model = self._processor = None

    def _load(self) -> None:
        from ..featurizers.hf import from_transformers, quiet_transformers

        SamModel, SamProcessor = from_transformers("SamModel", "SamProcessor")

        try:
            with quiet_transformers():
                self._processor = SamProcessor.from_pretrained(self.folder)
                self._model = SamModel.from_pretrained(self.folder).to(self.device).eval()
        except (OSError, ValueError, KeyError) as e:  # not an unreadable image: the model
            why = one_line(e, 300)
            raise LoftUpError(f"cannot load SAM from {self.folder}: {why}") from None

    def release(self) -> None:
        """Free the model (it is loaded again if needed): training needs only the cached masks."""
        self._model = self._processor = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        if self._model is None:
            self._load()
        h, w = image.shape[:2]
        pil = Image.fromarray(image)
        inputs = self._processor(images=pil, return_tensors="pt")
        embeddings = self._model.get_image_embeddings(inputs["pixel_values"].to(self.device))
        n = self.points_per_side
        ys, xs = torch.meshgrid(
            (torch.arange(n) + 0.5) / n * h, (torch.arange(n) + 0.5) / n * w, indexing="ij"
        )
        points = torch.stack([xs.flatten(), ys.flatten()], dim=1).tolist()  # SAM takes (x, y)
        # every prompt in SAM's input frame at once (one point each): (1, P, 1, 2); the image
        # processor runs once, not once per batch of prompts
        prompts = self._processor(
            images=pil, input_points=[[[p] for p in points]], return_tensors="pt"
        )["input_points"]
        masks, scores = [], []
        for start in range(0, len(points), self.points_per_batch):
            out = self._model(
                image_embeddings=embeddings,
                input_points=prompts[:, start : start + self.points_per_batch].to(self.device),
                multimask_output=True,
            )
            logits = self._processor.image_processor.post_process_masks(
                out.pred_masks.cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"],
                binarize=False,
            )[0].flatten(0, 1)  # (P * 3, H, W)  # fmt: skip
            iou = out.iou_scores.cpu().flatten()
            stable = (logits > 1.0).flatten(1).sum(1) / (logits > -1.0).flatten(1).sum(1).clamp_min(
                1
            )
            keep = (iou >= self.pred_iou_thresh) & (stable >= self.stability_thresh)
            keep &= (logits > 0).flatten(1).any(1)
            masks.append(logits[keep] > 0)
            scores.append(iou[keep])
        masks, scores = torch.cat(masks), torch.cat(scores)
        masks = masks[dedupe(masks, scores, self.nms_thresh)]
        masks = masks[masks.flatten(1).sum(1).argsort(descending=True)]
        return masks.numpy()


def dedupe(masks: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices of masks (K, H, W) kept by greedy non-maximum suppression on mask IoU."""
    if masks.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    order = scores.argsort(descending=True)
    flat = masks[order].flatten(1).float()
    inter = flat @ flat.T
    area = flat.sum(1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp_min(1)
    kept: list[int] = []
    for i in range(flat.shape[0]):
        if not kept or bool((iou[i, kept] <= threshold).all()):
            kept.append(i)
    return order[torch.tensor(kept, dtype=torch.long)]
