"""Centred Fourier transforms and the Hartley transform.

Layout: every transform here is *centred*: the zero frequency sits at index ``D // 2`` along each
transformed axis (``fftshift`` layout), both in real space (box centre) and in Fourier space.
Transforms are unnormalised forward and ``1/N`` inverse, as in ``torch.fft`` ("backward" norm).

Example usage::

    image_ft = fft2_centered(images)           # (..., D, D) complex
    images_back = ifft2_centered(image_ft).real
"""

from __future__ import annotations

import torch

__all__ = [
    "fft2_centered",
    "ifft2_centered",
    "fft3_centered",
    "ifft3_centered",
    "hartley2",
    "ihartley2",
    "negate_frequencies",
    "fourier_to_hartley",
    "hartley_to_fourier",
]

_AXES_2D = (-2, -1)
_AXES_3D = (-3, -2, -1)


def fft2_centered(images: torch.Tensor) -> torch.Tensor:
    """2D FFT over the last two axes, real-space and Fourier origins at index ``D // 2``."""
    shifted = torch.fft.ifftshift(images, dim=_AXES_2D)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=_AXES_2D), dim=_AXES_2D)


def ifft2_centered(images_ft: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2_centered` (complex output; take ``.real`` for real images)."""
    shifted = torch.fft.ifftshift(images_ft, dim=_AXES_2D)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=_AXES_2D), dim=_AXES_2D)


def fft3_centered(volume: torch.Tensor) -> torch.Tensor:
    """3D FFT over the last three axes, origins at index ``D // 2``."""
    shifted = torch.fft.ifftshift(volume, dim=_AXES_3D)
    return torch.fft.fftshift(torch.fft.fftn(shifted, dim=_AXES_3D), dim=_AXES_3D)


def ifft3_centered(volume_ft: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft3_centered` (complex output)."""
    shifted = torch.fft.ifftshift(volume_ft, dim=_AXES_3D)
    return torch.fft.fftshift(torch.fft.ifftn(shifted, dim=_AXES_3D), dim=_AXES_3D)


def negate_frequencies(values: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """``out[k] = values[-k]`` over the last ``dims`` centred axes (index ``D // 2`` maps onto itself).

    For an even box, flipping maps index ``i`` to ``D - 1 - i``; rolling by one makes it ``D - i``, i.e.
    ``-k`` about ``D // 2`` (the Nyquist index 0 maps to itself). In real space this is the point
    reflection through the box centre.
    """
    axes = tuple(range(-dims, 0))
    return torch.roll(torch.flip(values, dims=axes), shifts=(1,) * dims, dims=axes)


def fourier_to_hartley(image_ft: torch.Tensor) -> torch.Tensor:
    """Hartley coefficients ``Re(F) - Im(F)`` of a Fourier transform (real output)."""
    return image_ft.real - image_ft.imag


def hartley_to_fourier(image_ht: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """Fourier coefficients from Hartley coefficients of a real signal, centred layout.

    Uses ``F(k) = (H(k) + H(-k)) / 2 - i (H(k) - H(-k)) / 2`` (see :func:`negate_frequencies`).
    """
    mirrored = negate_frequencies(image_ht, dims)
    return torch.complex((image_ht + mirrored) / 2, -(image_ht - mirrored) / 2)


def hartley2(images: torch.Tensor) -> torch.Tensor:
    """Centred 2D discrete Hartley transform of real images (real output)."""
    return fourier_to_hartley(fft2_centered(images))


def ihartley2(images_ht: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hartley2`: ``H(H(x)) = N x`` for an ``N``-pixel image."""
    n_pixels = images_ht.shape[-1] * images_ht.shape[-2]
    return hartley2(images_ht) / n_pixels
