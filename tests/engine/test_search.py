"""Pose search: grid coverage, recovery of known poses, local refinement, scale invariance, resume."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from hetacumn.config.schema import TaskConfig
from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.fourier import fft2_centered, fft3_centered
from hetacumn.physics.render import render_images
from hetacumn.physics.rotations import (axis_angle_to_matrix, geodesic_distance_rad, random_rotations,
                                        super_fibonacci_rotations)
from hetacumn.simulate.volumes import toy_molecule
from hetacumn.tasks.base import StepContext
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.search import (PoseSearch, _fit_score, _shifted_products, _slice_parts, _slices, _stacked_ctf_power,
                                   candidate_posteriors, noise_power)
from hetacumn.tasks.search_task import PoseSearchTask

from .conftest import next_step_before_and_after_resume, small_config

BOX = 32


@pytest.fixture(scope="module")
def known():
    """Noiseless projections of the built-in molecule at random poses and shifts within +-2 px."""
    generator = torch.Generator().manual_seed(1)
    volume = torch.as_tensor(toy_molecule(BOX, 4.0)).float()
    rotations = random_rotations(64, generator=generator)
    shift_px = torch.rand(64, 2, generator=generator) * 4 - 2
    images = render_images(volume, rotations, shift_px=shift_px)
    half = HalfPlane.build(BOX, 10)
    return fft3_centered(volume), rotations, shift_px, half.gather(fft2_centered(images)), half


def _degrees(a, b):
    return torch.rad2deg(geodesic_distance_rad(a, b))


def test_super_fibonacci_grid_covers_so3_evenly():
    grid = super_fibonacci_rotations(4608, dtype=torch.float64)
    probes = random_rotations(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    nearest = _degrees(probes[:, None], grid[None]).min(dim=1).values
    assert 7.0 < float(nearest.median()) < 8.2  # documented: median 7.6 deg
    assert float(nearest.max()) < 14.0
    assert torch.allclose(grid @ grid.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(4608, 3, 3), atol=1e-9)


def test_search_recovers_known_poses(known):
    volume_ft, rotations, shift_px, targets, half = known
    found, found_shift, _ = PoseSearch(4608, shift_extent_px=2.0, shift_step_px=1.0, levels=5)(volume_ft, targets, None, half)
    error = _degrees(found, rotations)
    assert float(error.median()) < 2.0
    assert float((error < 5).float().mean()) > 0.9
    assert float((found_shift - shift_px).abs().median()) < 0.1


def test_stacked_real_products_give_the_complex_fit_error(known):
    """The search's real matrix products give the complex error sum w |Y - a C S exp(2 pi i k.t)|^2 at the best
    amplitude a >= 0 (minus sum w |Y|^2), for every image, shift and rotation."""
    volume_ft, rotations, _, targets, half = known
    generator = torch.Generator().manual_seed(3)
    targets, ctf = targets[:4], torch.rand(4, targets.shape[1], generator=generator) * 2 - 1
    shifts = torch.rand(5, 2, generator=generator) * 4 - 2
    phase = 2 * torch.pi * (shifts @ half.coords.T)  # (5, M)
    model = (ctf[:, None, None] * torch.polar(torch.ones_like(phase), phase)[None, :, None]
             * _slices(volume_ft, rotations[:6], half)[None, None])  # (4 images, 5 shifts, 6 rotations, M)
    cross = (half.weights * (targets.conj()[:, None, None] * model).real).sum(-1)
    amplitude = cross.clamp_min(0) / (half.weights * model.abs() ** 2).sum(-1)
    direct = (half.weights * ((targets[:, None, None] - amplitude[..., None] * model).abs() ** 2
                              - targets[:, None, None].abs() ** 2)).sum(-1)
    parts = _slice_parts(volume_ft, rotations[:6], half)
    stacked_cross = _shifted_products(targets, ctf, half, shifts) @ parts.T
    power = (_stacked_ctf_power(half, ctf) @ (parts**2).T)[:, None, :]
    assert float((cross > 0).float().mean()) > 0.2 and float((cross < 0).float().mean()) > 0.2  # both signs tried
    assert torch.allclose(-_fit_score(stacked_cross, power), direct, atol=1e-4 * float(direct.abs().max()))


def test_search_does_not_depend_on_the_volume_scale(known):
    volume_ft, _, _, targets, half = known
    search = PoseSearch(4608, shift_extent_px=2.0, shift_step_px=1.0, levels=3)
    first, _, _ = search(volume_ft, targets[:16], None, half)
    scaled, _, _ = search(volume_ft * 20, targets[:16], None, half)
    assert float(_degrees(first, scaled).max()) < 1e-3


def test_refinement_returns_from_ten_degrees_to_within_one(known):
    volume_ft, rotations, shift_px, _, half = known
    # Targets rendered with the search's own slice model, so the truth is the exact optimum.
    phase = 2 * torch.pi * (half.coords @ shift_px.T).T
    targets = _slices(volume_ft, rotations, half) * torch.polar(torch.ones_like(phase), phase)
    axes = torch.nn.functional.normalize(torch.randn(64, 3, generator=torch.Generator().manual_seed(2)), dim=-1)
    start = rotations @ axis_angle_to_matrix(axes * math.radians(10))
    search = PoseSearch(4608, shift_extent_px=2.0, shift_step_px=1.0, levels=5)
    refined, refined_shift, _ = search.refine(volume_ft, targets, None, half, start, shift_px.round(), math.radians(8), 0.5, 7)
    assert float(_degrees(start, rotations).min()) > 9.9
    assert float(_degrees(refined, rotations).median()) < 1.0
    assert float((refined_shift - shift_px).abs().median()) < 0.1


def test_resume_with_the_search_stage_reproduces_the_next_loss(tiny_particles, tmp_path):
    config = small_config("cryoai")
    config.task = dataclasses.replace(config.task, pose_search_images=10_000, search_rotations=512)
    expected, again = next_step_before_and_after_resume(config, tiny_particles, tmp_path)
    assert again["loss"] == expected["loss"] and again["distill_loss"] == expected["distill_loss"]


def test_noise_power_of_pure_noise_is_the_variance_per_fourier_point():
    # White noise of per-pixel variance 4 has E|N(k)|^2 = 4 * D^2 at every frequency.
    noise = 2.0 * torch.randn(256, BOX, BOX, generator=torch.Generator().manual_seed(3))
    half = HalfPlane.build(BOX, 8)
    targets = half.gather(fft2_centered(noise))
    power = noise_power(targets, half, torch.zeros(256))  # the slice explains nothing: error 0
    assert abs(float(power) / (4 * BOX**2) - 1) < 0.03


def test_candidate_posteriors_follow_the_likelihood_and_drop_duplicates():
    rotations = random_rotations(3, generator=torch.Generator().manual_seed(4))
    shift_px = torch.zeros(1, 3, 2)
    error = torch.tensor([[0.0, 2.0, 4.0]])  # with E|N|^2 = 1: log-likelihoods 0, -1, -2
    p = candidate_posteriors(rotations[None], shift_px, error, torch.tensor(1.0), min_angle_rad=0.01)
    expected = torch.softmax(torch.tensor([0.0, -1.0, -2.0]), 0)
    assert torch.allclose(p[0], expected, atol=1e-6)
    # The third candidate refined onto the first: it is not counted twice.
    same = torch.stack([rotations[0], rotations[1], rotations[0]])[None]
    p = candidate_posteriors(same, shift_px, error, torch.tensor(1.0), min_angle_rad=0.01)
    assert torch.allclose(p[0], torch.tensor([0.7311, 0.2689, 0.0]), atol=1e-4)  # e / (e + 1), 1 / (e + 1)


def test_resume_with_the_soft_search_stage_reproduces_the_next_loss(tiny_particles, tmp_path):
    config = small_config("cryoai")
    config.task = dataclasses.replace(config.task, pose_search_images=10_000, search_rotations=512, search_soft="on")
    expected, again = next_step_before_and_after_resume(config, tiny_particles, tmp_path)
    assert again["loss"] == expected["loss"] and again["distill_loss"] == expected["distill_loss"]


def test_soft_assignment_is_chosen_by_the_estimated_snr():
    from hetacumn.tasks.search_task import resolve_soft_assignment

    assert resolve_soft_assignment("auto", 0.17) and not resolve_soft_assignment("auto", 17.8)  # the 64/32-px sets
    assert resolve_soft_assignment("on", 50.0) and not resolve_soft_assignment("off", 0.01)


def test_the_search_stage_widens_its_grid_radius_at_search_widen_images(known):
    volume_ft, rotations, _, targets, half = known
    config = TaskConfig(pose_search_images=3000, search_global_radius_px=2.0, search_final_radius_px=10.0,
                        search_widen_images=1000, search_rotations=1152)
    task = PoseSearchTask(config, ImageReconstructionTask(config, "variational"), 4.0, BOX, "cpu", 10.0)
    reference = type("Reference", (), {"transform": lambda self: volume_ft})()
    errors = []
    for images_seen in (999, 1000):
        context = StepContext(half, None, images_seen=images_seen, generator=torch.Generator().manual_seed(0))
        rotation = task._search(reference, targets, context)[0]
        errors.append(float(_degrees(rotation, rotations).median()))
    assert errors[0] > 30 and errors[1] < 2  # measured: 101 and 1.2 deg (a coarse grid of 1,152 rotations)
