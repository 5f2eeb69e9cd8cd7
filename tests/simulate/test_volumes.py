"""The built-in toy molecule: size, centring, determinism, the hinge motion and its fast rendering."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from hetacumn.physics.render import render_images
from hetacumn.physics.rotations import geodesic_distance_rad, random_rotations
from hetacumn.simulate.volumes import HINGE_ANGLE_DEG, toy_hinge_motion, toy_molecule


def _centroid_xyz(volume: np.ndarray) -> np.ndarray:
    z, y, x = np.indices(volume.shape)
    weights = volume / volume.sum()
    return np.array([(weights * x).sum(), (weights * y).sum(), (weights * z).sum()])


def test_toy_molecule_is_positive_centred_and_fits_the_box():
    volume = toy_molecule(64, 2.0, 0.0)
    assert volume.dtype == np.float32
    assert volume.min() >= 0.0
    assert 0.5 < volume.max() < 2.0  # potential-like values of order one
    np.testing.assert_allclose(_centroid_xyz(volume), [32.0, 32.0, 32.0], atol=0.05)
    # All but 0.1 % of the density lies within 34 Å of the centre, in both end states.
    radius_angstrom = 2.0 * np.linalg.norm(np.stack(np.indices(volume.shape)) - 32, axis=0)
    for state in (0.0, 1.0):
        vol = toy_molecule(64, 2.0, state)
        assert vol[radius_angstrom > 34].sum() / vol.sum() < 1e-3


def test_toy_molecule_is_deterministic_and_sampling_independent():
    np.testing.assert_array_equal(toy_molecule(32, 4.0, 0.3), toy_molecule(32, 4.0, 0.3))
    # Defined in Å: the same total density (times voxel volume) at any pixel size.
    totals = [toy_molecule(box, apix, 0.5).sum() * apix**3 for box, apix in ((64, 2.0), (48, 3.0))]
    assert totals[1] == pytest.approx(totals[0], rel=1e-3)


@pytest.mark.parametrize("state", [0.0, 1.0])
def test_toy_molecule_has_no_symmetry(state):
    """Any symmetry maps the principal axes (distinct moments) onto themselves up to sign; none of those
    7 proper or improper operations (3 two-fold axes, 3 mirror planes, inversion) maps the molecule
    onto itself."""
    volume = toy_molecule(64, 2.0, state).astype(np.float64)
    grid_xyz = np.stack(np.indices(volume.shape)[::-1], axis=-1).reshape(-1, 3).astype(np.float64)
    weights = volume.reshape(-1) / volume.sum()
    offsets = grid_xyz - weights @ grid_xyz
    moments, axes = np.linalg.eigh((offsets * weights[:, None]).T @ offsets)
    assert moments[1] / moments[0] > 1.2 and moments[2] / moments[1] > 1.2
    correlations = []
    for signs in itertools.product((1, -1), repeat=3):
        if signs != (1, 1, 1):
            operation = axes @ np.diag(signs) @ axes.T
            moved = map_coordinates(volume, (grid_xyz - offsets + offsets @ operation.T)[:, ::-1].T, order=1)
            correlations.append(np.corrcoef(volume.reshape(-1), moved)[0, 1])
    assert max(correlations) < 0.85


def test_states_move_only_the_arm():
    motion = toy_hinge_motion(64, 2.0)
    start, end = toy_molecule(64, 2.0, 0.0), toy_molecule(64, 2.0, 1.0)
    np.testing.assert_allclose(motion.static + motion.arm, start, atol=1e-5)
    assert np.corrcoef(start.ravel(), end.ravel())[0, 1] < 0.85  # 0.80
    # Total density is preserved and the difference is confined to the arm's share (~1/3 of the mass).
    assert end.sum() == pytest.approx(start.sum(), rel=1e-4)
    assert 0.2 < motion.arm.sum() / start.sum() < 0.45
    rotation_end = torch.from_numpy(motion.arm_rotation(np.array([1.0])))
    angle_deg = np.rad2deg(float(geodesic_distance_rad(torch.eye(3, dtype=torch.float64)[None], rotation_end)[0]))
    assert angle_deg == pytest.approx(HINGE_ANGLE_DEG, abs=1e-6)


def test_hinge_rendering_matches_the_rendered_molecule():
    """Static + arm at pose A R(s), moved by (A t)_xy, is the image of toy_molecule(s) at pose A."""
    box, apix = 32, 4.0
    motion = toy_hinge_motion(box, apix)
    states = np.linspace(0.0, 1.0, 6)
    rotations = random_rotations(6, torch.Generator().manual_seed(3))
    shift_px = torch.tensor([[1.5, -2.0]]).repeat(6, 1)
    arm_rotations = torch.as_tensor(motion.arm_rotation(states), dtype=torch.float32)
    offset = torch.as_tensor(motion.arm_offset_px(states), dtype=torch.float32)
    arm_shift_px = shift_px - (rotations @ offset[..., None])[:, :2, 0]
    fast = render_images(torch.from_numpy(motion.static), rotations, None, shift_px) + render_images(
        torch.from_numpy(motion.arm), rotations @ arm_rotations, None, arm_shift_px
    )
    for i, state in enumerate(states):
        exact = render_images(torch.from_numpy(toy_molecule(box, apix, float(state))), rotations[i : i + 1], None,
                              shift_px[i : i + 1])[0]
        assert float(torch.linalg.norm(fast[i] - exact) / torch.linalg.norm(exact)) < 0.03


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        toy_molecule(33, 2.0, 0.0)
    with pytest.raises(ValueError):
        toy_molecule(32, 2.0, 1.5)
