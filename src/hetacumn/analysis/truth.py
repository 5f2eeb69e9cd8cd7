"""Comparison of a trained run with the ground truth of a ``hetacumn simulate`` dataset.

An ab initio map is defined up to a global rotation, a hand and a 3D offset. They are found from the
poses (:func:`hetacumn.metrics.pose.align_rotations` and the offset fitted by
:func:`hetacumn.metrics.pose.translation_errors`) and applied to the class volumes before their FSC with
the true volumes. With ``pred ~ true @ G`` a run's map is ``V(y) = V_true(G y)``; a mirrored run
(``J pred J ~ true @ G``, ``J = diag(1, 1, -1)``) has ``V(J y) = V_true(G y)``; an offset ``d`` (px, truth
frame) adds ``(A_true d)_xy`` to every shift. Hence ``V_true(x) = V(R (x + d))`` with ``R = G^T`` or
``J G^T``.

Example usage::

    truth = load_truth("sim/truth", n_particles=len(z), box_size=64)
    metrics, errors_deg, fsc_curves = compare_with_truth(truth, z, labels, run_poses, class_volumes, 1.5)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hetacumn.analysis.latent import kmeans
from hetacumn.errors import InputError
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.mrc import read_mrc
from hetacumn.io.particles import PoseTable
from hetacumn.metrics.fsc import au_fsc, fourier_shell_correlation, resolution_at
from hetacumn.metrics.latent import adjusted_rand_index, confusion_error, spearman_pc1
from hetacumn.metrics.pose import MIRROR, align_rotations, rotation_errors, translation_errors
from hetacumn.physics.grids import centered_indices
from hetacumn.physics.resample import fourier_crop_volume
from hetacumn.physics.rotations import geodesic_distance_rad

__all__ = ["Truth", "load_truth", "align_volume", "compare_with_truth"]

log = logging.getLogger(__name__)


@dataclass
class Truth:
    """Ground truth of N simulated particles and K true volumes ``(D, D, D)``."""

    labels: np.ndarray
    states: np.ndarray
    poses: PoseTable
    volumes: list[np.ndarray]  # Fourier-cropped to a run's model box when it is smaller than the particles'
    voxel_size_angstrom: float  # of ``volumes``
    particle_box_px: int  # of the particle images (the units of the poses' shifts)


def _load_vector(path: Path, n_particles: int) -> np.ndarray:
    if not path.is_file():
        raise InputError(path, "not found: is this the truth/ folder written by hetacumn simulate?")
    values = np.load(path)
    if values.shape != (n_particles,):
        raise InputError(path, f"expected {n_particles} values (one per particle of the run), got {values.shape}")
    return values


def load_truth(truth_dir: str | Path, n_particles: int, box_size: int, volume_box: int | None = None) -> Truth:
    """Read ``labels.npy``, ``states.npy``, ``poses.pkl`` and ``vol_*.mrc`` from a simulation's truth folder;
    ``box_size``: the particles'; ``volume_box``: the run's model box, to which the maps are Fourier-cropped
    when it is smaller (a run trained on cropped images)."""
    truth_dir = Path(truth_dir)
    if not truth_dir.is_dir():
        raise InputError(truth_dir, "truth folder not found")
    labels = _load_vector(truth_dir / "labels.npy", n_particles).astype(np.int64)
    states = _load_vector(truth_dir / "states.npy", n_particles).astype(np.float64)
    poses = read_pose_pickle(truth_dir / "poses.pkl", box_size)
    if len(poses) != n_particles:
        raise InputError(truth_dir / "poses.pkl", f"{len(poses)} poses but the run has {n_particles} particles")
    paths = sorted(truth_dir.glob("vol_*.mrc"))
    if not paths:
        raise InputError(truth_dir, "no true volumes (vol_000.mrc, ...)")
    volumes, voxel_sizes = zip(*(read_mrc(path) for path in paths))
    for path, volume in zip(paths, volumes):
        if volume.shape != (box_size,) * 3:
            raise InputError(path, f"shape {volume.shape} but the run's box is {box_size} px")
    voxel_size = float(voxel_sizes[0])
    if volume_box is not None and volume_box < box_size:
        volumes = [fourier_crop_volume(torch.from_numpy(v).double(), volume_box).float().numpy() for v in volumes]
        voxel_size *= box_size / volume_box
    return Truth(labels, states, poses, list(volumes), voxel_size, box_size)


def volume_rotation_to_truth(alignment) -> np.ndarray:
    """Rotation ``R`` for :func:`align_volume` that carries a run's map onto the truth, from the pose alignment.

    Poses ``pred = true G`` belong to the map ``predicted(y) = truth(G y)``; mirrored ones (``J pred J = true G``)
    to ``predicted(y) = truth(G J y)``; so ``R = G^T`` (times ``J`` for the mirrored hand).
    """
    rotation = alignment.global_rotation.T
    return MIRROR @ rotation if alignment.hand == "mirrored" else rotation


def align_volume(volume: torch.Tensor, rotation, offset_px=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """Resample ``volume`` (D, D, D, [z, y, x]) as ``out(x) = volume(R (x + d))`` by trilinear interpolation.

    ``x`` and ``d = offset_px`` are ``(x, y, z)`` px from the box centre ``D // 2``; ``R = rotation``
    (3, 3). Points outside the box read 0. Runs on the volume's device and dtype.
    """
    d = volume.shape[-1]
    rotation = torch.as_tensor(np.asarray(rotation), dtype=volume.dtype, device=volume.device)
    offset = torch.as_tensor(np.asarray(offset_px), dtype=volume.dtype, device=volume.device)
    offsets = centered_indices(d, device=volume.device, dtype=volume.dtype)
    z, y, x = torch.meshgrid(offsets, offsets, offsets, indexing="ij")
    points = (torch.stack([x, y, z], dim=-1) + offset) @ rotation.T
    grid = (points + d // 2) * (2.0 / (d - 1)) - 1  # align_corners=True normalisation, last axis (x, y, z)
    return F.grid_sample(volume[None, None], grid[None], mode="bilinear", padding_mode="zeros",
                         align_corners=True)[0, 0]


def _latent_metrics(truth: Truth, z: np.ndarray, gmm_labels: np.ndarray, seed: int) -> dict:
    n_true = len(np.unique(truth.labels))
    predicted, _ = kmeans(z, n_true, seed)
    metrics = {
        "n_true_classes": n_true,
        "confusion_error": confusion_error(predicted, truth.labels),
        "adjusted_rand_index": adjusted_rand_index(predicted, truth.labels),
        "gmm_adjusted_rand_index": adjusted_rand_index(gmm_labels, truth.labels),
    }
    if np.ptp(truth.states) > 0:
        metrics["spearman_pc1"] = spearman_pc1(z, truth.states)
    return metrics


def _class_fsc(volume: np.ndarray, reference: np.ndarray, voxel_size_angstrom: float) -> tuple[dict, tuple]:
    freqs_px, fsc = fourier_shell_correlation(volume, reference)
    result = {"au_fsc": au_fsc(freqs_px, fsc)}
    for threshold in (0.5, 0.143):
        res_px = resolution_at(freqs_px, fsc, threshold)
        result[f"resolution_fsc{threshold}_px"] = res_px
        result[f"resolution_fsc{threshold}_angstrom"] = res_px * voxel_size_angstrom
    return result, (freqs_px, fsc)


def compare_with_truth(truth: Truth, z: np.ndarray, kmeans_labels: np.ndarray, gmm_labels: np.ndarray,
                       poses: PoseTable, class_volumes: list[np.ndarray], voxel_size_angstrom: float,
                       seed: int = 0) -> tuple[dict, np.ndarray, dict]:
    """Latent, pose and class-volume errors of a run against the truth.

    Parameters
    ----------
    z : (N, zdim) latent means; kmeans_labels, gmm_labels : (N,) the run's classes.
    poses : the run's poses (rotations A, shift_px).
    class_volumes : K volumes (D, D, D), one per k-means class, in the run's frame.

    Returns
    -------
    metrics : dict with ``latent`` (confusion error, ARI, Spearman of PC1), ``rotation`` and ``translation``
        errors after global alignment, and ``class_volumes`` (per class: its majority true class and the
        FSC with that true volume after alignment, resolution at 0.5 and 0.143 in px and Å).
    pose_errors_deg : (N,) geodesic rotation error of each particle after alignment.
    fsc_curves : label -> (frequencies in cycles/px, FSC) for each class volume.
    """
    aligned, alignment = align_rotations(poses.rotations, truth.poses.rotations)
    errors_deg = np.rad2deg(geodesic_distance_rad(torch.from_numpy(aligned),
                                                  torch.from_numpy(truth.poses.rotations)).numpy())
    rotation = {**rotation_errors(aligned, truth.poses.rotations, align=False), "hand": alignment.hand}
    translation = translation_errors(poses.shift_px, truth.poses.shift_px, true_rotations=truth.poses.rotations)
    to_truth = volume_rotation_to_truth(alignment)
    offset_px = np.asarray(translation["offset_px"]) * truth.volumes[0].shape[-1] / truth.particle_box_px
    per_class, curves = [], {}
    for k, volume in enumerate(class_volumes):
        members = truth.labels[kmeans_labels == k]
        majority = int(np.bincount(members).argmax()) if len(members) else 0
        moved = align_volume(torch.from_numpy(np.asarray(volume, dtype=np.float64)), to_truth, offset_px).numpy()
        fsc, curves[f"class {k} vs true {majority}"] = _class_fsc(moved, truth.volumes[majority], voxel_size_angstrom)
        per_class.append({"class": k, "true_class": majority, **fsc})
    log.info("truth: median rotation error %.2f° (%s hand), best class AU-FSC %.3f", rotation["median_angle_deg"],
             alignment.hand, max(c["au_fsc"] for c in per_class))
    metrics = {"latent": _latent_metrics(truth, z, gmm_labels, seed), "rotation": rotation,
               "translation": translation, "class_volumes": per_class}
    return metrics, errors_deg, curves
