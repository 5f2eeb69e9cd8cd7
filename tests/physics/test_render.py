"""The forward model: image = T(-shift)[IFT(CTF * FT(projection))]."""

from __future__ import annotations

import numpy as np
import torch

from hetacumn.physics.ctf import CTFParams, ctf_images
from hetacumn.physics.fourier import fft2_centered, ifft2_centered
from hetacumn.physics.render import fitted_amplitudes, render_images
from hetacumn.physics.rotations import random_rotations
from hetacumn.physics.shift import translate_images
from hetacumn.physics.slice import project_volume
from tests.physics.helpers import gaussian_projections, gaussian_volume, image_centroid, random_gaussian_model

BOX = 32


def test_render_without_ctf_or_shift_is_the_projection():
    volume = torch.randn(BOX, BOX, BOX, generator=torch.Generator().manual_seed(1))
    rotations = random_rotations(4, torch.Generator().manual_seed(2))
    assert torch.equal(render_images(volume, rotations), project_volume(volume, rotations))


def test_shift_puts_the_particle_centre_at_box_centre_minus_shift():
    volume = gaussian_volume(BOX, torch.zeros(1, 3, dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
    rotations = random_rotations(3, torch.Generator().manual_seed(3), dtype=torch.float64)
    shift_px = torch.tensor([[2.0, -3.0], [-1.5, 0.5], [0.0, 4.25]], dtype=torch.float64)
    centroids = image_centroid(render_images(volume, rotations, shift_px=shift_px))
    assert torch.allclose(centroids, -shift_px, atol=0.05)  # measured 0.024 (tails wrap around the box)


def test_render_with_ctf_and_shift_matches_the_analytic_model():
    generator = torch.Generator().manual_seed(4)
    centers, sigmas = random_gaussian_model(30, BOX, generator)
    rotations = random_rotations(16, generator, dtype=torch.float64)
    rng = np.random.default_rng(4)
    params = CTFParams.from_numpy(defocus_u_angstrom=rng.uniform(10000, 25000, 16),
                                  defocus_v_angstrom=rng.uniform(10000, 25000, 16),
                                  defocus_angle_deg=rng.uniform(0, 180, 16), voltage_kv=300.0,
                                  spherical_aberration_mm=2.7, amplitude_contrast=0.1)
    ctf = ctf_images(params, BOX, 1.5)
    shift_px = torch.from_numpy(rng.uniform(-3, 3, (16, 2)))
    rendered = render_images(gaussian_volume(BOX, centers, sigmas), rotations, ctf=ctf, shift_px=shift_px)
    analytic = gaussian_projections(BOX, centers, sigmas, rotations)
    expected = translate_images(ifft2_centered(fft2_centered(analytic) * ctf).real, -shift_px)
    assert ((rendered - expected).norm() / expected.norm()).item() < 0.025  # measured 0.013


def test_fitted_amplitudes_recover_each_images_scale_and_ignore_what_is_orthogonal():
    generator = torch.Generator().manual_seed(0)
    rendered = torch.randn(3, 8, 8, generator=generator, dtype=torch.float64)
    other = torch.randn(3, 8, 8, generator=generator, dtype=torch.float64)
    other = other - ((other * rendered).sum((1, 2)) / (rendered**2).sum((1, 2)))[:, None, None] * rendered
    scales = torch.tensor([0.7, 1.0, 1.4], dtype=torch.float64)
    images = scales[:, None, None] * rendered + other
    torch.testing.assert_close(fitted_amplitudes(images, rendered), scales)
    assert fitted_amplitudes(-rendered, rendered).tolist() == [0.0, 0.0, 0.0]  # never negative
