"""A built-in example molecule with a hinge motion, made of smooth Gaussian blobs (no download).

The molecule is about 60 Å across: a bent, elongated core with two lobes (no symmetry, no mirror plane)
and an arm with a knob at its end. As ``state`` goes from 0 to 1 the arm turns rigidly by 35 degrees about a
hinge axis, so ``state in {0, 1}`` gives two conformations and the states between a continuous path.
Values are positive and of order one, like a Coulomb potential map; the background is zero.

Example usage::

    volume = toy_molecule(box_size=64, pixel_size_angstrom=2.0, state=0.5)   # (64, 64, 64) float32
    motion = toy_hinge_motion(64, 2.0)          # static part + arm at state 0, for fast rendering
    rotations = motion.arm_rotation(np.array([0.0, 1.0]))                    # (2, 3, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HINGE_ANGLE_DEG", "HingeMotion", "toy_molecule", "toy_hinge_motion"]

HINGE_ANGLE_DEG = 35.0
_SEED = 20240611
# Geometry in Å, xyz, before centring on the molecule's state-0 centroid.
_HINGE_ANGSTROM = np.array([9.0, -3.0, 4.0])
_HINGE_AXIS = np.array([0.2, 0.3, 1.0]) / np.linalg.norm([0.2, 0.3, 1.0])
_ARM_DIRECTION = np.array([1.0, -0.5, 0.7]) / np.linalg.norm([1.0, -0.5, 0.7])


@dataclass(frozen=True)
class _Blobs:
    """Gaussian blobs: centres ``(N, 3)`` Å xyz from the box centre, widths and heights ``(N,)``."""

    centres_angstrom: np.ndarray
    sigma_angstrom: np.ndarray
    height: np.ndarray
    moving: np.ndarray  # (N,) bool: part of the arm


@dataclass(frozen=True)
class HingeMotion:
    """The toy molecule split into a static body and an arm that turns about a hinge.

    ``toy_molecule(state) = static + arm moved by x -> R(state) (x - h) + h``, where ``h`` is the hinge
    point and ``R`` :meth:`arm_rotation`. Under a pose ``A`` the arm's image equals the image of ``arm``
    at pose ``A R`` moved in-plane by ``(A t)_xy`` with ``t = h - R h`` (see :meth:`arm_offset_px`).

    Attributes
    ----------
    static, arm : np.ndarray
        ``(D, D, D)`` float32 volumes ``[z, y, x]``; ``arm`` is at state 0.
    hinge_px : np.ndarray
        ``(3,)`` hinge point, xyz in pixels from the box centre.
    axis : np.ndarray
        ``(3,)`` unit hinge axis, xyz.
    """

    static: np.ndarray
    arm: np.ndarray
    hinge_px: np.ndarray
    axis: np.ndarray

    def arm_rotation(self, states: np.ndarray) -> np.ndarray:
        """Rotations ``(B, 3, 3)`` of the arm at ``states`` ``(B,)`` (0 -> identity, 1 -> 35 degrees)."""
        return _axis_rotation(self.axis, np.deg2rad(HINGE_ANGLE_DEG) * np.asarray(states, dtype=np.float64))

    def arm_offset_px(self, states: np.ndarray) -> np.ndarray:
        """Translations ``t = h - R h`` ``(B, 3)`` in pixels, xyz, that complete the arm's rigid motion."""
        rotations = self.arm_rotation(states)
        return self.hinge_px - rotations @ self.hinge_px


def _axis_rotation(axis: np.ndarray, angle_rad: np.ndarray) -> np.ndarray:
    """Active right-handed rotations ``(B, 3, 3)`` by ``angle_rad`` ``(B,)`` about a unit ``axis``."""
    x, y, z = axis
    skew = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    angle = np.atleast_1d(angle_rad)[:, None, None]
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * (skew @ skew)


def _ellipsoid_points(rng: np.random.Generator, count: int, centre, semi_axes, frame=np.eye(3)) -> np.ndarray:
    """``count`` points uniform in an ellipsoid whose axes are the rows of ``frame``."""
    direction = rng.normal(size=(count, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = rng.uniform(size=(count, 1)) ** (1 / 3)
    return np.asarray(centre) + (direction * radius * np.asarray(semi_axes)) @ frame


def _arm_frame() -> np.ndarray:
    """Orthonormal rows: the arm's long direction first."""
    side = np.cross(_ARM_DIRECTION, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    return np.stack([_ARM_DIRECTION, side, np.cross(_ARM_DIRECTION, side)])


def _toy_blobs() -> tuple[_Blobs, np.ndarray]:
    """The molecule's blobs at state 0, centred on their centroid, and the hinge point (Å)."""
    rng = np.random.default_rng(_SEED)
    core = _ellipsoid_points(rng, 110, [-4.0, 0.0, 0.0], [15.0, 11.0, 8.0])
    core[:, 2] += 12.0 * ((core[:, 0] + 4.0) / 15.0) ** 2  # bent out of its plane: no mirror plane
    lobe = _ellipsoid_points(rng, 30, [0.0, 9.0, 12.0], [6.0, 6.0, 5.0])
    small_lobe = _ellipsoid_points(rng, 15, [-13.0, -7.0, 8.0], [4.5, 4.5, 4.5])
    rod = _ellipsoid_points(rng, 40, _HINGE_ANGSTROM + 9.0 * _ARM_DIRECTION, [9.0, 4.5, 4.0], _arm_frame())
    knob = _ellipsoid_points(rng, 25, _HINGE_ANGSTROM + 19.0 * _ARM_DIRECTION, [5.5, 5.5, 5.5])
    centres = np.concatenate([core, lobe, small_lobe, rod, knob])
    moving = np.arange(len(centres)) >= len(core) + len(lobe) + len(small_lobe)
    sigma = rng.uniform(2.2, 3.2, size=len(centres))
    height = rng.uniform(0.06, 0.1, size=len(centres))
    centroid = (centres * (height * sigma**3)[:, None]).sum(0) / (height * sigma**3).sum()
    blobs = _Blobs(centres - centroid, sigma, height, moving)
    return blobs, _HINGE_ANGSTROM - centroid


def _render_blobs(centres_px: np.ndarray, sigma_px: np.ndarray, height: np.ndarray, box_size: int) -> np.ndarray:
    """Sum of separable Gaussians sampled on the ``(D, D, D)`` grid; centres xyz in px from ``D // 2``."""
    offsets = np.arange(box_size, dtype=np.float64) - box_size // 2
    profiles = np.exp(-((offsets[None, None, :] - centres_px[:, :, None]) ** 2) / (2 * sigma_px[:, None, None] ** 2))
    gx, gy, gz = profiles[:, 0], profiles[:, 1], profiles[:, 2]  # (N, D) each
    zy = (height[:, None, None] * gz[:, :, None] * gy[:, None, :]).reshape(len(height), -1)
    return (zy.T @ gx).reshape(box_size, box_size, box_size).astype(np.float32)


def _check_grid(box_size: int, pixel_size_angstrom: float) -> None:
    if box_size < 2 or box_size % 2:
        raise ValueError(f"box_size must be even and >= 2, got {box_size}")
    if not pixel_size_angstrom > 0:
        raise ValueError(f"pixel_size_angstrom must be positive, got {pixel_size_angstrom}")


def toy_molecule(box_size: int, pixel_size_angstrom: float, state: float = 0.0) -> np.ndarray:
    """The built-in molecule at conformation ``state`` (0 to 1) on a cubic grid.

    Parameters
    ----------
    box_size : int
        Even box size ``D`` in pixels; about 70 Å must fit (64 px at 2-3 Å/px is comfortable).
    pixel_size_angstrom : float
        Voxel size in Å. The molecule is defined in Å, so it keeps its size at any sampling.
    state : float
        Position along the hinge motion: 0 and 1 are the two end conformations (arm turned by 35 deg).

    Returns
    -------
    np.ndarray
        ``(D, D, D)`` float32 volume ``[z, y, x]``, deterministic, centred on its state-0 centroid.
    """
    _check_grid(box_size, pixel_size_angstrom)
    if not 0.0 <= state <= 1.0:
        raise ValueError(f"state must lie in [0, 1], got {state}")
    blobs, hinge = _toy_blobs()
    rotation = _axis_rotation(_HINGE_AXIS, np.deg2rad(HINGE_ANGLE_DEG) * np.array([state]))[0]
    moved = (blobs.centres_angstrom - hinge) @ rotation.T + hinge
    centres = np.where(blobs.moving[:, None], moved, blobs.centres_angstrom)
    return _render_blobs(centres / pixel_size_angstrom, blobs.sigma_angstrom / pixel_size_angstrom, blobs.height,
                         box_size)


def toy_hinge_motion(box_size: int, pixel_size_angstrom: float) -> HingeMotion:
    """The built-in molecule as a :class:`HingeMotion` (static body, arm at state 0, hinge), same grid."""
    _check_grid(box_size, pixel_size_angstrom)
    blobs, hinge = _toy_blobs()
    parts = []
    for keep in (~blobs.moving, blobs.moving):
        parts.append(_render_blobs(blobs.centres_angstrom[keep] / pixel_size_angstrom,
                                   blobs.sigma_angstrom[keep] / pixel_size_angstrom, blobs.height[keep], box_size))
    return HingeMotion(static=parts[0], arm=parts[1], hinge_px=hinge / pixel_size_angstrom, axis=_HINGE_AXIS.copy())
