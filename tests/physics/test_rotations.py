"""Rotation parametrisations against scipy, round trips, and uniform sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hetacumn.physics.rotations import (
    axis_angle_to_matrix,
    euler_relion_to_matrix,
    geodesic_distance_rad,
    inplane_rotation_pi,
    matrix_to_axis_angle,
    matrix_to_euler_relion,
    matrix_to_quaternion,
    matrix_to_s2s2,
    quaternion_to_matrix,
    random_rotations,
    rotation_y,
    rotation_z,
    s2s2_to_matrix,
)

RNG_SEED = 1234


@pytest.fixture
def scipy_rotations() -> Rotation:
    return Rotation.random(200, random_state=RNG_SEED)


def assert_proper_rotations(matrices: torch.Tensor, atol: float = 1e-10) -> None:
    eye = torch.eye(3, dtype=matrices.dtype).expand_as(matrices)
    assert torch.allclose(matrices @ matrices.transpose(-1, -2), eye, atol=atol)
    assert torch.allclose(torch.linalg.det(matrices), torch.ones(matrices.shape[:-2], dtype=matrices.dtype), atol=atol)


def test_elementary_rotations_are_active_right_handed():
    quarter = torch.tensor(math.pi / 2, dtype=torch.float64)
    e_x, e_z = torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0, 0, 1.0], dtype=torch.float64)
    assert torch.allclose(rotation_z(quarter) @ e_x, torch.tensor([0, 1.0, 0], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(rotation_y(quarter) @ e_z, e_x, atol=1e-15)


def test_euler_matches_scipy_and_round_trips(scipy_rotations):
    rng = np.random.default_rng(RNG_SEED)
    angles = np.stack([rng.uniform(-180, 180, 500), rng.uniform(1, 179, 500), rng.uniform(-180, 180, 500)], -1)
    expected = Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix().transpose(0, 2, 1)
    matrices = euler_relion_to_matrix(*torch.from_numpy(angles).unbind(-1))
    assert np.abs(matrices.numpy() - expected).max() < 1e-12
    rot, tilt, psi = matrix_to_euler_relion(matrices)
    back = torch.stack([rot, tilt, psi], -1).numpy()
    assert np.abs(back - angles).max() < 1e-9
    assert_proper_rotations(matrices)


@pytest.mark.parametrize("tilt_deg", [0.0, 180.0])
def test_euler_gimbal_lock(tilt_deg):
    rot = torch.tensor([30.0, -120.0, 179.0], dtype=torch.float64)
    psi = torch.tensor([40.0, 10.0, -60.0], dtype=torch.float64)
    matrices = euler_relion_to_matrix(rot, torch.full_like(rot, tilt_deg), psi)
    rot_back, tilt_back, psi_back = matrix_to_euler_relion(matrices)
    assert torch.allclose(tilt_back, torch.full_like(rot, tilt_deg), atol=1e-6)
    assert torch.all(psi_back == 0)
    assert torch.allclose(euler_relion_to_matrix(rot_back, tilt_back, psi_back), matrices, atol=1e-12)
    # Only rot + psi (tilt 0) or rot - psi (tilt 180) is defined, modulo 360 degrees.
    combined = rot + psi if tilt_deg == 0 else rot - psi
    wrapped = torch.remainder(rot_back - combined + 180, 360) - 180
    assert torch.allclose(wrapped, torch.zeros_like(wrapped), atol=1e-9)


def test_axis_angle_matches_scipy_and_round_trips(scipy_rotations):
    rotvec = torch.from_numpy(scipy_rotations.as_rotvec())  # angles in [0, pi]
    matrices = axis_angle_to_matrix(rotvec)
    assert np.abs(matrices.numpy() - scipy_rotations.as_matrix()).max() < 1e-12
    assert torch.allclose(matrix_to_axis_angle(matrices), rotvec, atol=1e-9)
    tiny = torch.tensor([[1e-9, -2e-9, 3e-9], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert np.abs(axis_angle_to_matrix(tiny).numpy() - Rotation.from_rotvec(tiny.numpy()).as_matrix()).max() < 1e-15
    assert torch.allclose(matrix_to_axis_angle(axis_angle_to_matrix(tiny)), tiny, atol=1e-12)


def test_quaternion_matches_scipy_and_round_trips(scipy_rotations):
    xyzw = scipy_rotations.as_quat()
    wxyz = torch.from_numpy(np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1))
    matrices = quaternion_to_matrix(3.0 * wxyz)  # normalised inside
    assert np.abs(matrices.numpy() - scipy_rotations.as_matrix()).max() < 1e-12
    back = matrix_to_quaternion(matrices)
    assert torch.all(back[:, 0] >= 0)
    sign = torch.where(wxyz[:, :1] < 0, -1.0, 1.0).to(torch.float64)
    assert torch.allclose(back, sign * wxyz, atol=1e-12)
    # Near-180-degree rotations use a non-trace branch.
    half_turns = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1e-8, 0.0, 0.6, 0.8]], dtype=torch.float64)
    assert torch.allclose(quaternion_to_matrix(matrix_to_quaternion(quaternion_to_matrix(half_turns))),
                          quaternion_to_matrix(half_turns), atol=1e-12)


def test_s2s2_round_trip_and_gram_schmidt(scipy_rotations):
    matrices = torch.from_numpy(scipy_rotations.as_matrix())
    assert torch.allclose(s2s2_to_matrix(matrix_to_s2s2(matrices)), matrices, atol=1e-12)
    raw = torch.randn(100, 6, dtype=torch.float64)
    built = s2s2_to_matrix(raw)
    assert_proper_rotations(built)
    assert torch.allclose(built[:, 0], raw[:, :3] / raw[:, :3].norm(dim=-1, keepdim=True), atol=1e-12)
    # The second row stays in the plane of a1 and a2, on the side of a2.
    assert torch.all((built[:, 1] * raw[:, 3:]).sum(-1) > 0)
    assert torch.allclose((built[:, 2] * raw[:, 3:]).sum(-1), torch.zeros(100, dtype=torch.float64), atol=1e-12)


def test_geodesic_distance_equals_perturbation_angle():
    generator = torch.Generator().manual_seed(RNG_SEED)
    base = random_rotations(300, generator, dtype=torch.float64)
    axes = torch.nn.functional.normalize(torch.randn(300, 3, generator=generator, dtype=torch.float64), dim=-1)
    angles = torch.linspace(1e-4, math.pi - 1e-4, 300, dtype=torch.float64)
    perturbed = base @ axis_angle_to_matrix(axes * angles[:, None])
    assert torch.allclose(geodesic_distance_rad(base, perturbed), angles, atol=1e-9)
    assert torch.allclose(geodesic_distance_rad(perturbed, base), angles, atol=1e-9)
    assert torch.allclose(geodesic_distance_rad(base, base), torch.zeros(300, dtype=torch.float64), atol=1e-7)


def test_random_rotations_are_uniform():
    count = 20000
    matrices = random_rotations(count, torch.Generator().manual_seed(RNG_SEED), dtype=torch.float64)
    assert_proper_rotations(matrices, atol=1e-9)
    # Haar measure: every entry has mean 0 and variance 1/3, so the sample mean has std sqrt(1/(3N)).
    bound = 5 * math.sqrt(1 / (3 * count))
    assert matrices.mean(0).abs().max() < bound
    assert torch.allclose((matrices**2).mean(0), torch.full((3, 3), 1 / 3, dtype=torch.float64), atol=0.02)
    # The rotation angle has density (1 - cos t) / pi: mean pi/2 + 2/pi, std of the mean ~0.005.
    angle = geodesic_distance_rad(torch.eye(3, dtype=torch.float64), matrices)
    assert abs(angle.mean().item() - (math.pi / 2 + 2 / math.pi)) < 0.02


def test_inplane_rotation_pi_negates_image_xy():
    matrices = random_rotations(10, torch.Generator().manual_seed(RNG_SEED), dtype=torch.float64)
    flipped = inplane_rotation_pi(matrices)
    assert torch.allclose(flipped[:, :2], -matrices[:, :2], atol=1e-15)
    assert torch.allclose(flipped[:, 2], matrices[:, 2], atol=1e-15)
    assert torch.allclose(geodesic_distance_rad(matrices, flipped), torch.full((10,), math.pi, dtype=torch.float64))
