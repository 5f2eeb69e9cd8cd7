"""The image error in Fourier space (Parseval: every real-space pixel) and in real space (the particle's disk)."""

from __future__ import annotations

import pytest
import torch

from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.fourier import fft2_centered, ifft2_centered
from hetacumn.physics.grids import real_grid_2d
from hetacumn.tasks.base import StepContext, image_error, weighted_mse

BOX = 64


def _context(half: HalfPlane, space: str) -> StepContext:
    return StepContext(half, None, 0, torch.Generator().manual_seed(0), loss_space=space)


def _blob_ft(half: HalfPlane, centre_px: tuple[float, float], sigma_px: float) -> torch.Tensor:
    offsets = real_grid_2d(BOX) - torch.tensor(centre_px)
    blob = torch.exp(-(offsets**2).sum(-1) / (2 * sigma_px**2))
    return half.gather(fft2_centered(blob[None].to(torch.complex64)))


def test_fourier_error_is_the_mean_over_every_real_space_pixel():
    half = HalfPlane.build(BOX, BOX // 2 - 1)
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(4, len(half.weights), dtype=torch.complex64, generator=generator)
    target = torch.randn(4, len(half.weights), dtype=torch.complex64, generator=generator)
    origin = (half.coords == 0).all(-1)
    pred[:, origin], target[:, origin] = pred[:, origin].real + 0j, target[:, origin].real + 0j  # real images
    pixels = ifft2_centered(half.scatter(pred - target))
    assert float(pixels.imag.abs().max()) < 1e-5
    expected = (pixels.real**2).mean(dim=(-1, -2))
    torch.testing.assert_close(image_error(pred, target, _context(half, "fourier")), expected, rtol=1e-4, atol=0)
    torch.testing.assert_close(weighted_mse(pred, target, half), expected, rtol=1e-4, atol=0)


def test_real_space_error_ignores_the_background_and_keeps_the_particle():
    half = HalfPlane.build(BOX, BOX // 2 - 1)
    pred = _blob_ft(half, (0.0, 0.0), 5.0)
    corner = pred + _blob_ft(half, (27.0, 27.0), 1.5)  # 38 px from the centre, beyond the disk's soft edge
    inside = pred + _blob_ft(half, (4.0, -3.0), 1.5)
    fourier, real = _context(half, "fourier"), _context(half, "real")
    assert float(image_error(pred, corner, real)) < 1e-3 * float(image_error(pred, corner, fourier))
    assert float(image_error(pred, inside, real)) == pytest.approx(float(image_error(pred, inside, fourier)), rel=0.02)
