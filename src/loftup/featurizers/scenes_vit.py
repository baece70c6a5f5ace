"""``scenes_vit_p8``: a small ViT trained on the synthetic scene world, shipped with the package.

It plays the part of DINOv2 in a world where nothing can be downloaded: its patch features
carry the class of the texture under each 8x8 patch, and nothing finer, so an upsampler has the
same job as with a real backbone (the class cannot be read from a pixel's colour; see
:mod:`loftup.data.scenes`). How the shipped weights were made: ``weights/scenes_vit_p8.md``.

Architecture: a convolutional stem (three 3x3 convolutions of stride 2, GELU) turns the
ImageNet-normalised image into an (H/8, W/8) grid, a depthwise 3x3 convolution adds position,
then pre-norm transformer blocks and a final LayerNorm, whose output are the features. There is no
learned position table, so any H, W that are multiples of 8 work without interpolation (other
sizes are resized to the nearest multiple, like every featurizer).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.paths import home_expanded
from ..errors import CheckpointError, UsageError, WeightsNotFoundError, first_line
from ..escaping import printable
from ..paths import check_visible
from ..read_refusal import read_refused
from . import Featurizer, FeaturizerSpec, register
from .sizes import check_backbone_batch, check_finite_images, to_patch_multiple

NAME = "scenes_vit_p8"


@dataclass
class SceneViTConfig:
    """Arguments:
    dim: feature channels C (transformer width).
    depth: transformer blocks.
    num_heads: attention heads.
    stem: channels of the first two stem convolutions (the third outputs ``dim``).
    mlp_ratio: hidden width of each block's MLP, in multiples of ``dim``.
    """

    dim: int = 64
    depth: int = 4
    num_heads: int = 4
    stem: tuple[int, int] = (24, 48)
    mlp_ratio: int = 4

    @classmethod
    def from_dict(cls, d: dict) -> SceneViTConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class Block(nn.Module):
    """Pre-norm transformer block on tokens (B, N, C)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))


class SceneViT(Featurizer):
    """ImageNet-normalised (B, 3, H, W) -> features (B, dim, H/8, W/8)."""

    name = NAME
    patch_size = 8

    def __init__(self, *, config: SceneViTConfig | None = None) -> None:
        """Arguments:
        config: the architecture (default: the shipped model's).
        """
        super().__init__()
        self.config = config = config or SceneViTConfig()
        self.dim = config.dim
        c1, c2 = config.stem
        self.stem = nn.Sequential(
            nn.Conv2d(3, c1, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(c2, config.dim, 3, stride=2, padding=1),
        )
        self.pos = nn.Conv2d(config.dim, config.dim, 3, padding=1, groups=config.dim)
        self.blocks = nn.ModuleList(
            Block(config.dim, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) ImageNet-normalised -> (B, dim, h, w), h, w = H/8, W/8 (snapped)."""
        check_backbone_batch(image, self.norm.weight.device)
        image = to_patch_multiple(image, self.patch_size)  # the package's one size policy
        check_finite_images(image)  # what the backbone is given, after the resize
        h, w = (n // self.patch_size for n in image.shape[-2:])
        x = self.stem(image.to(self.norm.weight.dtype))  # in the model's precision
        x = x + self.pos(x)
        b, c = x.shape[:2]
        t = x.flatten(2).transpose(1, 2)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t).transpose(1, 2).reshape(b, c, h, w)


def shipped_weights() -> Path:
    """The folder of package data holding the shipped weights and their note."""
    return Path(__file__).resolve().parent.parent / "weights"


def save_backbone(model: SceneViT, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (architecture + ``extra``) to a folder."""
    from safetensors.torch import save_file

    from ..atomic import atomic_write, write_json

    directory = Path(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(state, tmp))
    config = {"name": NAME, "architecture": asdict(model.config), **(extra or {})}
    write_json(directory / "config.json", config)
    return directory


def load_backbone(weights: str | Path | None = None, device=None) -> SceneViT:
    """The shipped model (``weights=None``), or one saved by :func:`save_backbone` in a folder."""
    if weights is None:
        files = (shipped_weights() / f"{NAME}.safetensors", shipped_weights() / f"{NAME}.json")
    elif not os.fspath(weights).strip():  # Path("") is the current folder: its files were read
        raise UsageError(
            f"{NAME} weights are empty or blank (an unset variable?); pass a folder written by "
            "`loftup world backbone --out DIR`, or leave them out for the shipped weights"
        )
    else:  # "--weights=~/bb" reaches us unexpanded: ~ is the home folder, as elsewhere
        root = home_expanded(weights, f"{NAME} weights")
        files = (root / "model.safetensors", root / "config.json")
    for f in files:  # os.path: pathlib's is_file raises where a folder is not searchable
        check_visible(f, f"{NAME} weights")
        if not os.path.isfile(f):
            raise WeightsNotFoundError(
                f"{NAME}: {f} not found; pass a folder written by "
                "`loftup world backbone --out DIR`, or reinstall loftup for the shipped weights"
            )
    fix = "write the folder again with `loftup world backbone --out DIR`"
    try:
        info = json.loads(files[1].read_text())
        model = SceneViT(config=SceneViTConfig.from_dict(info["architecture"]))
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as e:
        raise CheckpointError(
            f"{files[1]} is not a valid {NAME} config ({printable(first_line(e, typed=True))}); "
            f"{fix}"
        ) from None
    except PermissionError as e:  # another user's, of mode 600: said with its chmod
        raise read_refused(files[1], e, f"{NAME} config") or e from None
    from ..hub import read_safetensors

    state = read_safetensors(files[0], fix)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{files[0]} does not fit the architecture in {files[1]} "
            f"({printable(first_line(e))}...); {fix}"
        ) from None
    return model.to(device) if device is not None else model


register(
    FeaturizerSpec(
        name=NAME,
        builder=load_backbone,
        patch_size=8,
        dim=SceneViTConfig().dim,
        default_weights=None,
        description="small ViT trained on loftup's synthetic scenes (ships with the package)",
    )
)
