from __future__ import annotations

import torch

from budgetnas.trainers.augment import NO_AUGMENT, AugmentConfig, random_affine


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_disabled_is_identity():
    x = torch.rand(4, 1, 28, 28)
    assert random_affine(x, NO_AUGMENT, _gen()) is x


def test_zero_strength_is_near_identity():
    x = torch.rand(4, 1, 28, 28)
    y = random_affine(x, AugmentConfig(1e-9, 0.0, 0.0), _gen())
    assert torch.allclose(x, y, atol=1e-5)


def test_same_generator_same_result_and_images_differ():
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0
    cfg = AugmentConfig(15.0, 0.1, 0.1)
    a, b = random_affine(x, cfg, _gen(1)), random_affine(x, cfg, _gen(1))
    assert torch.equal(a, b)
    assert a.shape == x.shape
    assert not torch.allclose(a[0], a[1])  # each image gets its own transform


def test_shift_moves_the_mass():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 12:16, 12:16] = 1.0
    y = random_affine(x, AugmentConfig(0.0, 0.2, 0.0), _gen(2))
    cols = torch.arange(28.0)
    centre = (y.sum(dim=(1, 2)) * cols).sum(1) / y.sum(dim=(1, 2, 3))
    assert centre.std() > 1.0  # shifted by up to +-5.6 pixels
    assert (centre - 13.5).abs().max() <= 0.2 * 28 + 0.5
