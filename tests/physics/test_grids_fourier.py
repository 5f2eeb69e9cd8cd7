"""Grids are centred at D // 2 with (x, y, z) ordering; centred FFTs and Hartley transforms."""

from __future__ import annotations

import math

import torch

from hetacumn.physics.fourier import (
    fft2_centered,
    fft3_centered,
    fourier_to_hartley,
    hartley2,
    hartley_to_fourier,
    ifft2_centered,
    ifft3_centered,
    ihartley2,
)
from hetacumn.physics.grids import centered_indices, fourier_grid_2d, fourier_grid_3d, radial_grid_2d, real_grid_2d


def test_grids_are_centred_and_ordered_xy():
    box = 8
    assert centered_indices(box).tolist() == [-4, -3, -2, -1, 0, 1, 2, 3]
    grid = real_grid_2d(box)
    assert grid[box // 2, box // 2].tolist() == [0, 0]
    assert grid[2, 7].tolist() == [3, -2]  # [y, x] indexing, (x, y) values
    assert torch.allclose(fourier_grid_2d(box)[0, 0], torch.tensor([-0.5, -0.5]))  # Nyquist corner
    assert torch.allclose(fourier_grid_3d(box)[1, 2, 7], torch.tensor([3 / 8, -2 / 8, -3 / 8]))
    assert radial_grid_2d(box)[4 - 3, 4 - 4].item() == 5.0


def test_fft_of_offset_delta_is_a_phase_ramp():
    box = 16
    image = torch.zeros(box, box, dtype=torch.float64)
    x0, y0 = 3, -5
    image[box // 2 + y0, box // 2 + x0] = 1.0
    freqs = fourier_grid_2d(box, dtype=torch.float64)
    expected = torch.exp(-2j * math.pi * (freqs[..., 0] * x0 + freqs[..., 1] * y0))
    assert torch.allclose(fft2_centered(image), expected, atol=1e-12)


def test_fft_round_trips():
    images = torch.randn(3, 12, 12, dtype=torch.float64)
    volume = torch.randn(10, 10, 10, dtype=torch.float64)
    assert torch.allclose(ifft2_centered(fft2_centered(images)).real, images, atol=1e-12)
    assert torch.allclose(ifft3_centered(fft3_centered(volume)).real, volume, atol=1e-12)
    # A centred delta has a flat transform; the zero frequency sums the volume.
    assert torch.allclose(fft3_centered(volume)[5, 5, 5].real, volume.sum())


def test_hartley_involution_and_conversion():
    images = torch.randn(4, 16, 16, dtype=torch.float64)
    n_pixels = 16 * 16
    assert torch.allclose(hartley2(hartley2(images)), n_pixels * images, atol=1e-10)
    assert torch.allclose(ihartley2(hartley2(images)), images, atol=1e-12)
    images_ft = fft2_centered(images)
    assert torch.allclose(hartley_to_fourier(fourier_to_hartley(images_ft)), images_ft, atol=1e-10)
    volume = torch.randn(8, 8, 8, dtype=torch.float64)
    volume_ft = fft3_centered(volume)
    assert torch.allclose(hartley_to_fourier(fourier_to_hartley(volume_ft), dims=3), volume_ft, atol=1e-10)


def test_negate_frequencies_is_k_to_minus_k_about_the_centre():
    from hetacumn.physics.fourier import fft2_centered, negate_frequencies

    images = torch.randn(3, 16, 16, dtype=torch.float64)
    # the transform of a real image is Hermitian: F(-k) = conj(F(k))
    spectrum = fft2_centered(images)
    assert torch.allclose(negate_frequencies(spectrum), spectrum.conj(), atol=1e-10)
    delta = torch.zeros(16, 16)
    delta[8 + 2, 8 + 3] = 1  # (x, y) = (3, 2) from the centre
    assert negate_frequencies(delta)[8 - 2, 8 - 3] == 1
    assert torch.equal(negate_frequencies(negate_frequencies(images)), images)
