"""Noise whitening: a radial noise power spectrum estimated from the background, and its inverse square root.

Real micrographs have coloured noise (more power at low frequencies, less near Nyquist after the
detector's MTF). Every comparison of the engine is an unweighted squared error, which is the likelihood only
under white noise: with coloured noise the low frequencies, where the noise sits, dominate the pose search and
the loss. Whitening filters the images by ``W(k) = sqrt(mean noise power / N(|k|))`` and folds the same ``W``
into the CTF of the forward model, so the volume stays unfiltered and the noise seen by every comparison is
white. ``N`` is estimated from the pixels outside the particle (a soft corner mask), averaged over images
and over rings of integer radius; ``W`` is indexed by the Fourier radius in pixels of the box (index ``r`` is
``r / (D * pixel size)`` per Å; a Fourier crop keeps that index's frequency, so a cropped box reads the
same profile).

Example usage::

    profile = whitening_profile(noise_power_spectrum(images, outside))   # (D // 2 + 2,)
    white = apply_radial_filter(images, profile)                         # (N, D, D)
    values = radial_profile_at(profile, coords.norm(dim=-1) * D)         # W at any Fourier points
"""

from __future__ import annotations

import torch

from hetacumn.physics.fourier import fft2_centered, ifft2_centered
from hetacumn.physics.grids import radial_grid_2d

__all__ = ["radial_average", "noise_power_spectrum", "whitening_profile", "radial_profile_at", "radial_filter",
           "apply_radial_filter"]

MAX_GAIN = 10.0  # W is clipped to [1 / MAX_GAIN, MAX_GAIN] of its mean: an estimate near 0 must not explode


def radial_average(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``(D, D)`` (centred grid) over rings of integer radius 0 .. D // 2 + 1 (px);
    the last ring holds every point beyond D // 2 + 1/2 (the corners)."""
    box = values.shape[-1]
    shells = radial_grid_2d(box, device=values.device, dtype=torch.float64).round().long().clamp(max=box // 2 + 1)
    sums = torch.zeros(box // 2 + 2, dtype=values.dtype, device=values.device)
    sums.index_add_(0, shells.flatten(), values.flatten())
    return sums / torch.bincount(shells.flatten(), minlength=len(sums)).clamp(min=1).to(values.dtype)


def noise_power_spectrum(images: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Radial noise power per Fourier pixel, ``(D // 2 + 2,)``, of images ``(N, D, D)`` from their
    ``background`` pixels (a ``(D, D)`` weight, 1 where there is only noise).

    Each image's background mean is removed and the rest weighted by ``background``; the power of its
    transform is divided, ring by ring, by what the same steps give for white noise of unit variance, so white
    noise of variance ``s2`` gives ``s2 * D^2`` at every radius (the unmasked transform's power) and the low
    rings are not biased by the mean's removal. The mask blurs the spectrum by about ``D / (mask width)``
    Fourier pixels.
    """
    weight = background.to(images.dtype)
    mean = (images * weight).sum((-1, -2), keepdim=True) / weight.sum()
    power = (fft2_centered((images - mean) * weight).abs() ** 2).mean(0)
    box = images.shape[-1]
    spectrum = radial_average(power) / radial_average(_white_response(weight)).clamp(min=1e-12) * box**2
    spectrum[0] = spectrum[1]  # the mean, removed: nothing to estimate
    return spectrum


def _white_response(weight: torch.Tensor) -> torch.Tensor:
    """``E |FT((x - mean_w x) w)|^2`` per frequency for white noise ``x`` of unit variance, where ``mean_w`` is
    the ``w``-weighted mean: ``sum w^2 - 2 Re(conj(FT w) FT w^2) / sum w + |FT w|^2 sum w^2 / (sum w)^2``."""
    total, squares = weight.sum(), (weight**2).sum()
    ft_w, ft_w2 = fft2_centered(weight), fft2_centered(weight**2)
    return (squares - 2 * (ft_w.conj() * ft_w2).real / total + ft_w.abs() ** 2 * squares / total**2).clamp(min=0)


def whitening_profile(noise_power: torch.Tensor) -> torch.Tensor:
    """``W(r) = sqrt(mean noise power / N(r))`` per ring, mean over the rings within Nyquist weighted by
    their area, so whitening keeps the noise's total power; clipped to ``MAX_GAIN``."""
    radius = torch.arange(len(noise_power), dtype=noise_power.dtype, device=noise_power.device)
    area = torch.where(radius == 0, torch.ones_like(radius) * 0.25, 2 * radius)[: len(noise_power) - 1]
    mean = (noise_power[:-1] * area).sum() / area.sum()
    return torch.sqrt(mean / noise_power.clamp(min=1e-30)).clamp(1 / MAX_GAIN, MAX_GAIN)


def radial_profile_at(profile: torch.Tensor, radius_px: torch.Tensor) -> torch.Tensor:
    """``profile`` (one value per integer radius) at ``radius_px`` (any shape), linearly interpolated, the
    last value beyond its end."""
    profile = profile.to(radius_px.device)
    position = radius_px.clamp(0, len(profile) - 1)
    low = position.floor().long().clamp(max=len(profile) - 2)
    frac = (position - low).to(profile.dtype)
    return profile[low] * (1 - frac) + profile[low + 1] * frac


def radial_filter(profile: torch.Tensor, box_size: int) -> torch.Tensor:
    """The filter ``(D, D)`` on the centred Fourier grid of a ``box_size`` box."""
    radius = radial_grid_2d(box_size, device=profile.device, dtype=profile.dtype)
    return radial_profile_at(profile, radius)


def apply_radial_filter(images: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
    """Real images ``(..., D, D)`` filtered by the radial ``profile`` (periodic boundaries)."""
    transfer = radial_filter(profile.to(images.dtype), images.shape[-1])
    return ifft2_centered(fft2_centered(images) * transfer).real.to(images.dtype)
