"""Analytic references shared by the physics tests: Gaussian volumes, their projections, FSC, coloured noise."""

from __future__ import annotations

import math

import torch

from hetacumn.physics.fourier import fft3_centered
from hetacumn.physics.grids import centered_indices, real_grid_2d
from hetacumn.physics.whitening import apply_radial_filter


def volume_coordinates(box_size: int, dtype=torch.float64) -> torch.Tensor:
    """Voxel offsets from the centre, ``(D, D, D, 3)`` ordered ``(x, y, z)``, indexed [z, y, x]."""
    offsets = centered_indices(box_size, dtype=dtype)
    z, y, x = torch.meshgrid(offsets, offsets, offsets, indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def _gaussian_factors(box_size: int, centers: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """``exp(-(t - c)^2 / 2 sigma^2)`` per Gaussian and axis on the centred pixel offsets: ``(..., K, n_axes, D)``."""
    offsets = centered_indices(box_size, dtype=centers.dtype)
    return torch.exp(-((offsets - centers[..., None]) ** 2) / (2 * sigmas[:, None, None] ** 2))


def gaussian_volume(box_size: int, centers: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Sum of unit-peak isotropic Gaussians at ``centers`` ``(K, 3)`` (x, y, z px) with std ``sigmas`` ``(K,)``."""
    factors = _gaussian_factors(box_size, centers, sigmas)  # (K, 3, D): x, y, z
    return torch.einsum("kz,ky,kx->zyx", factors[:, 2], factors[:, 1], factors[:, 0])


def gaussian_projections(box_size: int, centers: torch.Tensor, sigmas: torch.Tensor, rotations: torch.Tensor):
    """Analytic projections ``(B, D, D)`` of :func:`gaussian_volume`: each Gaussian lands at ``(A c)_xy``
    with peak ``sigma * sqrt(2 pi)`` and the same std."""
    image_centers = (centers @ rotations.to(centers.dtype).transpose(-1, -2))[..., :2]  # (B, K, 2)
    factors = _gaussian_factors(box_size, image_centers, sigmas)  # (B, K, 2, D)
    amplitude = (sigmas * math.sqrt(2 * math.pi))[:, None]
    return torch.einsum("bky,bkx->byx", factors[:, :, 1] * amplitude, factors[:, :, 0])


def random_gaussian_model(count: int, box_size: int, generator: torch.Generator, sigma_px=(1.0, 1.5)):
    """``count`` "atoms": Gaussians centred within ``D/4`` of the box centre, std uniform in ``sigma_px``.

    Many small atoms give a spectrum that falls slowly, like a protein's, so FSC at high shells measures
    the method rather than the test volume's lack of signal.
    """
    centers = (torch.rand(count, 3, generator=generator, dtype=torch.float64) - 0.5) * box_size / 2
    low, high = sigma_px
    sigmas = low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)
    return centers, sigmas


def fsc_shells(volume_a: torch.Tensor, volume_b: torch.Tensor) -> torch.Tensor:
    """Fourier shell correlation in 1-voxel shells, ``(D//2 + 1,)``; shell ``r`` is ``r / D`` cycles/px."""
    box_size = volume_a.shape[-1]
    ft_a, ft_b = fft3_centered(volume_a.double()), fft3_centered(volume_b.double())
    shell = volume_coordinates(box_size).norm(dim=-1).round().long().clamp(max=box_size // 2).reshape(-1)
    n_shells = box_size // 2 + 1

    def shell_sum(values):
        return torch.zeros(n_shells, dtype=values.dtype).index_add_(0, shell, values.reshape(-1))

    cross = shell_sum((ft_a * ft_b.conj()).real)
    return cross / torch.sqrt(shell_sum(ft_a.abs() ** 2) * shell_sum(ft_b.abs() ** 2))


def image_correlation(images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each image pair, ``(B,)``."""
    a = images_a - images_a.mean((-1, -2), keepdim=True)
    b = images_b - images_b.mean((-1, -2), keepdim=True)
    return (a * b).sum((-1, -2)) / (a.norm(dim=(-1, -2)) * b.norm(dim=(-1, -2)))


def image_centroid(images: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centroid ``(B, 2)`` in px ``(x, y)`` from the box centre."""
    pixels = real_grid_2d(images.shape[-1], dtype=images.dtype)
    return (images[..., None] * pixels).sum((-2, -3)) / images.sum((-1, -2))[..., None]


def coloured_power(radius_px: torch.Tensor, box: int = 32) -> torch.Tensor:
    """ASPIRE-like noise spectrum per Fourier radius (px): 6x more power at the lowest frequencies than at Nyquist."""
    return 0.2 + 1 / (1 + (radius_px / (0.1 * box)) ** 2)


def coloured_noise(n: int, seed: int, box: int = 32) -> torch.Tensor:
    """``n`` images ``(box, box)`` of noise with the :func:`coloured_power` spectrum."""
    white = torch.randn(n, box, box, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return apply_radial_filter(white, coloured_power(torch.arange(box // 2 + 2, dtype=torch.float64), box).sqrt())
