"""What a task receives and returns for one training step, and helpers shared by the tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hetacumn.data.images import Batch
from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.ctf import ctf_at_points
from hetacumn.physics.whitening import radial_profile_at


@dataclass
class StepContext:
    half_plane: HalfPlane  # the Fourier points evaluated this step (frequency marching radius)
    ctf_values: torch.Tensor | None  # (B, M) CTF at the half-plane points, or None
    images_seen: int
    generator: torch.Generator  # the engine's seeded generator for every random draw
    deterministic: bool = False  # inference: z = posterior mean, no prior draws
    z_known: torch.Tensor | None = None  # (B, zdim) latent values held per image (NaN: the encoder's), at explicit poses


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
