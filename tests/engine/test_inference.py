"""Amortized inference: the symmetrized path that explains an image is chosen from its low frequencies; at the
end of training, a refined pose from the table and a pose searched against the final decoder compete."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from hetacumn.config.presets import preset
from hetacumn.data.images import ParticleImages
from hetacumn.data.pose_table import PoseTable
from hetacumn.engine.inference import CHOICE_RADIUS_PX, FIT_RADIUS_PX, infer, pose_disagreement_deg, search_into_table
from hetacumn.io.particle_set import PoseTable as GivenPoses
from hetacumn.io.mrc import write_mrc
from hetacumn.io.particles import load_particles
from hetacumn.models.encoders import EncoderOutput
from hetacumn.models.model import HetModel
from hetacumn.physics.fourier import fft3_centered
from hetacumn.physics.render import render_images
from hetacumn.physics.rotations import axis_angle_to_matrix, geodesic_distance_rad, random_rotations
from hetacumn.simulate.volumes import toy_molecule
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.refine import fresh_rows
from hetacumn.tasks.search import PoseSearch

BOX = 32
ROT_Z_PI = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))


class ClaimedPoses(nn.Module):
    """An encoder that claims the same rotations for whatever images it sees (the original or the turned copy)."""

    def __init__(self, rotations: torch.Tensor):
        super().__init__()
        self.rotations = rotations

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(self.rotations[:, None], torch.zeros(len(images), 2), None, None)


def _known_volume_model(volume: torch.Tensor, encoder: nn.Module) -> tuple[HetModel, ImageReconstructionTask]:
    """A homogeneous model whose voxel decoder holds ``volume``'s transform exactly, with the given encoder."""
    config = preset("cryoai", box_size=BOX, zdim=0)
    config.model.decoder = dataclasses.replace(config.model.decoder, kind="voxel")
    model = HetModel(config.model)
    volume_ft = fft3_centered(volume)
    with torch.no_grad():
        model.decoder.inner.grids[0, 0] = volume_ft.real
        model.decoder.inner.grids[0, 1] = volume_ft.imag
    model.encoder = encoder
    return model, ImageReconstructionTask(config.task, "none")


def _projections(tmp_path, volume: torch.Tensor, rotations: torch.Tensor) -> ParticleImages:
    write_mrc(tmp_path / "particles.mrcs", render_images(volume, rotations).numpy().astype(np.float32), 4.0)
    return ParticleImages(load_particles(tmp_path / "particles.mrcs"), scale=1.0)


def _degrees(a, b) -> torch.Tensor:
    return torch.rad2deg(geodesic_distance_rad(torch.as_tensor(a).double(), torch.as_tensor(b).double()))


@pytest.mark.parametrize("fit_radius_px, true_rows_kept_deg", [(FIT_RADIUS_PX, 1e-6), (8.0, 5.0)])
def test_table_poses_compete_with_the_search_and_the_better_fit_is_kept(tmp_path, fit_radius_px, true_rows_kept_deg):
    """Even rows of the table hold the true poses, odd rows poses 90 deg off; the search stops after its coarse
    levels (degrees off). Compared within the default radius (here all of the decoded one) the true rows must stay
    exactly; within 8 px (a quarter of this box) a few go to searched poses nearly as good (the test's renderer
    and the decoder differ a little, so the truth is not the model's best fit at every radius). The wrong
    rows must be replaced either way."""
    generator = torch.Generator().manual_seed(5)
    volume = torch.as_tensor(toy_molecule(BOX, 4.0)).float()
    truth = random_rotations(32, generator=generator)
    data = _projections(tmp_path, volume, truth)
    model, task = _known_volume_model(volume, ClaimedPoses(truth))
    wrong = torch.arange(32) % 2 == 1
    quarter_turn = axis_angle_to_matrix(torch.tensor([[0.0, torch.pi / 2, 0.0]]))
    table = PoseTable.create(tmp_path / "pose_table.npy", 32)
    table.write(np.arange(32), fresh_rows(torch.where(wrong[:, None, None], truth @ quarter_turn, truth),
                                          torch.zeros(32, 2)))
    search = PoseSearch(4608, shift_extent_px=1.0, shift_step_px=1.0, levels=2)

    result = infer(model, data, task, radius_px=15.0, device=torch.device("cpu"), batch_size=32, search=search,
                   known=table, fit_radius_px=fit_radius_px)
    error = _degrees(result.rotations, truth)
    assert float(error[~wrong].max()) < true_rows_kept_deg  # kept from the table: the search's poses fit worse
    assert float(error[wrong].max()) < 10.0  # replaced by the searched poses (the table's were 90 deg off)
    assert float(error[wrong].min()) > 1e-3  # ... which the coarse search did not get exactly
    assert set(result.seconds) == {"encoder", "search", "table comparison"}  # each part timed on its own
    assert min(result.seconds.values()) > 0


def test_search_into_table_replaces_the_worse_fits_of_the_listed_rows_only(tmp_path):
    """``refine_from_search``: of the rows listed, those 90 deg off take the searched pose; the true ones stay, and
    so does every row not listed."""
    generator = torch.Generator().manual_seed(5)
    volume = torch.as_tensor(toy_molecule(BOX, 4.0)).float()
    truth = random_rotations(32, generator=generator)
    data = _projections(tmp_path, volume, truth)
    listed = np.arange(16)
    model, task = _known_volume_model(volume, ClaimedPoses(truth[listed]))
    wrong = torch.arange(32) % 2 == 1
    start = torch.where(wrong[:, None, None], truth @ axis_angle_to_matrix(torch.tensor([[0.0, torch.pi / 2, 0.0]])),
                        truth)
    table = PoseTable.create(tmp_path / "pose_table.npy", 32)
    table.write(np.arange(32), fresh_rows(start, torch.zeros(32, 2)))
    search = PoseSearch(4608, shift_extent_px=1.0, shift_step_px=1.0, levels=2)

    changed = search_into_table(model, data, task, 15.0, torch.device("cpu"), search, table, listed)
    assert changed == 0.5
    error = _degrees(table.read(np.arange(32)).rotation, truth)
    assert float(error[:16][~wrong[:16]].max()) < 1e-6 and float(error[:16][wrong[:16]].max()) < 10.0
    assert torch.equal(table.read(np.arange(16, 32)).rotation, start[16:].double())


@pytest.mark.parametrize("choice_radius_px", [4.0, CHOICE_RADIUS_PX, 15.0])
def test_the_low_frequencies_choose_the_path_whose_pose_explains_the_image(tmp_path, choice_radius_px):
    """Half of the claimed poses are the true pose turned in plane by pi: only the turned path explains those
    images, so inference returns the true pose of every image only if it picks the right path."""
    generator = torch.Generator().manual_seed(3)
    volume = torch.as_tensor(toy_molecule(BOX, 4.0)).float()
    truth = random_rotations(64, generator=generator)
    data = _projections(tmp_path, volume, truth)
    turned = torch.arange(64) % 2 == 1
    model, task = _known_volume_model(volume, ClaimedPoses(torch.where(turned[:, None, None], ROT_Z_PI @ truth, truth)))
    assert task.config.symmetrize == "rotation"

    result = infer(model, data, task, radius_px=15.0, device=torch.device("cpu"), batch_size=64,
                   choice_radius_px=choice_radius_px)
    assert float(_degrees(result.rotations, truth).max()) < 1e-3


def test_the_pose_check_tells_true_poses_from_random_ones_claimed_or_given(tmp_path):
    generator = torch.Generator().manual_seed(4)
    volume = torch.as_tensor(toy_molecule(BOX, 4.0)).float()
    truth = random_rotations(32, generator=generator)
    data = _projections(tmp_path, volume, truth)
    search = PoseSearch(4608, shift_extent_px=1.0, shift_step_px=1.0, levels=4)
    right, task = _known_volume_model(volume, ClaimedPoses(truth))
    wrong, _ = _known_volume_model(volume, ClaimedPoses(random_rotations(32, generator=generator)))
    cpu = torch.device("cpu")
    assert pose_disagreement_deg(right, data, task, 15.0, cpu, search) < 3.0  # measured 0.74
    assert pose_disagreement_deg(wrong, data, task, 15.0, cpu, search) > 45.0  # measured 110.6
    given_true = GivenPoses(truth.double().numpy(), np.zeros((32, 2)))
    given_turned = GivenPoses((truth @ axis_angle_to_matrix(torch.tensor([[0.0, 0.6, 0.0]]))).double().numpy(),
                              np.zeros((32, 2)))
    assert pose_disagreement_deg(wrong, data, task, 15.0, cpu, search, given_true) < 3.0  # measured 0.74
    assert pose_disagreement_deg(wrong, data, task, 15.0, cpu, search, given_turned) > 20.0  # measured 34.4: the turn
