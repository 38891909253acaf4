"""Batched random affine augmentation on the device (rotation, shift, scale).

One ``affine_grid`` + ``grid_sample`` per batch replaces per-sample PIL transforms; the random
draws come from a ``torch.Generator`` the caller owns, so runs are reproducible. Several
networks trained side by side (``trainers.fused``) each draw their images' transforms from
their own generator and share one ``grid_sample``: each image is transformed alone, so the
result is that of each network's own call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from budgetnas.trainers.recipe import NO_AUGMENT, AugmentConfig

__all__ = ["NO_AUGMENT", "AugmentConfig", "affine_theta", "random_affine", "random_affine_copies"]


def affine_theta(
    b: int,
    cfg: AugmentConfig,
    generator: torch.Generator | None,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """(B, 2, 3): ``b`` random affine transforms (rotation, zoom, shift) drawn from
    ``generator``, as ``affine_grid`` reads them."""

    def uniform(scale: float) -> torch.Tensor:  # (B,) in [-scale, scale]
        r = torch.rand(b, generator=generator, device=device, dtype=dtype)
        return (r * 2 - 1) * scale

    angle = uniform(math.radians(cfg.degrees))
    zoom = 1 + uniform(cfg.scale)
    # affine_grid maps output coordinates in [-1, 1] to input coordinates: the inverse
    # transform. A shift of t x size is 2t in these coordinates.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    tx, ty = uniform(2 * cfg.translate), uniform(2 * cfg.translate)
    return torch.stack(
        [torch.stack([cos, -sin, tx], dim=1), torch.stack([sin, cos, ty], dim=1)], dim=1
    )  # (B, 2, 3)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """x: (B, C, H, W) float, background 0. Returns the same shape, each image transformed."""
    if not cfg.enabled:
        return x
    return _warp(x, affine_theta(x.shape[0], cfg, generator, device=x.device, dtype=x.dtype))


def random_affine_copies(
    x: torch.Tensor, cfg: AugmentConfig, generators: Sequence[torch.Generator | None]
) -> torch.Tensor:
    """x: (N x B, C, H, W), the batches of N networks one after the other; the i-th batch's
    transforms drawn from ``generators[i]``, exactly as ``random_affine`` of that batch alone
    draws and applies them."""
    if not cfg.enabled:
        return x
    b = x.shape[0] // len(generators)
    theta = torch.cat(
        [affine_theta(b, cfg, g, device=x.device, dtype=x.dtype) for g in generators]
    )  # (N x B, 2, 3)
    return _warp(x, theta)
