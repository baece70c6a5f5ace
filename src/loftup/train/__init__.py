"""Training LoftUp with the paper's two-stage recipe (method.md §2).

    from loftup.train import load_config, train
    result = train(load_config("stage1_cpu", ["data.root=/my/images", "log.out_dir=runs/s1"]))
    result.losses          # loss per step; result.pretrained is a save_pretrained folder

Pieces, each usable alone: :mod:`.targets` (mask-bicubic), :mod:`.losses`, :mod:`.views`
(jitter), :mod:`.downsampler`, :mod:`.noise` (mask noise), :mod:`.ema`, :mod:`.config`,
:mod:`.loop` (the loop; :mod:`.result` what it returns), :mod:`.distributed`. Around the loop:
:mod:`.preflight` (what is checked before anything loads), :mod:`.start` (what a run starts
from: the checkpoint it resumes, its models and optimiser, its data, loader and folder),
:mod:`.build` (models and optimiser from the config), :mod:`.loader` (the data and its workers;
:mod:`.feed` reads their batches, :mod:`.reads` waits on the reads made without them),
:mod:`.checkpoint`, :mod:`.run_lock` (its lock) and :mod:`.run_folder` (the run's folder at its
start and end), :mod:`.monitor` and :mod:`.pictures` (what a run writes), :mod:`.stopping`
(SIGTERM, SIGHUP and Ctrl-C; :mod:`.stop_signals` the stop each raises), :mod:`.gradients`
(clipping and non-finite gradients).
"""

from __future__ import annotations

from .config import TrainConfig, default_config, load_config
from .loop import train
from .result import TrainResult
from .stop_signals import HungUp

__all__ = ["HungUp", "TrainConfig", "TrainResult", "default_config", "load_config", "train"]
