"""Amortized inference: the symmetrized path that explains an image is chosen from its low frequencies."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from hetacumn.config.presets import preset
from hetacumn.data.images import ParticleImages
from hetacumn.engine.inference import CHOICE_RADIUS_PX, infer
from hetacumn.io.mrc import write_mrc
from hetacumn.io.particles import load_particles
from hetacumn.models.encoders import EncoderOutput
from hetacumn.models.model import HetModel
from hetacumn.physics.fourier import fft3_centered
from hetacumn.physics.render import render_images
from hetacumn.physics.rotations import geodesic_distance_rad, random_rotations
from hetacumn.simulate.volumes import toy_molecule
from hetacumn.tasks.image import ImageReconstructionTask

BOX = 32
ROT_Z_PI = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))


class ClaimedPoses(nn.Module):
    """An encoder that claims the same rotations for whatever images it sees (the original or the turned copy)."""

    def __init__(self, rotations: torch.Tensor):
        super().__init__()
        self.rotations = rotations

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(self.rotations[:, None], torch.zeros(len(images), 2), None, None)


@pytest.mark.parametrize("choice_radius_px", [4.0, CHOICE_RADIUS_PX, 15.0])
def test_the_low_frequencies_choose_the_path_whose_pose_explains_the_image(tmp_path, choice_radius_px):
    """Half of the claimed poses are the true pose turned in plane by pi: only the turned path explains those
    images, so inference returns the true pose of every image only if it picks the right path."""
    generator = torch.Generator().manual_seed(3)
    volume = torch.as_tensor(toy_molecule(BOX, 4.0)).float()
    truth = random_rotations(64, generator=generator)
    write_mrc(tmp_path / "particles.mrcs", render_images(volume, truth).numpy().astype(np.float32), 4.0)
    turned = torch.arange(64) % 2 == 1
    claimed = torch.where(turned[:, None, None], ROT_Z_PI @ truth, truth)

    config = preset("cryoai", box_size=BOX, zdim=0)
    config.model.decoder = dataclasses.replace(config.model.decoder, kind="voxel")
    model = HetModel(config.model)
    volume_ft = fft3_centered(volume)
    with torch.no_grad():
        model.decoder.inner.grids[0, 0] = volume_ft.real
        model.decoder.inner.grids[0, 1] = volume_ft.imag
    model.encoder = ClaimedPoses(claimed)
    data = ParticleImages(load_particles(tmp_path / "particles.mrcs"), scale=1.0)
    task = ImageReconstructionTask(config.task, "none")
    assert config.task.symmetrize == "rotation"

    result = infer(model, data, task, radius_px=15.0, device=torch.device("cpu"), batch_size=64,
                   choice_radius_px=choice_radius_px)
    error_deg = torch.rad2deg(geodesic_distance_rad(torch.as_tensor(result.rotations), truth.double()))
    assert float(error_deg.max()) < 1e-3
