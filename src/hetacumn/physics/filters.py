"""Real-space masks and Gaussian filters on the centred grid.

Example usage::

    mask = soft_circular_mask(128, radius_px=50)          # (128, 128), 1 inside, cosine edge
    blurred = gaussian_blur(images, sigma_px=2.0)         # same shape as images
"""

from __future__ import annotations

import math

import torch

from hetacumn.physics.fourier import fft2_centered, ifft2_centered
from hetacumn.physics.grids import fourier_grid_2d, radial_grid_2d

__all__ = ["soft_circular_mask", "gaussian_lowpass_ft", "gaussian_blur"]


def soft_circular_mask(
    box_size: int, radius_px: float, width_px: float = 3.0, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Circular mask ``(D, D)`` centred at ``D // 2``: 1 within ``radius_px``, then a raised-cosine edge
    of ``width_px`` pixels down to 0 (a hard edge when ``width_px`` is 0)."""
    radius = radial_grid_2d(box_size, device=device, dtype=dtype)
    if width_px <= 0:
        return (radius <= radius_px).to(dtype)
    edge = ((radius - radius_px) / width_px).clamp(0, 1)
    return 0.5 * (1 + torch.cos(math.pi * edge))


def gaussian_lowpass_ft(
    box_size: int, sigma_px: float | torch.Tensor, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Fourier transfer function ``exp(-2 pi^2 sigma^2 k^2)`` of a real-space Gaussian blur of std ``sigma_px``.

    ``k`` is in cycles/px on the centred grid; the value is 1 at ``k = 0`` (mass preserved). A tensor
    ``sigma_px`` of shape ``(...,)`` gives ``(..., D, D)``; a float gives ``(D, D)``.
    """
    if isinstance(sigma_px, torch.Tensor):
        device, dtype = sigma_px.device, sigma_px.dtype
    freq_sq = (fourier_grid_2d(box_size, device=device, dtype=dtype) ** 2).sum(-1)
    sigma = torch.as_tensor(sigma_px, device=device, dtype=dtype)
    return torch.exp(-2 * math.pi**2 * sigma[..., None, None] ** 2 * freq_sq)


def gaussian_blur(images: torch.Tensor, sigma_px: float | torch.Tensor) -> torch.Tensor:
    """Blur real images ``(..., D, D)`` with a Gaussian of std ``sigma_px`` pixels (periodic boundaries).

    ``sigma_px`` may be a tensor broadcastable against the leading dimensions of ``images``.
    """
    if not isinstance(sigma_px, torch.Tensor):
        sigma_px = torch.tensor(sigma_px, device=images.device, dtype=images.dtype)
    transfer = gaussian_lowpass_ft(images.shape[-1], sigma_px)
    return ifft2_centered(fft2_centered(images) * transfer).real
