"""Translations of images by Fourier phase ramps.

``T(s)`` moves image content by ``+s`` pixels: its centred Fourier transform is multiplied by
``exp(-2 pi i k.s)`` with ``k`` in cycles/px. The forward model uses ``T(-shift_px)`` (RELION origin,
see docs/conventions.md). Shifts are ordered ``(x, y)`` in pixels and may be fractional.

Example usage::

    moved = translate_images(images, shift_px)       # (B, D, D), content moved by +shift_px
    back = translate_images(moved, -shift_px)        # identity up to rounding
"""

from __future__ import annotations

import math

import torch

from hetacumn.physics.fourier import fft2_centered, ifft2_centered
from hetacumn.physics.grids import fourier_grid_2d

__all__ = ["phase_ramp", "translate_ft", "translate_images"]


def phase_ramp(box_size: int, shift_px: torch.Tensor) -> torch.Tensor:
    """``exp(-2 pi i k.s)`` on the centred ``D x D`` grid.

    Parameters
    ----------
    box_size : int
    shift_px : (..., 2) tensor
        Shifts ``(x, y)`` in pixels.

    Returns
    -------
    (..., D, D) complex tensor.
    """
    freqs = fourier_grid_2d(box_size, device=shift_px.device, dtype=shift_px.dtype)
    phase = -2 * math.pi * (freqs @ shift_px[..., None, :, None])[..., 0]
    return torch.polar(torch.ones_like(phase), phase)


def translate_ft(images_ft: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """Move the content of centred Fourier transforms ``(..., D, D)`` by ``+shift_px`` (``(..., 2)``, px)."""
    if not shift_px.is_floating_point():
        shift_px = shift_px.to(images_ft.real.dtype)
    return images_ft * phase_ramp(images_ft.shape[-1], shift_px)


def translate_images(images: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """Move the content of real images ``(..., D, D)`` by ``+shift_px`` (``(..., 2)``, px); periodic."""
    return ifft2_centered(translate_ft(fft2_centered(images), shift_px)).real
