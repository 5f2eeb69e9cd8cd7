"""Rotation parametrisations, all as batched, differentiable torch functions.

Convention (see docs/conventions.md): a *pose rotation* ``A`` (shape ``(..., 3, 3)``) maps volume
(reference) xyz coordinates to image xyz coordinates, ``x_image = A @ x_volume``. It equals RELION's
Euler matrix, cryoDRGN's ``rot`` and the transpose of cryoSPARC's ``expmap(pose)``. The central slice
of an image samples the volume at ``A.T @ (kx, ky, 0)``.

Example usage::

    A = euler_relion_to_matrix(rot_deg, tilt_deg, psi_deg)   # (..., 3, 3)
    rot_deg, tilt_deg, psi_deg = matrix_to_euler_relion(A)
    angle_rad = geodesic_distance_rad(A, B)
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "rotation_z",
    "rotation_y",
    "euler_relion_to_matrix",
    "matrix_to_euler_relion",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "s2s2_to_matrix",
    "matrix_to_s2s2",
    "geodesic_distance_rad",
    "random_rotations",
    "inplane_rotation_pi",
    "super_fibonacci_rotations",
    "local_rotation_offsets",
]


def rotation_z(angle_rad: torch.Tensor) -> torch.Tensor:
    """Active right-handed rotation about z, shape ``(..., 3, 3)``."""
    c, s = torch.cos(angle_rad), torch.sin(angle_rad)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rows = [torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1), torch.stack([zero, zero, one], -1)]
    return torch.stack(rows, dim=-2)


def rotation_y(angle_rad: torch.Tensor) -> torch.Tensor:
    """Active right-handed rotation about y, shape ``(..., 3, 3)``."""
    c, s = torch.cos(angle_rad), torch.sin(angle_rad)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rows = [torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1), torch.stack([-s, zero, c], -1)]
    return torch.stack(rows, dim=-2)


def euler_relion_to_matrix(rot_deg: torch.Tensor, tilt_deg: torch.Tensor, psi_deg: torch.Tensor) -> torch.Tensor:
    """RELION ZYZ Euler angles (degrees) to the pose rotation ``A = (Rz(rot) Ry(tilt) Rz(psi))^T``."""
    rot, tilt, psi = (torch.deg2rad(torch.as_tensor(a)) for a in (rot_deg, tilt_deg, psi_deg))
    intrinsic = rotation_z(rot) @ rotation_y(tilt) @ rotation_z(psi)
    return intrinsic.transpose(-1, -2)


def matrix_to_euler_relion(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`euler_relion_to_matrix`: ``(rot, tilt, psi)`` in degrees.

    Ranges: rot and psi in (-180, 180], tilt in [0, 180]. At tilt 0 or 180 (gimbal lock) psi is set to 0.
    """
    m = matrix.transpose(-1, -2)  # Rz(rot) Ry(tilt) Rz(psi)
    sin_tilt = torch.sqrt(m[..., 0, 2] ** 2 + m[..., 1, 2] ** 2)
    tilt = torch.atan2(sin_tilt, m[..., 2, 2])
    regular = sin_tilt > 1e-6
    rot_regular = torch.atan2(m[..., 1, 2], m[..., 0, 2])
    psi_regular = torch.atan2(m[..., 2, 1], -m[..., 2, 0])
    # Gimbal lock: only rot + psi (tilt 0) or rot - psi (tilt 180) is defined; put it all in rot.
    rot_locked = torch.where(
        m[..., 2, 2] > 0,
        torch.atan2(m[..., 1, 0], m[..., 0, 0]),
        torch.atan2(-m[..., 0, 1], -m[..., 0, 0]),
    )
    rot = torch.where(regular, rot_regular, rot_locked)
    psi = torch.where(regular, psi_regular, torch.zeros_like(psi_regular))
    return torch.rad2deg(rot), torch.rad2deg(tilt), torch.rad2deg(psi)


def _skew(v: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    rows = [torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)]
    return torch.stack(rows, dim=-2)


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rotation vector (axis times angle in radians, ``(..., 3)``) to matrix by Rodrigues' formula.

    Safe at zero angle (Taylor expansion), differentiable everywhere.
    """
    theta_sq = (rotvec**2).sum(-1, keepdim=True)
    small = theta_sq < 1e-8
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
    a = torch.where(small, 1 - theta_sq / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta_sq / 24, (1 - torch.cos(theta)) / theta**2)
    k = _skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(k)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """Quaternion ``(w, x, y, z)`` (normalised here) to rotation matrix."""
    q = quaternion / quaternion.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ]
    return torch.stack(rows, dim=-2)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrix to unit quaternion ``(w, x, y, z)`` with ``w >= 0``.

    Takes each of the four candidate formulas and keeps the best-conditioned one per matrix.
    """
    m = matrix
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = torch.stack(
        [
            torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - trace, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - trace, m[..., 1, 2] + m[..., 2, 1]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 + 2 * m[..., 2, 2] - trace], -1),
        ],
        dim=-2,
    )
    best = torch.argmax(torch.diagonal(candidates, dim1=-2, dim2=-1), dim=-1)  # 4|q_i|^2 of candidate i
    chosen = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = chosen / chosen.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`axis_angle_to_matrix`; the angle is in ``[0, pi]``."""
    q = matrix_to_quaternion(matrix)
    sin_half = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, q[..., :1])
    small = sin_half < 1e-7
    scale = torch.where(small, 2.0 / q[..., :1].clamp_min(1e-12), angle / torch.where(small, torch.ones_like(sin_half), sin_half))
    return q[..., 1:] * scale


def s2s2_to_matrix(six_d: torch.Tensor) -> torch.Tensor:
    """6D (S2S2) representation ``(..., 6)`` to rotation matrix by Gram-Schmidt; rows are ``b1, b2, b3``."""
    a1, a2 = six_d[..., :3], six_d[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


def matrix_to_s2s2(matrix: torch.Tensor) -> torch.Tensor:
    """The first two rows of each matrix, flattened to ``(..., 6)``; inverse of :func:`s2s2_to_matrix`."""
    return matrix[..., :2, :].reshape(*matrix.shape[:-2], 6)


def geodesic_distance_rad(rot_a: torch.Tensor, rot_b: torch.Tensor) -> torch.Tensor:
    """Angle in radians of ``rot_a^T rot_b``, in ``[0, pi]``; stable near 0 and pi (atan2 form)."""
    rel = rot_a.transpose(-1, -2) @ rot_b
    cos = (rel[..., 0, 0] + rel[..., 1, 1] + rel[..., 2, 2] - 1) / 2
    skew = torch.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0], rel[..., 1, 0] - rel[..., 0, 1]], -1)
    sin = skew.norm(dim=-1) / 2
    return torch.atan2(sin, cos)


def random_rotations(
    count: int, generator: torch.Generator | None = None, dtype=torch.float32, device=None
) -> torch.Tensor:
    """``count`` rotations drawn uniformly (Haar measure) on SO(3), from normalised Gaussian quaternions."""
    q = torch.randn(count, 4, generator=generator, dtype=torch.float64)
    return quaternion_to_matrix(q).to(dtype=dtype, device=device)


def inplane_rotation_pi(matrix: torch.Tensor) -> torch.Tensor:
    """The pose of the same image rotated in-plane by pi: ``Rz(pi) @ A``."""
    rz = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=matrix.dtype, device=matrix.device))
    return rz @ matrix




def super_fibonacci_rotations(count: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """``count`` near-uniform rotations covering SO(3) (super-Fibonacci spiral, Alexa, CVPR 2022).

    For 4,608 rotations a random rotation lies a median 7.6 deg (at most 12.8 deg) from the nearest
    one; the spacing scales as ``count^(-1/3)``.
    """
    s = torch.arange(count, dtype=torch.float64) + 0.5
    radius_a, radius_b = torch.sqrt(s / count), torch.sqrt(1 - s / count)
    alpha = 2 * math.pi * s / math.sqrt(2)
    beta = 2 * math.pi * s / 1.533751168755204288118041  # root of x^4 = x + 4
    q = torch.stack([radius_a * torch.sin(alpha), radius_a * torch.cos(alpha), radius_b * torch.sin(beta),
                     radius_b * torch.cos(beta)], dim=-1)
    return quaternion_to_matrix(q).to(dtype=dtype, device=device)


def local_rotation_offsets(step_rad: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """19 small rotations ``(19, 3, 3)``: identity, +-step about x, y, z and +-step about the 12 face diagonals.

    Right-multiplying a pose by these (``A @ offset``) explores its neighbourhood at the given step.
    """
    axes = [torch.zeros(3, dtype=torch.float64)]
    eye = torch.eye(3, dtype=torch.float64)
    for i in range(3):
        axes += [eye[i], -eye[i]]
        for j in range(i + 1, 3):
            for sign in (1.0, -1.0):
                diagonal = (eye[i] + sign * eye[j]) / math.sqrt(2)
                axes += [diagonal, -diagonal]
    return axis_angle_to_matrix(torch.stack(axes) * step_rad).to(dtype=dtype, device=device)
