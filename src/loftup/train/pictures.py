"""The pictures a run draws as it trains: a few images of its data, their backbone features
and the upsampler's (written by :class:`~loftup.train.monitor.Monitor`)."""

from __future__ import annotations

import torch

from ..data.dataset import MaskedImages
from .config import TrainConfig
from .monitor import Monitor
from .reads import reads_waited_on


def validation_images(dataset: MaskedImages, cfg: TrainConfig, sizes, device):
    """The first ``log.num_viz`` readable images, in [0, 1] at the size the pictures use (None:
    none drawn), each read waited on ``data.timeout`` seconds at most (as the loader's)."""
    from ..data.images import READ_ERRORS

    if not cfg.log.viz_every:  # no pictures: nothing to read
        return None
    load = reads_waited_on(dataset, cfg.data.timeout, cfg.data.root)
    pics = []
    for i in range(min(len(dataset), 4 * cfg.log.num_viz)):
        if len(pics) == cfg.log.num_viz:
            break
        try:
            pics.append(load(i)[0])
        except READ_ERRORS:
            continue
    if not pics:
        return None
    images01 = torch.stack(pics).float().to(device) / 255.0
    if cfg.stage == 2:
        s = sizes[0]
        images01 = torch.nn.functional.interpolate(
            images01, size=(s, s), mode="bilinear", antialias=True
        )
    return images01


@torch.no_grad()
def pictures(monitor: Monitor, upsampler, featurizer, images01, step: int) -> None:
    image = featurizer.normalize(images01)
    lr = featurizer(image).float()
    was_training = upsampler.training
    upsampler.eval()
    hr = upsampler(lr, image)
    upsampler.train(was_training)
    monitor.pictures(step, images01, lr, hr)
