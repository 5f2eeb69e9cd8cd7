"""What a task receives and returns for one training step, and helpers shared by the tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.ctf import CTFParams, ctf_at_points


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


def ctf_at(half: HalfPlane, ctf: CTFParams | None, pixel_size_angstrom: torch.Tensor, mirror: bool = False):
    """CTF values ``(B, M)`` at the half-plane points (kx mirrored if asked), or None without a CTF."""
    if ctf is None:
        return None
    coords = half.coords.to(pixel_size_angstrom.device)
    if mirror:
        coords = coords * torch.tensor([-1.0, 1.0], device=coords.device)
    return ctf_at_points(coords, ctf, pixel_size_angstrom).float()


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, half: HalfPlane) -> torch.Tensor:
    """Per-image mean squared error per real-space pixel, from the half-plane points with Parseval weights."""
    weights = half.weights.to(pred.device)
    return ((pred - target).abs() ** 2 * weights).sum(-1) / half.box_size**4  # mean over real-space pixels (Parseval)
