"""Fourier cropping: smaller images of the same field of view (the pixel size grows by ``D / d``).

Cropping the centred spectrum to its central ``d x d`` frequencies removes everything above the new
Nyquist frequency and nothing below it, so a band-limited image is resampled exactly (no interpolation).

Example usage::

    small = fourier_crop(images, 64)       # (B, 256, 256) -> (B, 64, 64); pixel size x 4
    map64 = fourier_crop_volume(map256, 64)  # (256, 256, 256) -> (64, 64, 64)
    map256 = fourier_resize_volume(map64, 256)  # zero-padded spectrum: the same map on a finer grid
"""

from __future__ import annotations

import torch

from hetacumn.physics.fourier import fft2_centered, fft3_centered, ifft2_centered, ifft3_centered

__all__ = ["fourier_crop", "fourier_crop_volume", "fourier_resize_volume"]


def fourier_crop(images: torch.Tensor, new_size: int) -> torch.Tensor:
    """Downsample square images by keeping the central ``new_size x new_size`` frequencies.

    Parameters
    ----------
    images : (..., D, D) real tensor, box centre at index ``D // 2`` (``D`` may be odd).
    new_size : int
        Output side ``d``, even, ``2 <= d <= D``.

    Returns
    -------
    (..., d, d) real tensor, same dtype and device; the centre stays at index ``d // 2`` and pixel
    values keep their scale (a constant image keeps its value: the spectrum is multiplied by
    ``(d / D)^2`` to compensate the inverse transform's ``1 / d^2``).

    Notes
    -----
    The kept block runs from frequency ``-d/2`` to ``d/2 - 1``; taking the real part of the inverse
    transform gives the new Nyquist row and column the mean of the ``-d/2`` and ``+d/2`` coefficients
    of the original, the symmetric choice for a real image (for odd ``D`` the ``+d/2`` coefficient is
    not in the block and the Nyquist row keeps the real part of the ``-d/2`` one).
    """
    box = images.shape[-1]
    if images.shape[-2] != box:
        raise ValueError(f"fourier_crop needs square images, got {tuple(images.shape[-2:])}")
    if new_size % 2 or not 2 <= new_size <= box:
        raise ValueError(f"fourier_crop needs an even new_size with 2 <= new_size <= D, got D = {box}, "
                         f"new_size = {new_size}")
    start = box // 2 - new_size // 2
    cropped = fft2_centered(images)[..., start : start + new_size, start : start + new_size]
    return ifft2_centered(cropped).real * (new_size / box) ** 2


def fourier_crop_volume(volume: torch.Tensor, new_size: int) -> torch.Tensor:
    """:func:`fourier_crop` of a cubic ``(D, D, D)`` volume to ``(d, d, d)`` (even ``d <= D``); values keep their
    scale (the spectrum is multiplied by ``(d / D)^3``)."""
    box = volume.shape[-1]
    if volume.shape[-3:] != (box,) * 3 or new_size % 2 or not 2 <= new_size <= box:
        raise ValueError(f"fourier_crop_volume needs a cube and an even new_size <= its side, got "
                         f"{tuple(volume.shape)} and {new_size}")
    start = box // 2 - new_size // 2
    block = slice(start, start + new_size)
    return ifft3_centered(fft3_centered(volume)[..., block, block, block]).real * (new_size / box) ** 3


def fourier_resize_volume(volume: torch.Tensor, new_size: int) -> torch.Tensor:
    """A cubic ``(D, D, D)`` volume on a ``(d, d, d)`` grid of the same field of view (even ``d``): cropped
    (:func:`fourier_crop_volume`) when ``d < D``, else its spectrum zero-padded (its Nyquist planes, which have
    no symmetric partner in an even box, dropped), values keeping their scale; the voxel size becomes ``x D / d``."""
    box = volume.shape[-1]
    if new_size <= box:
        return fourier_crop_volume(volume, new_size)
    if volume.shape[-3:] != (box,) * 3 or new_size % 2 or box % 2:
        raise ValueError(f"fourier_resize_volume needs an even cube and an even new_size, got {tuple(volume.shape)} "
                         f"and {new_size}")
    spectrum = fft3_centered(volume)
    spectrum[..., 0, :, :] = spectrum[..., :, 0, :] = spectrum[..., :, :, 0] = 0
    padded = torch.zeros(*volume.shape[:-3], new_size, new_size, new_size, dtype=spectrum.dtype,
                         device=volume.device)
    start = new_size // 2 - box // 2
    block = slice(start, start + box)
    padded[..., block, block, block] = spectrum
    return ifft3_centered(padded).real * (new_size / box) ** 3
