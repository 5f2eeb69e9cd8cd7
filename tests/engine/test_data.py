"""Training batches: lazy reading equals in-memory reading; statistics are sensible; coloured noise is whitened."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hetacumn.data.images import ParticleImages, describe_whitening
from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.ctf import ctf_images
from hetacumn.tasks.base import ctf_at
from tests.physics.helpers import coloured_noise, coloured_power


def test_lazy_and_in_memory_batches_are_identical(tiny_particles):
    in_memory = ParticleImages(tiny_particles)
    lazy = ParticleImages(tiny_particles, max_memory_gb=0)
    assert lazy._cache is None and in_memory._cache is not None
    index = np.array([200, 3, 77, 3, 0])
    a, b = in_memory.batch(index, torch.device("cpu")), lazy.batch(index, torch.device("cpu"))
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.ctf.defocus_u_angstrom, b.ctf.defocus_u_angstrom)


def test_estimated_snr_is_near_the_simulated_one(tiny_particles):
    # The tiny set is simulated at SNR 100 over the whole image; the estimate uses the window only,
    # where the signal is concentrated, so it comes out higher, never lower.
    stats = ParticleImages(tiny_particles).stats
    assert stats.snr > 50
    batch = ParticleImages(tiny_particles).batch(np.arange(256), torch.device("cpu"))
    assert abs(float(batch.images.std()) - 1.0) < 0.1  # normalised by the sample's windowed std


class _ArrayImages:
    """An in-memory stand-in for a particle set's image source."""

    def __init__(self, images: np.ndarray):
        self.array, self.box_size = images.astype(np.float32), images.shape[-1]

    def __len__(self) -> int:
        return len(self.array)

    def read(self, indices) -> np.ndarray:
        return self.array[np.asarray(indices)]


@pytest.fixture
def coloured(tiny_particles):
    """The tiny set (SNR 100, nearly clean) under coloured noise: 6x more power at low frequencies than at Nyquist."""
    clean = tiny_particles.images.read(np.arange(len(tiny_particles)))
    noise = coloured_noise(len(clean), seed=4).numpy()
    return dataclasses.replace(tiny_particles, images=_ArrayImages(clean + 2 * clean.std() / noise.std() * noise))


def test_nearly_clean_images_are_not_whitened(tiny_particles):
    data = ParticleImages(tiny_particles, whiten=True)
    assert data.stats.whitening is None and data.batch(np.arange(4), torch.device("cpu")).whitening is None
    assert "nearly noise-free" in describe_whitening(True, data.stats.whitening)


def test_coloured_noise_is_whitened_with_the_inverse_of_its_amplitude(coloured):
    data = ParticleImages(coloured, whiten=True)
    profile = torch.from_numpy(data.stats.whitening)
    expected = coloured_power(torch.tensor([12.0, 3.0])).sqrt()  # W ~ 1 / noise amplitude
    assert abs(float(profile[3] / profile[12]) / float(expected[0] / expected[1]) - 1) < 0.15
    plain = ParticleImages(coloured, whiten=False)
    assert plain.stats.whitening is None and describe_whitening(False, None) == "noise not whitened (--whiten to whiten it)"


def test_transfer_on_the_grid_the_half_plane_and_a_crop_agree(coloured):
    """The batch's CTF x whitening filter is the same function on the full grid, at the half-plane points
    (``ctf_at``) and on the grid of a Fourier crop (the latent start's box)."""
    batch = ParticleImages(coloured, whiten=True).batch(np.arange(6), torch.device("cpu"))
    grid = batch.ctf_images()
    half = HalfPlane.build(32, 12)
    at_points = ctf_at(half, batch)
    assert torch.allclose(at_points, grid.flatten(1)[:, half.flat_index], atol=1e-5)
    assert torch.allclose(batch.ctf_images(16), grid[:, 8:24, 8:24], atol=1e-5)
    plain = ctf_images(batch.ctf, 32, batch.pixel_size_angstrom).float()
    ratio = (grid / plain)[plain.abs() > 0.1]
    assert float(ratio.min()) < 0.7 and float(ratio.max()) > 1.1  # the filter is there, not 1


def test_inference_reads_images_through_the_training_filter(coloured):
    trained = ParticleImages(coloured, whiten=True)
    again = ParticleImages(coloured, scale=trained.stats.scale, whiten=False, whitening=trained.stats.whitening)
    index = np.arange(0, 256, 7)
    assert torch.equal(trained.batch(index, torch.device("cpu")).images, again.batch(index, torch.device("cpu")).images)
