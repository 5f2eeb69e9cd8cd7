"""Coordinate grids in real and Fourier space, centred at index ``D // 2``.

Frequencies are in cycles per pixel (``_px`` suffix is implied: Nyquist is 0.5). Coordinates are
ordered ``(x, y[, z])`` in the last axis while arrays are indexed ``[..., z, y, x]``.

Example usage::

    freqs = fourier_grid_2d(64)            # (64, 64, 2), freqs[y, x] = (kx, ky)
    radius = freqs.norm(dim=-1)            # cycles/px
"""

from __future__ import annotations

import torch

__all__ = ["centered_indices", "fourier_grid_2d", "fourier_grid_3d", "real_grid_2d", "radial_grid_2d"]


def centered_indices(box_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Integer offsets ``[-D//2, ..., D - D//2 - 1]`` of each index from the centre ``D // 2``."""
    return torch.arange(box_size, device=device, dtype=dtype) - box_size // 2


def real_grid_2d(box_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel offsets from the box centre, shape ``(D, D, 2)`` with last axis ``(x, y)``."""
    offsets = centered_indices(box_size, device, dtype)
    y, x = torch.meshgrid(offsets, offsets, indexing="ij")
    return torch.stack([x, y], dim=-1)


def fourier_grid_2d(box_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Frequencies in cycles/px of a centred 2D FFT, shape ``(D, D, 2)``, last axis ``(kx, ky)``."""
    return real_grid_2d(box_size, device, dtype) / box_size


def radial_grid_2d(box_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Distance of each pixel from the centre in pixels, shape ``(D, D)``."""
    return real_grid_2d(box_size, device, dtype).norm(dim=-1)


def fourier_grid_3d(box_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Frequencies in cycles/px of a centred 3D FFT, shape ``(D, D, D, 3)``, last axis ``(kx, ky, kz)``."""
    offsets = centered_indices(box_size, device, dtype) / box_size
    z, y, x = torch.meshgrid(offsets, offsets, offsets, indexing="ij")
    return torch.stack([x, y, z], dim=-1)
