"""Fourier translations: T(s) moves content by +s (x, y) pixels."""

from __future__ import annotations

import math

import torch

from hetacumn.physics.fourier import fft2_centered, ifft2_centered
from hetacumn.physics.grids import real_grid_2d
from hetacumn.physics.shift import translate_ft, translate_images


def test_integer_shift_moves_a_delta_exactly():
    box = 16
    image = torch.zeros(2, box, box, dtype=torch.float64)
    image[:, box // 2, box // 2] = 1.0
    shifts = torch.tensor([[3.0, -2.0], [-5.0, 7.0]], dtype=torch.float64)
    moved = translate_images(image, shifts)
    expected = torch.zeros_like(image)
    expected[0, box // 2 - 2, box // 2 + 3] = 1.0
    expected[1, box // 2 + 7, box // 2 - 5] = 1.0
    assert torch.allclose(moved, expected, atol=1e-12)


def test_shift_then_inverse_shift_is_identity():
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(4, 24, 24, generator=generator, dtype=torch.float64)
    shifts = (torch.rand(4, 2, generator=generator, dtype=torch.float64) - 0.5) * 9
    images_ft = fft2_centered(images)
    assert torch.allclose(translate_ft(translate_ft(images_ft, shifts), -shifts), images_ft, atol=1e-10)
    integer = shifts.round()
    assert torch.allclose(translate_images(translate_images(images, integer), -integer), images, atol=1e-12)
    # A fractional ramp breaks the unpaired Nyquist row/column of an even box; without them it is exact.
    band_limited_ft = images_ft.clone()
    band_limited_ft[:, 0, :] = 0
    band_limited_ft[:, :, 0] = 0
    band_limited = ifft2_centered(band_limited_ft).real
    assert torch.allclose(translate_images(translate_images(band_limited, shifts), -shifts), band_limited, atol=1e-12)


def test_subpixel_shift_matches_an_analytic_gaussian():
    box, sigma = 32, 2.0
    pixels = real_grid_2d(box, dtype=torch.float64)

    def gaussian(center):
        return torch.exp(-((pixels - torch.tensor(center, dtype=torch.float64)) ** 2).sum(-1) / (2 * sigma**2))

    shift = torch.tensor([1.3, -2.7], dtype=torch.float64)
    moved = translate_images(gaussian([0.0, 0.0]), shift)
    assert (moved - gaussian([1.3, -2.7])).abs().max() < 1e-6
    assert abs(moved.sum().item() - 2 * math.pi * sigma**2) < 1e-6


def test_integer_shift_tensor_is_accepted():
    image = torch.zeros(8, 8)
    image[4, 4] = 1.0
    assert translate_images(image, torch.tensor([1, 0]))[4, 5].item() > 0.999
