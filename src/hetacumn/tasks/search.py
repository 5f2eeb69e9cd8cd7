"""Pose search: a global grid over SO(3) x shifts, then local refinement, against a Fourier volume.

The volume is a centred ``(D, D, D)`` transform (the search stage's running backprojection, or the
decoder on the grid, :meth:`~hetacumn.models.model.HetModel.fourier_volume`); candidate slices are
read from it by trilinear interpolation, so the cost barely depends on the decoder. The global search
compares only frequencies within ``global_radius_px`` (8 px by default), where the grid's spacing
(median 7.6 deg for 4,608 rotations) and the shift step (1 px by default) still leave the right pose
among the best candidates. For each image the error of a candidate pose ``(A, t)`` is the task's
weighted squared error

    sum_k w_k |Y(k) - C(k) S_A(k) exp(2 pi i k.t)|^2
  = sum_k w_k C(k)^2 |S_A(k)|^2 - 2 Re sum_k w_k conj(Y(k)) C(k) exp(2 pi i k.t) S_A(k) + const,

whose two terms (``power`` and ``cross``) are matrix products over the half-plane points, for every
image, shift and rotation at once; the amplitude of the slice is fitted per candidate
(:func:`_fit_score`). Local refinement right-multiplies a pose by small rotations
(:func:`~hetacumn.physics.rotations.local_rotation_offsets`) and moves the shift by +-step, halving
both steps each level: the candidates compete after two levels at the coarse radius, and only the
winner is refined further at the full radius (:meth:`PoseSearch.coarse_candidates`,
:meth:`PoseSearch.refine_best`). :func:`candidate_posteriors` weighs the candidates by their likelihood
under white Gaussian noise, for a soft assignment.

Example usage::

    search = PoseSearch(rotations=4608, shift_extent_px=2.0, shift_step_px=1.0, levels=5)
    volume_ft = model.fourier_volume(z=None, max_radius_px=half.radius_px + 2)
    rotation, shift_px, error = search(volume_ft, targets, ctf_values, half)
"""

from __future__ import annotations

import math

import torch

from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.rotations import local_rotation_offsets, super_fibonacci_rotations
from hetacumn.physics.slice import sample_trilinear, sample_trilinear_parts


def _slice_coords(rotations: torch.Tensor, half: HalfPlane, device) -> torch.Tensor:
    """Voxel coordinates from the centre ``(..., M, 3)`` of the half-plane points under ``rotations``."""
    plane = torch.cat([half.coords, torch.zeros_like(half.coords[:, :1])], dim=-1).to(device) * half.box_size
    return plane.to(rotations.dtype) @ rotations


def _slices(volume_ft: torch.Tensor, rotations: torch.Tensor, half: HalfPlane) -> torch.Tensor:
    """Slices ``(..., M)`` at the half-plane points for rotations ``(..., 3, 3)``."""
    return sample_trilinear(volume_ft, _slice_coords(rotations, half, volume_ft.device))


def _slice_parts(volume_ft: torch.Tensor, rotations: torch.Tensor, half: HalfPlane) -> torch.Tensor:
    """Slices as real rows ``[Re S, -Im S]`` ``(..., 2M)``, so that ``products @ parts`` is ``Re sum P S``
    for the rows of :func:`_shifted_products`: one real matrix product instead of two and a difference."""
    parts = sample_trilinear_parts(volume_ft, _slice_coords(rotations, half, volume_ft.device))
    return torch.cat([parts[0], parts[1].neg_()], dim=-1)


def _shifted_products(targets, ctf, half: HalfPlane, shift_px: torch.Tensor) -> torch.Tensor:
    """``P = w conj(Y) C exp(2 pi i k.t)`` for every image and candidate shift, as real rows ``[Re P, Im P]``
    ``(B, T, 2M)``.

    ``shift_px`` is ``(T, 2)`` (shared) or ``(B, T, 2)`` (per image).
    """
    coords = half.coords.to(targets.device)
    phase = 2 * torch.pi * (shift_px.to(coords.dtype) @ coords.T)  # (..., T, M)
    cos, sin = phase.cos(), phase.sin()
    weighted = half.weights.to(targets.device) * ctf * targets.conj()
    real, imag = weighted.real[:, None, :], weighted.imag[:, None, :]
    return torch.cat([real * cos - imag * sin, real * sin + imag * cos], dim=-1)


def _stacked_ctf_power(half: HalfPlane, ctf: torch.Tensor) -> torch.Tensor:
    """``w C^2`` twice ``(B, 2M)``: ``stacked @ parts**2`` is ``sum w C^2 |S|^2`` for :func:`_slice_parts`."""
    power = half.weights.to(ctf.device) * ctf**2
    return torch.cat([power, power], dim=-1)


def _fit_score(cross: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """``max(cross, 0)^2 / power``, computed in place in ``cross``: minus the error at the best amplitude.

    ``min_a sum w |Y - a C S|^2 = sum w |Y|^2 - max(cross, 0)^2 / power``, so the best pose has the highest
    score and its error (less ``sum w |Y|^2``) is ``-score``: the search must not depend on the decoder's
    overall scale, which is still wrong early in training.
    """
    return cross.clamp_min_(0).square_().div_(power.clamp_min(1e-12))


def noise_power(targets: torch.Tensor, half: HalfPlane, error: torch.Tensor) -> torch.Tensor:
    """Noise power per Fourier point, ``E|N(k)|^2``, from the batch's residuals at its best poses.

    ``error`` ``(B,)`` is minus :func:`_fit_score` over the points of ``half`` (``targets`` ``(B, M)``), so the
    residual is ``sum w |Y|^2 + error``; model error counts as noise, which widens the posterior while the
    reference is poor.
    """
    weights = half.weights.to(targets.device)
    residual = (weights * targets.abs() ** 2).sum(-1) + error
    return residual.mean().clamp_min(1e-12) / weights.sum()


def _distinct(rotation: torch.Tensor, shift_px: torch.Tensor, order: torch.Tensor, min_angle_rad: float,
              min_shift_px: float) -> torch.Tensor:
    """``(B, K)`` mask of candidates that differ from every better one (by ``order``) in rotation or shift."""
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    cos = ((rotation[:, :, None] * rotation[:, None]).sum((-1, -2)) - 1) / 2  # (B, K, K) cos of the angle
    close = (cos > math.cos(min_angle_rad)) & ((shift_px[:, :, None] - shift_px[:, None]).norm(dim=-1) < min_shift_px)
    better = rank[:, None, :] < rank[:, :, None]  # [b, j, i]: candidate i ranks before j
    return ~(close & better).any(-1)


def candidate_posteriors(rotation, shift_px, error, noise_power_per_point, min_angle_rad: float,
                         min_shift_px: float = 0.5) -> torch.Tensor:
    """Posterior probabilities ``(B, K)`` of the candidates, ``p ~ exp(-(error - min) / (2 E|N|^2))``.

    The negative log-likelihood of white Gaussian noise is ``sum_(full plane) |R|^2 / (2 E|N|^2)``, and the
    half-plane weights already count each point with its mirror. Candidates that refined onto a better
    one (closer than ``min_angle_rad`` and ``min_shift_px``) get 0, so that a pose is not counted twice.
    """
    log_p = -(error - error.min(1, keepdim=True).values) / (2 * noise_power_per_point)
    keep = _distinct(rotation, shift_px, error.argsort(1), min_angle_rad, min_shift_px)
    return torch.softmax(log_p.masked_fill(~keep, -math.inf), dim=1)


class PoseSearch:
    def __init__(self, rotations: int, shift_extent_px: float, shift_step_px: float, levels: int,
                 global_radius_px: float = 8.0, candidates: int = 8, chunk_rotations: int = 1024):
        self.rotation_count = rotations
        self.candidates = candidates
        self.global_radius_px = global_radius_px
        self.levels = levels
        self.shift_step_px = shift_step_px
        steps = max(0, math.floor(shift_extent_px / shift_step_px + 1e-6))
        offsets = torch.arange(-steps, steps + 1, dtype=torch.float32) * shift_step_px
        self.shift_grid = torch.cartesian_prod(offsets, offsets)  # (T, 2)
        self.chunk_rotations = chunk_rotations
        self.start_step_rad = 0.8 * (6 * math.pi / rotations) ** (1 / 3)  # about half the grid spacing

    def __call__(self, volume_ft, targets, ctf, half: HalfPlane):
        """Best pose per image: rotation ``(B, 3, 3)``, ``shift_px`` ``(B, 2)``, error ``(B,)`` (up to a constant)."""
        rotation, shift_px, error = self.coarse_candidates(volume_ft, targets, ctf, half)
        return self.refine_best(volume_ft, targets, ctf, half, rotation, shift_px, error)

    def coarse_candidates(self, volume_ft, targets, ctf, half: HalfPlane):
        """The ``candidates`` grid poses per image after the levels at the coarse radius, compared there.

        Rotations ``(B, K, 3, 3)``, ``shift_px`` ``(B, K, 2)`` and errors ``(B, K)`` over the frequencies
        within ``global_radius_px`` (minus :func:`_fit_score`: the error less ``sum w |Y|^2`` there).
        """
        coarse, mask = half.within(self.global_radius_px)
        coarse_targets, coarse_ctf = targets[:, mask], None if ctf is None else ctf[:, mask]
        rotation, shift_px, _ = self.global_search(volume_ft, coarse_targets, coarse_ctf, coarse)
        batch, k = rotation.shape[:2]
        rotation, shift_px, error = self.refine(
            volume_ft, coarse_targets.repeat_interleave(k, 0),
            None if coarse_ctf is None else coarse_ctf.repeat_interleave(k, 0), coarse, rotation.flatten(0, 1),
            shift_px.flatten(0, 1), self.start_step_rad, self.shift_step_px / 2, self._coarse_levels)
        return rotation.reshape(batch, k, 3, 3), shift_px.reshape(batch, k, 2), error.reshape(batch, k)

    def refine_best(self, volume_ft, targets, ctf, half: HalfPlane, rotation, shift_px, error):
        """The best of :meth:`coarse_candidates`, refined at the full radius for the remaining levels."""
        best = error.argmin(1)
        index = torch.arange(len(best), device=best.device)
        rotation, shift_px, error = rotation[index, best], shift_px[index, best], error[index, best]
        if self._coarse_levels == self.levels:
            return rotation, shift_px, error
        first = self._coarse_levels
        return self.refine(volume_ft, targets, ctf, half, rotation, shift_px, self.start_step_rad / 2**first,
                           self.shift_step_px / 2 ** (first + 1), self.levels - first)

    def posteriors(self, targets, half: HalfPlane, rotation, shift_px, error) -> torch.Tensor:
        """:func:`candidate_posteriors` of :meth:`coarse_candidates`, with the batch's noise at the coarse radius."""
        coarse, mask = half.within(self.global_radius_px)
        power = noise_power(targets[:, mask], coarse, error.min(1).values)
        # Candidates closer than the last coarse step refined onto the same optimum.
        return candidate_posteriors(rotation, shift_px, error, power, self.start_step_rad / 2**(self._coarse_levels - 1))

    @property
    def _coarse_levels(self) -> int:
        return min(2, self.levels)

    @torch.no_grad()
    def global_search(self, volume_ft, targets, ctf, half: HalfPlane):
        """The ``candidates`` best grid poses per image: rotations ``(B, K, 3, 3)``, shifts ``(B, K, 2)``, errors."""
        device = targets.device
        ctf = torch.ones_like(targets.real) if ctf is None else ctf
        grid = super_fibonacci_rotations(self.rotation_count, device=device)
        shifts = self.shift_grid.to(device)
        products = _shifted_products(targets, ctf, half, shifts)  # (B, T, 2M)
        ctf_power = _stacked_ctf_power(half, ctf)  # (B, 2M)
        best_score = torch.empty(len(targets), 0, device=device)
        best_pose = torch.empty(len(targets), 0, dtype=torch.long, device=device)  # shift * N + rotation
        for start in range(0, len(grid), self.chunk_rotations):
            parts = _slice_parts(volume_ft, grid[start:start + self.chunk_rotations], half)  # (n, 2M)
            score = _fit_score(products @ parts.T, (ctf_power @ (parts**2).T)[:, None, :])  # (B, T, n)
            value, flat = score.flatten(1).topk(self.candidates, dim=1)
            pose = (flat // parts.shape[0]) * len(grid) + start + flat % parts.shape[0]
            best_score, order = torch.cat([best_score, value], 1).topk(self.candidates, dim=1)
            best_pose = torch.gather(torch.cat([best_pose, pose], 1), 1, order)
        return grid[best_pose % len(grid)], shifts[best_pose // len(grid)], -best_score

    @torch.no_grad()
    def refine(self, volume_ft, targets, ctf, half: HalfPlane, rotation, shift_px, step_rad: float,
               shift_step_px: float, levels: int):
        """Local search around ``rotation``/``shift_px`` for ``levels`` levels, halving both steps each level."""
        device = targets.device
        ctf = torch.ones_like(targets.real) if ctf is None else ctf
        ctf_power = _stacked_ctf_power(half, ctf)[:, :, None]  # (B, 2M, 1)
        shift_step = shift_step_px
        moves = torch.tensor([-1.0, 0.0, 1.0], device=device)
        moves = torch.cartesian_prod(moves, moves)  # (9, 2), index 4 = no move
        error = None
        for _ in range(levels):
            candidates = rotation[:, None] @ local_rotation_offsets(step_rad, device=device)  # (B, L, 3, 3)
            shifts = shift_px[:, None, :] + shift_step * moves  # (B, 9, 2)
            parts = _slice_parts(volume_ft, candidates, half)  # (B, L, 2M)
            cross = _shifted_products(targets, ctf, half, shifts) @ parts.transpose(1, 2)  # (B, 9, L)
            score = _fit_score(cross, (parts**2 @ ctf_power).transpose(1, 2))  # power (B, 1, L)
            best, flat = score.flatten(1).max(dim=1)
            error = -best
            index = torch.arange(len(targets), device=device)
            rotation = candidates[index, flat % candidates.shape[1]]
            shift_px = shifts[index, flat // candidates.shape[1]]
            step_rad, shift_step = step_rad / 2, shift_step / 2
        return rotation, shift_px, error
