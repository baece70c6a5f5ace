"""Random views for the reconstruction loss: jitter (shift + zoom), applied alike to images and features.

A jitter shifts the view by up to ``max_shift`` pixels (the border that comes in is the image
reflected, as after padding by reflection) and zooms it by a factor in ``zoom_range`` about the
centre. The output keeps the input's size, so the same transform applies to the guidance image
(B, 3, H, W) and to high-resolution features (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_jitters(
    n: int,
    count: int,
    *,
    max_shift: float = 8.0,
    zoom_range: tuple[float, float] = (0.9, 1.1),
    generator=None,
) -> torch.Tensor:
    """(n, count, 3) parameters (shift_y px, shift_x px, zoom) for n samples x count views."""
    u = torch.rand(n, count, 3, generator=generator)
    shift = (u[..., :2] * 2.0 - 1.0) * max_shift
    zoom = zoom_range[0] + u[..., 2:] * (zoom_range[1] - zoom_range[0])
    return torch.cat([shift, zoom], dim=-1)


def jitter(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply per-sample jitters ``params`` (B, 3) to ``x`` (B, C, H, W) -> (B, C, H, W).

    Shifts are in pixels of ``x``'s own size (they scale with the size, so an image and its
    features at another resolution move by the same fraction).
    """
    b, _, h, w = x.shape
    if params.shape != (b, 3):  # a function on tensors: a plain ValueError, like torch's
        raise ValueError(f"expected jitter params ({b}, 3), got {tuple(params.shape)}")
    params = params.to(device=x.device, dtype=torch.float32)
    inv_zoom = 1.0 / params[:, 2]
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0] = inv_zoom
    theta[:, 1, 1] = inv_zoom
    theta[:, 0, 2] = params[:, 1] * 2.0 / w
    theta[:, 1, 2] = params[:, 0] * 2.0 / h
    grid = F.affine_grid(theta, (b, 1, h, w), align_corners=False).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def scale_jitters(params: torch.Tensor, factor: float) -> torch.Tensor:
    """Jitter params for a copy of the image ``factor`` times as large (shifts scale, zoom not)."""
    out = params.clone()
    out[..., :2] *= factor
    return out
