"""The pose task's synthetic images carry the SNR the data's estimator reports for the real ones."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hetacumn.config.schema import TaskConfig
from hetacumn.data.images import noise_and_total_variance
from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.fourier import fft2_centered
from hetacumn.physics.grids import radial_grid_2d
from hetacumn.tasks.base import StepContext
from hetacumn.tasks.pose import PosePredictionTask

BOX = 64


class _BlobDecoder:
    """Renders the same compact particle (a Gaussian of 6 px inside the disk) at every pose."""

    config = SimpleNamespace(shift_range_px=0.0)

    def __init__(self, half: HalfPlane):
        blob = torch.exp(-(radial_grid_2d(BOX) ** 2) / (2 * 6.0**2))
        self.values = half.gather(fft2_centered(blob[None]))

    def render(self, rotation, shift, z, ctf, half):
        return self.values.expand(len(rotation), -1).to(torch.complex64)


@pytest.mark.parametrize("snr", [0.1, 1.0])
def test_synthetic_images_have_the_estimated_snr(snr):
    half = HalfPlane.build(BOX, BOX // 2 - 1)
    task = PosePredictionTask(TaskConfig(), snr, window_images=lambda images: images)
    context = StepContext(half, None, 0, torch.Generator().manual_seed(0))
    batch = SimpleNamespace(images=torch.zeros(2000, BOX, BOX))
    images, _, _ = task.render_examples(_BlobDecoder(half), batch, None, context)
    images = (images - images.mean(dim=(-1, -2), keepdim=True)).double()
    noise_var, total_var = noise_and_total_variance(images)  # what ParticleImages measures on real data
    assert (total_var - noise_var) / noise_var == pytest.approx(snr, rel=0.05)
