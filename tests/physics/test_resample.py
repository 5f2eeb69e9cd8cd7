"""Fourier cropping: exact on band-limited images, constant-preserving, and commuting with projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hetacumn.physics.resample import fourier_crop, fourier_crop_volume, fourier_resize_volume
from hetacumn.physics.rotations import random_rotations
from hetacumn.physics.slice import project_volume
from hetacumn.simulate.volumes import toy_molecule


def _cosines(box: int, field_angstrom: float, waves: np.ndarray) -> torch.Tensor:
    """``sum_j a_j cos(2 pi (kx_j x + ky_j y) / L + phase_j)`` sampled on a ``box``-pixel grid of side ``L``,
    positions measured from the centre pixel ``box // 2``; ``waves`` rows are ``(kx, ky, a, phase)``,
    with integer ``k`` in cycles per field of view (so the function is periodic in the box)."""
    positions = (torch.arange(box, dtype=torch.float64) - box // 2) * field_angstrom / box
    y, x = torch.meshgrid(positions, positions, indexing="ij")
    image = torch.zeros(box, box, dtype=torch.float64)
    for kx, ky, amplitude, phase in waves:
        image += amplitude * torch.cos(2 * np.pi * (kx * x + ky * y) / field_angstrom + phase)
    return image


def test_band_limited_image_is_resampled_exactly():
    """Cosines below the new Nyquist frequency, sampled at 64 px, cropped to 24 px, equal the same cosines
    sampled directly at 24 px (the centre pixel D // 2 maps to d // 2: an off-by-one would shift phases)."""
    rng = np.random.default_rng(3)
    waves = np.column_stack([rng.integers(-11, 12, 12), rng.integers(-11, 12, 12),
                             rng.uniform(0.5, 2, 12), rng.uniform(0, 2 * np.pi, 12)])
    fine, coarse = _cosines(64, 150.0, waves), _cosines(24, 150.0, waves)
    error = (fourier_crop(fine[None], 24)[0] - coarse).abs().max().item()
    assert error < 1e-12
    # The same in float32, batched, keeps dtype and scale.
    batch = torch.stack([fine, 2 * fine]).float()
    cropped = fourier_crop(batch, 24)
    assert cropped.dtype == torch.float32 and cropped.shape == (2, 24, 24)
    assert (cropped[1] - 2 * coarse).abs().max().item() < 1e-4


def test_odd_box_is_resampled_exactly_to_an_even_box():
    """An odd box (centre D // 2, as RELION and our simulator place it) crops to an even one exactly."""
    rng = np.random.default_rng(4)
    waves = np.column_stack([rng.integers(-9, 10, 8), rng.integers(-9, 10, 8),
                             rng.uniform(0.5, 2, 8), rng.uniform(0, 2 * np.pi, 8)])
    fine, coarse = _cosines(33, 99.0, waves), _cosines(20, 99.0, waves)
    assert (fourier_crop(fine[None], 20)[0] - coarse).abs().max().item() < 1e-12


def test_constant_image_keeps_its_value_and_same_size_is_identity():
    constant = torch.full((3, 32, 32), 4.25, dtype=torch.float64)
    assert (fourier_crop(constant, 8) - 4.25).abs().max().item() < 1e-13
    noise = torch.randn(2, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert (fourier_crop(noise, 32) - noise).abs().max().item() < 1e-13
    # Cropping twice equals cropping once: the kept frequencies are nested.
    assert (fourier_crop(fourier_crop(noise, 16), 8) - fourier_crop(noise, 8)).abs().max().item() < 1e-13


@pytest.mark.parametrize("shape, size", [((2, 32, 30), 16), ((2, 32, 32), 15), ((2, 32, 32), 34), ((2, 31, 31), 32)])
def test_bad_sizes_are_refused(shape, size):
    with pytest.raises(ValueError):
        fourier_crop(torch.zeros(shape), size)


def test_downsampled_projection_is_the_projection_of_the_downsampled_volume():
    """crop(project(V)) = (D/d) project(crop(V)): projections are sums in voxels, and a d-grid voxel is D/d
    times longer, so equal line integrals in Å need that factor."""
    box, size = 64, 32
    volume = torch.from_numpy(toy_molecule(box, 3.0, 0.0)).double()
    small = fourier_crop_volume(volume, size)
    # Along the axes the projection is an exact sum: the two routes agree to rounding.
    for axis in range(3):
        exact = fourier_crop(volume.sum(axis)[None], size)[0] * size / box
        assert (exact - small.sum(axis)).abs().max().item() < 1e-12 * small.sum(axis).abs().max().item()
    # At random poses the projector's own interpolation error (about 1 % at either size) is the limit.
    rotations = random_rotations(6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    routes = [fourier_crop(project_volume(volume, rotations), size) * size / box, project_volume(small, rotations)]
    peak = routes[1].abs().max().item()
    correlation = torch.corrcoef(torch.stack([r.flatten() for r in routes]))[0, 1].item()
    assert (routes[0] - routes[1]).abs().max().item() < 0.03 * peak
    assert correlation > 0.999
    # Control: the same images one pixel off (a centring error) disagree by far more.
    assert (torch.roll(routes[0], 1, dims=-1) - routes[1]).abs().max().item() > 0.3 * peak


def _cosine_volume(box: int, waves) -> torch.Tensor:
    """Sum of 3-D cosines with integer cycles per box (``(kx, ky, kz, amplitude, phase)`` rows), positions from the
    centre voxel ``box // 2`` in units of the box (the same function on any grid of the same field of view)."""
    positions = (torch.arange(box, dtype=torch.float64) - box // 2) / box
    z, y, x = torch.meshgrid(positions, positions, positions, indexing="ij")
    volume = torch.zeros(box, box, box, dtype=torch.float64)
    for kx, ky, kz, amplitude, phase in waves:
        volume += amplitude * torch.cos(2 * np.pi * (kx * x + ky * y + kz * z) + phase)
    return volume


def test_band_limited_volume_is_resized_exactly_both_ways():
    waves = [(0, 0, 0, 1.5, 0.0), (3, -2, 1, 1.0, 0.4), (-5, 4, 6, 0.5, -1.1), (7, 0, -3, 0.25, 2.0)]
    coarse, fine = _cosine_volume(16, waves), _cosine_volume(40, waves)
    np.testing.assert_allclose(fourier_resize_volume(coarse, 40).numpy(), fine.numpy(), atol=1e-10)
    np.testing.assert_allclose(fourier_resize_volume(fine, 16).numpy(), coarse.numpy(), atol=1e-10)
    np.testing.assert_allclose(fourier_crop_volume(fine, 16).numpy(), coarse.numpy(), atol=1e-10)
