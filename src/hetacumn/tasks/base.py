"""What a task receives and returns for one training step, and helpers shared by the tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import torch

from hetacumn.config.schema import LossSpace
from hetacumn.data.images import Batch, particle_window
from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.ctf import ctf_at_points
from hetacumn.physics.fourier import ifft2_centered
from hetacumn.physics.whitening import radial_profile_at


@dataclass
class StepContext:
    half_plane: HalfPlane  # the Fourier points evaluated this step (frequency marching radius)
    ctf_values: torch.Tensor | None  # (B, M) CTF at the half-plane points, or None
    images_seen: int
    generator: torch.Generator  # the engine's seeded generator for every random draw
    deterministic: bool = False  # inference: z = posterior mean, no prior draws
    z_known: torch.Tensor | None = None  # (B, zdim) latent values held per image (NaN: the encoder's), at explicit poses
    loss_space: LossSpace = "fourier"  # where image_error compares a rendered image with its target


@dataclass
class StepOutput:
    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    rotation: torch.Tensor | None = None  # (B, 3, 3) of the original images
    shift_px: torch.Tensor | None = None  # (B, 2)
    z: torch.Tensor | None = None  # (B, zdim) latent means (or prior draws in the consensus phase)
    z_sample: torch.Tensor | None = None  # (B, zdim) posterior draws, for the pose task


def ctf_at(half: HalfPlane, batch: Batch, mirror: bool = False) -> torch.Tensor | None:
    """The forward model's transfer ``(B, M)`` at the half-plane points (kx mirrored if asked): the batch's
    CTF times its noise-whitening filter; None when it has neither."""
    if batch.ctf is None and batch.whitening is None:
        return None
    coords = half.coords.to(batch.pixel_size_angstrom.device)
    if mirror:
        coords = coords * torch.tensor([-1.0, 1.0], device=coords.device)
    values = None if batch.ctf is None else ctf_at_points(coords, batch.ctf, batch.pixel_size_angstrom).float()
    if batch.whitening is None:
        return values
    transfer = radial_profile_at(batch.whitening, coords.norm(dim=-1) * half.box_size).float()
    return transfer.expand(len(batch.index), -1) if values is None else values * transfer


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, half: HalfPlane) -> torch.Tensor:
    """Per-image mean squared error per real-space pixel, from the half-plane points with Parseval weights."""
    weights = half.weights.to(pred.device)
    return ((pred - target).abs() ** 2 * weights).sum(-1) / half.box_size**4  # mean over real-space pixels (Parseval)


def pose_regression(rotation_pred: torch.Tensor, shift_pred_px: torch.Tensor, rotation: torch.Tensor,
                    shift_px: torch.Tensor, shift_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's pose loss against known poses: mean squared Frobenius distance of the closest of its rotation
    hypotheses ``(B, K, 3, 3)`` to ``rotation`` ``(B, 3, 3)`` (winner takes all) + ``shift_weight`` x mean squared
    shift error (px). Returns the loss and the per-image Frobenius term ``(B,)``."""
    rotation_error = ((rotation_pred - rotation[:, None]) ** 2).sum(dim=(-1, -2)).min(dim=1).values
    shift_error = ((shift_pred_px - shift_px) ** 2).sum(-1)
    return rotation_error.mean() + shift_weight * shift_error.mean(), rotation_error


@lru_cache(maxsize=8)
def _loss_window(box_size: int, device: torch.device) -> torch.Tensor:
    return particle_window(box_size, device=device)


def image_error(pred: torch.Tensor, target: torch.Tensor, context: StepContext) -> torch.Tensor:
    """Per-image error ``(B,)`` of rendered half-plane values against the targets, in ``context.loss_space``:
    ``fourier`` is :func:`weighted_mse` (the mean over every real-space pixel of the band-limited difference);
    ``real`` transforms the difference back and weights its pixels by the images' window (``particle_window``), so the
    background outside the particle does not count."""
    half = context.half_plane
    if context.loss_space == "fourier":
        return weighted_mse(pred, target, half)
    difference = ifft2_centered(half.scatter(pred - target)).real
    window = _loss_window(half.box_size, difference.device)
    return (window * difference**2).mean(dim=(-1, -2))
