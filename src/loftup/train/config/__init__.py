"""Training configuration: typed dataclasses, read from YAML, overridable with ``key=value``.

The defaults are the paper's released recipe (DINOv2 ViT-S/14 on SA-1B, see method.md §2);
:func:`default_config` gives stage 1's or stage 2's. A YAML file (or a packaged config name such
as ``stage1_sa1b``) overrides them, then ``key=value`` pairs do (dotted keys, YAML values:
``optim.lr=3e-4``, ``data.root=/data/sa1b``, ``model.attention_window=5``, ``log.out_dir=null``).

One idea a file: :mod:`.schema` (the dataclasses and defaults), :mod:`.yaml_text` (YAML text
read safely), :mod:`.loading` (overrides, building the dataclasses), :mod:`.paths` (the path
keys: ``~`` and ``$VAR`` expanded, relative paths), :mod:`.checks` (the values each key may
take). Every name is importable from ``loftup.train.config`` itself.
"""

from __future__ import annotations

from .checks import CHOICES, NOT_EMPTY, RANGES, check_backbone_fit, validate
from .loading import build, load_config, merge, parse_overrides
from .schema import (
    DataConfig,
    LogConfig,
    ModelConfig,
    OptimConfig,
    ReconConfig,
    Stage1Config,
    Stage2Config,
    TrainConfig,
    default_config,
)
from .yaml_text import packaged_configs, read_yaml

__all__ = [
    "CHOICES",
    "NOT_EMPTY",
    "RANGES",
    "DataConfig",
    "LogConfig",
    "ModelConfig",
    "OptimConfig",
    "ReconConfig",
    "Stage1Config",
    "Stage2Config",
    "TrainConfig",
    "build",
    "check_backbone_fit",
    "default_config",
    "load_config",
    "merge",
    "packaged_configs",
    "parse_overrides",
    "read_yaml",
    "validate",
]
