"""Batched random affine augmentation on the device (rotation, shift, scale).

One ``affine_grid`` + ``grid_sample`` per batch replaces per-sample PIL transforms; the random
draws come from a ``torch.Generator`` the caller owns, so runs are reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from budgetnas.trainers.recipe import NO_AUGMENT, AugmentConfig

__all__ = ["NO_AUGMENT", "AugmentConfig", "random_affine"]


def random_affine(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """x: (B, C, H, W) float, background 0. Returns the same shape, each image transformed."""
    if not cfg.enabled:
        return x
    b = x.shape[0]

    def uniform(scale: float) -> torch.Tensor:  # (B,) in [-scale, scale]
        r = torch.rand(b, generator=generator, device=x.device, dtype=x.dtype)
        return (r * 2 - 1) * scale

    angle = uniform(math.radians(cfg.degrees))
    zoom = 1 + uniform(cfg.scale)
    # affine_grid maps output coordinates in [-1, 1] to input coordinates: the inverse
    # transform. A shift of t x size is 2t in these coordinates.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    tx, ty = uniform(2 * cfg.translate), uniform(2 * cfg.translate)
    theta = torch.stack(
        [torch.stack([cos, -sin, tx], dim=1), torch.stack([sin, cos, ty], dim=1)], dim=1
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
