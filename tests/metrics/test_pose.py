"""Pose errors: invariance to a global rotation and to the hand, known perturbations, outliers, offsets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates
from scipy.spatial.transform import Rotation

from hetacumn.metrics.pose import MIRROR, align_rotations, rotation_errors, translation_errors

N_POSES = 2000


def _rotations(count: int, seed: int) -> np.ndarray:
    return Rotation.random(count, random_state=seed).as_matrix()


def _about_random_axes(angle_deg: float, count: int, seed: int) -> np.ndarray:
    axes = np.random.default_rng(seed).standard_normal((count, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return Rotation.from_rotvec(np.deg2rad(angle_deg) * axes).as_matrix()


def _angle_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> float:
    return float(np.rad2deg(Rotation.from_matrix(rot_a.T @ rot_b).magnitude()))


def _blob_volume(centres: np.ndarray, box: int) -> np.ndarray:
    """Gaussian blobs (sigma 1.5 px) at xyz ``centres`` (px from the box centre), indexed [z, y, x]."""
    offsets = np.arange(box) - box // 2
    z, y, x = np.meshgrid(offsets, offsets, offsets, indexing="ij")
    grid = np.stack([x, y, z], axis=-1)
    return sum(np.exp(-((grid - c) ** 2).sum(-1) / (2 * 1.5**2)) for c in centres)


def _project(volume: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Line integrals along image z: image(x, y) = sum_z volume(A^T (x, y, z)), trilinear sampling."""
    box = volume.shape[0]
    offsets = np.arange(box) - box // 2
    y, x, z = np.meshgrid(offsets, offsets, offsets, indexing="ij")
    volume_xyz = np.stack([x, y, z], axis=-1) @ rotation  # rows: A^T (x, y, z)
    coords = volume_xyz[..., ::-1].transpose(3, 0, 1, 2) + box // 2
    return map_coordinates(volume, coords, order=1).sum(axis=-1)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_rotated_and_mirrored_maps_are_seen_at_a_g_and_j_a_j():
    """A map rotated by G (V'(p) = V(G p)) is seen at poses A G; mirrored by J at poses J A J."""
    box = 32
    centres = np.array([[5.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 7.0], [-4.0, -4.0, 2.0]])
    volume = _blob_volume(centres, box)
    mirrored = _blob_volume(centres @ MIRROR, box)
    g = _rotations(1, seed=5)[0]
    rotated = _blob_volume(centres @ g, box)  # centres G^T c, so rotated(p) = volume(G p)
    for pose in _rotations(4, seed=6):
        truth = _project(volume, pose)
        assert _correlation(_project(mirrored, MIRROR @ pose @ MIRROR), truth) > 0.999
        assert _correlation(_project(rotated, pose @ g), truth) > 0.999
        assert _correlation(_project(mirrored, pose), truth) < 0.9
        assert _correlation(_project(rotated, g @ pose), truth) < 0.9


def test_error_is_invariant_to_a_global_rotation():
    true = _rotations(N_POSES, seed=1)
    g = _rotations(1, seed=2)[0]
    aligned, alignment = align_rotations(true @ g, true)
    assert alignment.hand == "original"
    assert _angle_deg(alignment.global_rotation, g) < 1e-6
    np.testing.assert_allclose(aligned, true, atol=1e-9)
    errors = rotation_errors(true @ g, true)
    assert errors["median_angle_deg"] < 1e-6 and errors["mean_frobenius_sq"] < 1e-12
    unaligned = rotation_errors(true @ g, true, align=False)
    assert unaligned["median_angle_deg"] == pytest.approx(_angle_deg(np.eye(3), g), abs=1e-6)
    assert unaligned["median_angle_deg"] > 30


def test_error_is_invariant_to_the_hand():
    true = _rotations(N_POSES, seed=3)
    g = _rotations(1, seed=4)[0]
    pred = torch.from_numpy(MIRROR @ (true @ g) @ MIRROR).float()  # a mirrored, rotated map
    errors = rotation_errors(pred, torch.from_numpy(true).float())
    assert errors["hand"] == "mirrored"
    assert errors["median_angle_deg"] < 0.01 and errors["median_view_deg"] < 0.01
    assert rotation_errors(true @ g, true)["hand"] == "original"


def test_five_degree_perturbation_gives_five_degrees():
    true = _rotations(N_POSES, seed=7)
    g = _rotations(1, seed=8)[0]
    pred = _about_random_axes(5.0, N_POSES, seed=9) @ true @ g
    errors = rotation_errors(pred, true)
    assert errors["median_angle_deg"] == pytest.approx(5.0, abs=0.05)
    assert errors["mean_angle_deg"] == pytest.approx(5.0, abs=0.05)
    # ||R1 - R2||_F^2 = 4 (1 - cos angle).
    assert errors["median_frobenius_sq"] == pytest.approx(4 * (1 - math.cos(math.radians(5.0))), rel=0.02)
    assert errors["hand"] == "original"


def test_outliers_do_not_move_the_median_or_the_alignment():
    true = _rotations(N_POSES, seed=10)
    g = _rotations(1, seed=11)[0]
    pred = _about_random_axes(2.0, N_POSES, seed=12) @ true @ g
    outliers = np.random.default_rng(13).choice(N_POSES, size=N_POSES // 10, replace=False)
    pred[outliers] = _about_random_axes(180.0, len(outliers), seed=14) @ true[outliers] @ g
    _, alignment = align_rotations(pred, true)
    assert _angle_deg(alignment.global_rotation, g) < 0.1
    errors = rotation_errors(pred, true)
    assert errors["median_angle_deg"] == pytest.approx(2.0, abs=0.05)
    assert errors["mean_angle_deg"] == pytest.approx(0.9 * 2.0 + 0.1 * 180.0, abs=0.5)


def test_viewing_direction_error_separates_in_plane_from_tilt():
    true = _rotations(500, seed=15)
    in_plane = Rotation.from_euler("z", 10, degrees=True).as_matrix()
    tilt = Rotation.from_euler("x", 10, degrees=True).as_matrix()
    spun = rotation_errors(in_plane @ true, true, align=False)
    assert spun["median_angle_deg"] == pytest.approx(10.0) and spun["mean_view_deg"] < 1e-6
    tilted = rotation_errors(tilt @ true, true, align=False)
    assert tilted["median_view_deg"] == pytest.approx(10.0) and tilted["mean_view_deg"] == pytest.approx(10.0)


def test_translation_error_after_removing_a_global_offset():
    rng = np.random.default_rng(16)
    rotations = _rotations(N_POSES, seed=17)
    true_shift_px = rng.uniform(-5, 5, size=(N_POSES, 2))
    offset_px = np.array([1.5, -2.0, 0.7])
    pred_shift_px = true_shift_px + (rotations @ offset_px)[:, :2]
    exact = translation_errors(pred_shift_px, true_shift_px, true_rotations=rotations)
    assert exact["median_px"] > 1.0
    assert exact["offset_removed_median_px"] < 1e-9
    np.testing.assert_allclose(exact["offset_px"], offset_px, atol=1e-9)
    # Gaussian noise of sigma per axis leaves a Rayleigh distance: median sigma sqrt(2 ln 2), mean square 2 sigma^2.
    sigma_px = 0.1
    noisy = translation_errors(pred_shift_px + rng.normal(0, sigma_px, (N_POSES, 2)), true_shift_px, rotations)
    assert noisy["offset_removed_median_px"] == pytest.approx(sigma_px * math.sqrt(2 * math.log(2)), rel=0.05)
    assert noisy["offset_removed_mean_sq_px2"] == pytest.approx(2 * sigma_px**2, rel=0.05)


def test_translation_error_of_a_constant_shift():
    true_shift_px = np.random.default_rng(18).uniform(-5, 5, size=(100, 2))
    errors = translation_errors(torch.from_numpy(true_shift_px + [3.0, 4.0]), true_shift_px)
    assert errors["median_px"] == pytest.approx(5.0) and errors["mean_sq_px2"] == pytest.approx(25.0)
    assert "offset_removed_median_px" not in errors
