"""Soft masks and Gaussian filters against their analytic forms."""

from __future__ import annotations

import math

import torch

from hetacumn.physics.filters import gaussian_blur, gaussian_lowpass_ft, soft_circular_mask
from hetacumn.physics.grids import real_grid_2d


def test_soft_circular_mask_profile():
    mask = soft_circular_mask(64, radius_px=20.0, width_px=4.0, dtype=torch.float64)
    centre = 32
    assert mask[centre, centre].item() == 1.0
    assert mask[centre, centre + 20].item() == 1.0
    assert abs(mask[centre, centre + 22].item() - 0.5) < 1e-12  # mid-edge of the raised cosine
    assert mask[centre, centre + 24].item() == 0.0
    assert mask[0, 0].item() == 0.0
    hard = soft_circular_mask(64, radius_px=10.0, width_px=0.0)
    assert hard.sum().item() == sum(1 for y in range(-32, 32) for x in range(-32, 32) if x * x + y * y <= 100)


def test_gaussian_lowpass_transfer_function():
    box, sigma = 32, 1.5
    transfer = gaussian_lowpass_ft(box, sigma, dtype=torch.float64)
    assert transfer[16, 16].item() == 1.0
    k = 5 / box
    assert abs(transfer[16, 21].item() - math.exp(-2 * math.pi**2 * sigma**2 * k**2)) < 1e-14
    batched = gaussian_lowpass_ft(box, torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert batched.shape == (2, box, box)


def test_gaussian_blur_of_a_delta_is_the_normalised_gaussian():
    box, sigma = 32, 2.0
    delta = torch.zeros(box, box, dtype=torch.float64)
    delta[box // 2, box // 2] = 1.0
    blurred = gaussian_blur(delta, sigma)
    radius_sq = (real_grid_2d(box, dtype=torch.float64) ** 2).sum(-1)
    expected = torch.exp(-radius_sq / (2 * sigma**2)) / (2 * math.pi * sigma**2)
    assert (blurred - expected).abs().max() < 1e-6
    assert abs(blurred.sum().item() - 1.0) < 1e-12
    second_moment_x = (blurred * real_grid_2d(box, dtype=torch.float64)[..., 0] ** 2).sum().item()
    assert abs(second_moment_x - sigma**2) < 1e-4
