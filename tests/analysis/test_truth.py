"""Volume alignment to the truth: the convention against the projector, and recovery of a rotated,
mirrored and shifted run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hetacumn.analysis.truth import align_volume, compare_with_truth, load_truth
from hetacumn.io.particles import PoseTable
from hetacumn.metrics.fsc import au_fsc, fourier_shell_correlation
from hetacumn.metrics.pose import MIRROR
from hetacumn.physics.slice import project_volume

GLOBAL = Rotation.from_euler("ZYZ", [40, 70, -25], degrees=True).as_matrix()


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.fixture
def truth(sim_dataset):
    return load_truth(sim_dataset / "truth", 192, 32)


def test_aligned_volume_projects_like_the_truth_at_composed_poses(truth):
    """``V(y) = V_true(G y)`` seen at ``A G`` gives the images of ``V_true`` at ``A``; at ``A G^T`` it does not."""
    volume = torch.from_numpy(truth.volumes[0]).double()
    rotated = align_volume(volume, GLOBAL)
    poses = torch.from_numpy(truth.poses.rotations[:8])
    expected = project_volume(volume, poses)
    assert _correlation(project_volume(rotated, poses @ torch.from_numpy(GLOBAL)), expected) > 0.98
    assert _correlation(project_volume(rotated, poses @ torch.from_numpy(GLOBAL.T)), expected) < 0.8


@pytest.mark.parametrize("hand", ["original", "mirrored"])
def test_compare_with_truth_undoes_rotation_hand_and_offset(truth, hand):
    offset_px = np.array([1.5, -1.0, 0.5])  # the run's map is the truth moved by this (truth frame)
    true_rot, true_shift = truth.poses.rotations, truth.poses.shift_px
    pred_rot = true_rot @ GLOBAL
    to_run = GLOBAL  # V_run(y) = V_true(R^T y - d) with R = G^T (or J G^T mirrored): align_volume(R^T, -R d)
    if hand == "mirrored":
        pred_rot, to_run = MIRROR @ pred_rot @ MIRROR, GLOBAL @ MIRROR
    pred_shift = true_shift + (true_rot @ offset_px)[:, :2]
    run_volumes = [align_volume(torch.from_numpy(v).double(), to_run, -(to_run.T @ offset_px)).numpy()
                   for v in truth.volumes]
    labels = truth.labels.copy()
    z = labels[:, None] + 0.01 * np.random.default_rng(0).standard_normal((len(labels), 2))
    metrics, errors_deg, curves = compare_with_truth(truth, z, labels, labels, PoseTable(pred_rot, pred_shift),
                                                     run_volumes, truth.voxel_size_angstrom)
    assert metrics["rotation"]["hand"] == hand and errors_deg.max() < 1e-6
    assert np.allclose(metrics["translation"]["offset_px"], offset_px, atol=1e-6)
    assert metrics["latent"]["confusion_error"] == 0.0 and metrics["latent"]["adjusted_rand_index"] == 1.0
    for k, entry in enumerate(metrics["class_volumes"]):
        assert entry["true_class"] == k
        assert entry["au_fsc"] > 0.9  # two trilinear resamplings blur the highest shells only
        assert entry["resolution_fsc0.5_px"] < 2.6
    # without the alignment the same volumes do not match the truth
    assert au_fsc(*fourier_shell_correlation(run_volumes[0], truth.volumes[0])) < 0.6
    assert len(curves) == len(truth.volumes)
