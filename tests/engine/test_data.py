"""Training batches: lazy reading equals in-memory reading; statistics are sensible."""

from __future__ import annotations

import numpy as np
import torch

from hetacumn.data.images import ParticleImages


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
