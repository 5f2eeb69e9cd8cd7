"""Noise whitening: the background's radial power spectrum, the filter, and its use on images."""

from __future__ import annotations

import torch

from hetacumn.physics.filters import soft_circular_mask
from hetacumn.physics.fourier import fft2_centered
from hetacumn.physics.render import render_images
from hetacumn.physics.rotations import random_rotations
from hetacumn.physics.whitening import (apply_radial_filter, noise_power_spectrum, radial_average, radial_filter,
                                        radial_profile_at, whitening_profile)
from hetacumn.simulate.volumes import toy_molecule
from tests.physics.helpers import coloured_noise, coloured_power

BOX = 32


def background() -> torch.Tensor:
    return 1 - soft_circular_mask(BOX, 0.9 * BOX / 2, 2.0, dtype=torch.float64)


def ring_power(images: torch.Tensor) -> torch.Tensor:
    return radial_average((fft2_centered(images).abs() ** 2).mean(0))


def test_radial_profile_is_interpolated_linearly_and_held_beyond_its_end():
    profile = torch.tensor([0.0, 1.0, 4.0, 9.0])
    values = radial_profile_at(profile, torch.tensor([0.0, 1.5, 2.25, 3.0, 10.0]))
    assert torch.allclose(values, torch.tensor([0.0, 2.5, 5.25, 9.0, 9.0]))
    grid = radial_filter(profile, 8)
    assert float(grid[4, 4]) == 0.0 and float(grid[4, 6]) == 4.0 and float(grid[0, 0]) == 9.0  # centre, (2, 0), corner


def test_white_noise_gives_its_variance_at_every_radius_and_a_flat_filter():
    noise = 3.0 * torch.randn(500, BOX, BOX, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noise = noise + torch.randn(500, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # offsets
    spectrum = noise_power_spectrum(noise, background())
    assert torch.allclose(spectrum[: BOX // 2 + 1], torch.full((BOX // 2 + 1,), 9.0 * BOX**2, dtype=torch.float64),
                          rtol=0.06)
    assert float((whitening_profile(spectrum) - 1).abs().max()) < 0.05


def test_coloured_noise_spectrum_is_read_from_the_background_of_particle_images():
    generator = torch.Generator().manual_seed(2)
    volume = torch.as_tensor(toy_molecule(BOX, 4.0)).double()
    clean = render_images(volume, random_rotations(400, generator=generator, dtype=torch.float64))
    clean = clean / clean.std() * 3  # a strong particle: its power must not leak into the estimate
    noise = coloured_noise(400, seed=3)
    spectrum = noise_power_spectrum(clean + noise, background())
    truth = coloured_power(torch.arange(BOX // 2 + 2, dtype=torch.float64))
    ratio = spectrum / truth
    ratio = ratio / ratio[4 : BOX // 2].mean()
    assert float((ratio[4 : BOX // 2 + 1] - 1).abs().max()) < 0.12
    assert 0.7 < float(ratio[1]) < 1.1  # the mask's blur flattens the sharp low-frequency peak a little
    whitened_images = apply_radial_filter(noise, whitening_profile(spectrum))
    whitened, before = ring_power(whitened_images), ring_power(noise)
    assert float(before[2] / before[12]) > 3.0
    assert 0.8 < float(whitened[2] / whitened[12]) < 1.25
    assert abs(float(whitened_images.var() / noise.var()) - 1) < 0.15  # the noise's total power is kept


def test_whitening_profile_is_clipped_where_the_estimate_vanishes():
    spectrum = torch.ones(BOX // 2 + 2, dtype=torch.float64)
    spectrum[10] = 0.0
    profile = whitening_profile(spectrum)
    assert float(profile[10]) == 10.0  # not infinite
    assert float(profile[3]) == float(profile[15]) and 0.95 < float(profile[3]) < 1  # the zero lowers the mean power
