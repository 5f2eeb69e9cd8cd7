"""Pose errors against the truth, after the global alignment an ab initio reconstruction needs.

An ab initio map is defined up to a global rotation and a hand. With pose rotations ``A`` mapping volume
xyz to image xyz (docs/conventions.md), a map rotated by ``G`` relative to the truth is seen at poses
``A @ G``, and a map mirrored by ``J = diag(1, 1, -1)`` at poses ``J A J`` (the projection along z cannot
tell them apart). :func:`align_rotations` finds ``G`` and the hand from the data, robustly.

Example usage::

    aligned, alignment = align_rotations(pred_rotations, true_rotations)
    errors = rotation_errors(pred_rotations, true_rotations)      # {"median_angle_deg": ..., "hand": ...}
    shifts = translation_errors(pred_shift_px, true_shift_px, true_rotations=true_rotations)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hetacumn.physics.rotations import geodesic_distance_rad

__all__ = ["MIRROR", "RotationAlignment", "align_rotations", "rotation_errors", "translation_errors"]

MIRROR = np.diag([1.0, 1.0, -1.0])
_N_ANCHORS = 32
_N_SCORED = 2000
_MAX_ITERATIONS = 100


@dataclass(frozen=True)
class RotationAlignment:
    """The global transform found by :func:`align_rotations`.

    ``global_rotation`` is ``G`` (3, 3) with ``pred ~ true @ G`` (hand ``"original"``) or
    ``MIRROR @ pred @ MIRROR ~ true @ G`` (hand ``"mirrored"``).
    """

    global_rotation: np.ndarray
    hand: str


def _as_array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
    return np.asarray(values, dtype=np.float64)


def _as_rotation_pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    pred, true = _as_array(pred), _as_array(true)
    if pred.ndim != 3 or pred.shape[1:] != (3, 3) or pred.shape != true.shape or len(pred) == 0:
        raise ValueError(f"need two (N, 3, 3) rotation stacks of equal length, got {pred.shape} and {true.shape}")
    return pred, true


def _nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The rotation closest in Frobenius norm to a 3x3 matrix (SVD projection onto SO(3))."""
    u, _, vt = np.linalg.svd(matrix)
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ fix @ vt


def _chordal_distances(estimates: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    return np.linalg.norm((estimates - rotation).reshape(len(estimates), 9), axis=1)


def _fit_global_rotation(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Robust ``G`` with ``pred_i ~ true_i G`` from the per-image estimates ``G_i = true_i^T pred_i``.

    1. Start from the anchor estimate (out of up to 32 spread over the data) with the smallest median
       distance to a subset of the others.
    2. Weiszfeld iterations (weights ``1 / ||G_i - G||_F``) to the L1 chordal median, which minimises
       ``sum_i ||pred_i - true_i G||_F``: a minority of outliers cannot pull it away.
    3. The least-squares (chordal L2) mean of the inliers, those within 3 median distances, which is the
       more precise estimate when the inliers' errors are small and isotropic.
    """
    estimates = true.transpose(0, 2, 1) @ pred
    scored = estimates[np.linspace(0, len(estimates) - 1, min(_N_SCORED, len(estimates))).astype(int)]
    anchors = estimates[np.linspace(0, len(estimates) - 1, min(_N_ANCHORS, len(estimates))).astype(int)]
    rotation = min(anchors, key=lambda anchor: np.median(_chordal_distances(scored, anchor)))
    for _ in range(_MAX_ITERATIONS):
        weights = 1.0 / np.maximum(_chordal_distances(estimates, rotation), 1e-9)
        updated = _nearest_rotation(np.einsum("n,nij->ij", weights, estimates))
        converged = np.abs(updated - rotation).max() < 1e-12
        rotation = updated
        if converged:
            break
    distances = _chordal_distances(estimates, rotation)
    inliers = distances <= 3 * np.median(distances) + 1e-9
    return _nearest_rotation(estimates[inliers].sum(axis=0))


def _angles_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> np.ndarray:
    return np.rad2deg(geodesic_distance_rad(torch.from_numpy(rot_a), torch.from_numpy(rot_b)).numpy())


def align_rotations(pred, true) -> tuple[np.ndarray, RotationAlignment]:
    """Align predicted pose rotations to the true ones with a global rotation and, if better, a mirror.

    Parameters
    ----------
    pred, true : numpy.ndarray or torch.Tensor, shape (N, 3, 3)
        Pose rotations (volume xyz -> image xyz) of the same N images.

    Returns
    -------
    aligned_pred : numpy.ndarray, shape (N, 3, 3), float64
        ``pred @ G^T`` (or ``J pred J @ G^T`` when mirrored), directly comparable with ``true``.
    alignment : RotationAlignment
        ``G`` and the hand (``"original"`` or ``"mirrored"``) with the smaller median geodesic error.
    """
    pred, true = _as_rotation_pair(pred, true)
    best = None
    for hand, candidate in (("original", pred), ("mirrored", MIRROR @ pred @ MIRROR)):
        rotation = _fit_global_rotation(candidate, true)
        aligned = candidate @ rotation.T
        median_deg = float(np.median(_angles_deg(aligned, true)))
        if best is None or median_deg < best[0]:
            best = (median_deg, aligned, RotationAlignment(rotation, hand))
    return best[1], best[2]


def _viewing_angles_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> np.ndarray:
    """Angle between the third rows (the viewing directions in volume coordinates)."""
    view_a, view_b = rot_a[:, 2, :], rot_b[:, 2, :]
    sin = np.linalg.norm(np.cross(view_a, view_b), axis=1)
    return np.rad2deg(np.arctan2(sin, (view_a * view_b).sum(axis=1)))


def rotation_errors(pred, true, align: bool = True) -> dict:
    """Rotation errors of predicted poses, after :func:`align_rotations` unless ``align`` is False.

    Returns
    -------
    dict
        ``median_angle_deg``, ``mean_angle_deg``: geodesic angle of ``pred_i^T true_i``;
        ``median_frobenius_sq``, ``mean_frobenius_sq``: ``||pred_i - true_i||_F^2`` (``= 4 (1 - cos angle)``);
        ``median_view_deg``, ``mean_view_deg``: angle between viewing directions (third rows);
        ``hand``: ``"original"`` or ``"mirrored"``.
    """
    pred, true = _as_rotation_pair(pred, true)
    hand = "original"
    if align:
        pred, alignment = align_rotations(pred, true)
        hand = alignment.hand
    angles = _angles_deg(pred, true)
    frobenius_sq = ((pred - true) ** 2).sum(axis=(1, 2))
    views = _viewing_angles_deg(pred, true)
    return {
        "median_angle_deg": float(np.median(angles)),
        "mean_angle_deg": float(np.mean(angles)),
        "median_frobenius_sq": float(np.median(frobenius_sq)),
        "mean_frobenius_sq": float(np.mean(frobenius_sq)),
        "median_view_deg": float(np.median(views)),
        "mean_view_deg": float(np.mean(views)),
        "hand": hand,
    }


def _summary(differences: np.ndarray, prefix: str) -> dict:
    distances = np.linalg.norm(differences, axis=1)
    return {
        f"{prefix}median_px": float(np.median(distances)),
        f"{prefix}mean_px": float(np.mean(distances)),
        f"{prefix}median_sq_px2": float(np.median(distances**2)),
        f"{prefix}mean_sq_px2": float(np.mean(distances**2)),
    }


def translation_errors(pred_shift_px, true_shift_px, true_rotations=None) -> dict:
    """In-plane shift errors in px, raw and (given the true rotations) after removing a global 3D offset.

    A map offset by ``d`` (3D, px) from the truth changes every image's shift by ``(A_i d)_xy``; ``d`` is
    fitted by least squares over all images and its projection removed.

    Parameters
    ----------
    pred_shift_px, true_shift_px : numpy.ndarray or torch.Tensor, shape (N, 2)
        Shifts ``(x, y)`` in px.
    true_rotations : numpy.ndarray or torch.Tensor, shape (N, 3, 3), optional
        True pose rotations; without them no offset is removed.

    Returns
    -------
    dict
        ``median_px``, ``mean_px`` (L2 distance), ``median_sq_px2``, ``mean_sq_px2`` (squared); with
        ``true_rotations`` also the same four prefixed ``offset_removed_`` and ``offset_px`` (d, [x, y, z]).
    """
    pred, true = _as_array(pred_shift_px), _as_array(true_shift_px)
    if pred.ndim != 2 or pred.shape[1] != 2 or pred.shape != true.shape:
        raise ValueError(f"need two (N, 2) shift arrays of equal length, got {pred.shape} and {true.shape}")
    differences = pred - true
    result = _summary(differences, "")
    if true_rotations is not None:
        rotations = _as_array(true_rotations)
        if rotations.shape != (len(pred), 3, 3):
            raise ValueError(f"need (N, 3, 3) rotations for N = {len(pred)} shifts, got {rotations.shape}")
        design = rotations[:, :2, :].reshape(-1, 3)
        offset_px = np.linalg.lstsq(design, differences.reshape(-1), rcond=None)[0]
        residual = differences - rotations[:, :2, :] @ offset_px
        result.update(_summary(residual, "offset_removed_"))
        result["offset_px"] = [float(v) for v in offset_px]
    return result
