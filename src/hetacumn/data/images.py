"""Particle images as training batches: soft circular window, global normalisation, centred FFT.

Images are held in memory when they fit (``max_memory_gb``), else read batch by batch through the
particle set's memory maps. Statistics (normalisation scale, noise level outside the particle, SNR)
come from a fixed sample of up to 1,000 images, so they are deterministic. A negative scale inverts
the images: the contrast mode "auto" chooses it when the sample's particles are dark (data/contrast.py).
With ``whiten`` the noise is whitened (physics/whitening.py) unless the images are nearly noise-free: the batch carries the
filter, and :meth:`Batch.ctf_images` and ``tasks.base.ctf_at`` fold it into the forward model's CTF.

Example usage::

    data = ParticleImages(particles, mask_radius_fraction=0.85)
    batch = data.batch(np.arange(64), device)
    batch.images_ft          # (B, D, D) complex, centred
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hetacumn.data.contrast import DECISIVE_SCORE, contrast_decision, contrast_score
from hetacumn.data.order import ChunkCache
from hetacumn.errors import InputError
from hetacumn.io.particles import ParticleSet
from hetacumn.physics.ctf import CTFParams, ctf_images
from hetacumn.physics.filters import soft_circular_mask
from hetacumn.physics.fourier import fft2_centered
from hetacumn.physics.grids import radial_grid_2d
from hetacumn.physics.whitening import (apply_radial_filter, noise_power_spectrum, radial_average, radial_filter,
                                        whitening_profile)

# Above this SNR the pixels outside the particle hold as much of its (CTF-delocalised) signal as noise: the
# images are left as they are.
WHITEN_MAX_SNR = 3.0
PARTICLE_FRACTION = 0.85  # of the half box: the particle's disk (the images' window, the SNR's signal region)


@dataclass
class Batch:
    index: torch.Tensor  # (B,) particle indices into the particle set
    images: torch.Tensor  # (B, D, D) windowed, normalised real images (encoder input)
    images_ft: torch.Tensor  # (B, D, D) complex centred transforms of ``images``
    ctf: CTFParams | None  # (B,)
    pixel_size_angstrom: torch.Tensor  # (B,)
    whitening: torch.Tensor | None = None  # (S,) noise-whitening filter per Fourier radius (px), applied to images

    def ctf_images(self, box_size: int | None = None) -> torch.Tensor | None:
        """The forward model's transfer ``(B, d, d)`` on the centred grid of a ``box_size`` box (default the
        images'; smaller: their Fourier crop): CTF times whitening filter; None when there is neither."""
        full_box = self.images.shape[-1]
        box = box_size or full_box
        ctf = None
        if self.ctf is not None:
            ctf = ctf_images(self.ctf, box, self.pixel_size_angstrom * full_box / box).float()
        if self.whitening is None:
            return ctf
        transfer = radial_filter(self.whitening, box).float()
        return transfer.expand(len(self.index), box, box) if ctf is None else ctf * transfer


@dataclass(frozen=True)
class ImageStats:
    scale: float  # images are divided by this (std inside the window of the raw sample; < 0 inverts them)
    noise_variance: float  # per-pixel variance outside the particle, normalised units
    snr: float  # (total variance - noise variance) / noise variance inside the window
    radial_amplitude: np.ndarray  # RMS |FT| of the prepared images per integer radius (px), D // 2 + 2 shells,
    # before whitening (what the decoder's slices times the CTF should have)
    contrast_score: float  # > 0: white particles (RELION's convention), in standard errors (data/contrast.py)
    whitening: np.ndarray | None = None  # filter per integer Fourier radius (physics/whitening.py); None: not whitened

    @property
    def inverted(self) -> bool:
        return self.scale < 0


class ParticleImages:
    def __init__(self, particles: ParticleSet, mask_radius_fraction: float = PARTICLE_FRACTION,
                 max_memory_gb: float = 4.0, scale: float | None = None, chunk_images: int = 1024,
                 buffer_chunks: int = 16, contrast: str = "as-is", whiten: bool = False, whitening: np.ndarray | None = None):
        self.particles = particles
        self.chunk_images = chunk_images  # out of core: contiguous chunks read whole and kept in a small cache
        self.buffer_chunks = buffer_chunks
        self._source = particles.images
        self.box_size = particles.box_size
        d = self.box_size
        self.window = particle_window(d, mask_radius_fraction)
        self.contrast = contrast  # "auto", "as-is" or "invert": see _estimate_stats
        self.stats = self._estimate_stats(scale, whiten, whitening)
        self._whitening = None if self.stats.whitening is None else torch.from_numpy(self.stats.whitening)
        self._cache: torch.Tensor | None = None
        if len(particles) * d * d * 4 <= max_memory_gb * 2**30:
            self._cache = self._read(np.arange(len(particles)))
        else:
            self._source = ChunkCache(particles.images, chunk_images, 2 * buffer_chunks)

    @property
    def in_memory(self) -> bool:
        return self._cache is not None

    def __len__(self) -> int:
        return len(self.particles)

    def _read(self, indices: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(np.ascontiguousarray(self._source.read(indices), dtype=np.float32))
        if not torch.isfinite(images).all():
            raise InputError(self.particles.path, "NaN or Inf pixel values in the particle images")
        return images

    def _estimate_stats(self, scale: float | None, whiten: bool, whitening: np.ndarray | None) -> ImageStats:
        """Normalisation and noise statistics. Without ``scale`` the contrast mode decides its sign; a given
        ``scale`` (e.g. a trained model's) fixes the normalisation and, unless the mode is "auto" and the
        sample's contrast is decisive, the sign (so the model sees white particles either way). A given
        ``whitening`` filter (a trained model's) is used as it is; else one is estimated when ``whiten``."""
        rng = np.random.default_rng(0)
        n = len(self.particles)
        sample = np.sort(rng.choice(n, size=min(n, 1000), replace=False))
        images = self._read(sample).double()
        score = contrast_score(images)
        images = images - images.mean(dim=(-1, -2), keepdim=True)
        if whitening is None and whiten:
            whitening = self._whitening_filter(images)
        profile = None if whitening is None else torch.as_tensor(whitening, dtype=torch.float64)
        if profile is not None:
            images = apply_radial_filter(images, profile)
        noise_var, total_var = noise_and_total_variance(images)
        if not scale:
            scale = float((images * self.window).std()) or 1.0
            scale = -scale if contrast_decision(self.contrast, score) else scale
        elif self.contrast == "auto" and abs(score) > DECISIVE_SCORE:
            scale = -abs(scale) if score < 0 else abs(scale)
        snr = max(total_var - noise_var, 1e-6 * total_var) / max(noise_var, 1e-12)
        power = radial_average((fft2_centered((images * self.window.double()) / scale).abs() ** 2).mean(0))
        if profile is not None:
            power = power / profile**2
        radial = torch.sqrt(power).clamp(min=1e-6).numpy()
        return ImageStats(scale=scale, noise_variance=noise_var / scale**2, snr=snr, radial_amplitude=radial,
                          contrast_score=score, whitening=None if profile is None else profile.numpy())

    def _whitening_filter(self, images: torch.Tensor) -> np.ndarray | None:
        """The sample's noise-whitening filter, or None when it is nearly noise-free (SNR > WHITEN_MAX_SNR)."""
        noise_var, total_var = noise_and_total_variance(images)
        if total_var > (1 + WHITEN_MAX_SNR) * noise_var:
            return None
        d = self.box_size
        background = 1 - soft_circular_mask(d, radius_px=0.9 * d / 2, width_px=max(2.0, 0.05 * d), dtype=torch.float64)
        return whitening_profile(noise_power_spectrum(images, background)).numpy()

    def window_images(self, images: torch.Tensor) -> torch.Tensor:
        """Subtract each image's mean and apply the soft circular window."""
        images = images - images.mean(dim=(-1, -2), keepdim=True)
        return images * self.window.to(images.device)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Raw images ``(B, D, D)`` -> whitened, windowed images in normalised units."""
        if self._whitening is not None:
            images = images - images.mean(dim=(-1, -2), keepdim=True)
            images = apply_radial_filter(images, self._whitening.to(images.device))
        return self.window_images(images) / self.stats.scale

    def batch(self, indices: np.ndarray, device: torch.device) -> Batch:
        raw = self._cache[indices] if self._cache is not None else self._read(indices)
        images = self.prepare(raw.to(device))
        ctf = None if self.particles.ctf is None else self.particles.ctf[torch.as_tensor(indices)].to(device, torch.float32)
        pixel = torch.as_tensor(self.particles.pixel_size_angstrom[indices], dtype=torch.float32, device=device)
        whitening = None if self._whitening is None else self._whitening.to(device, torch.float32)
        return Batch(torch.as_tensor(indices, device=device), images, fft2_centered(images), ctf, pixel, whitening)


def particle_window(box_size: int, radius_fraction: float = PARTICLE_FRACTION, device=None) -> torch.Tensor:
    """``(D, D)`` soft disk of ``radius_fraction`` of the half box with a raised-cosine edge of 5 % of the box (at
    least 2 px): the images' window, and the real-space loss's pixel weights (tasks/base.py)."""
    return soft_circular_mask(box_size, radius_px=radius_fraction * box_size / 2, width_px=max(2.0, 0.05 * box_size),
                              device=device)


def particle_disk(box_size: int, device=None) -> torch.Tensor:
    """``(D, D)`` True within :data:`PARTICLE_FRACTION` of the half box: where the SNR's signal is measured."""
    return radial_grid_2d(box_size, dtype=torch.float64, device=device) < box_size / 2 * PARTICLE_FRACTION


def noise_and_total_variance(images: torch.Tensor) -> tuple[float, float]:
    """Per-pixel variance of mean-subtracted images ``(B, D, D)`` outside the particle (beyond 0.9 of the half
    box: noise) and within :func:`particle_disk` (signal and noise)."""
    d = images.shape[-1]
    outside = radial_grid_2d(d, dtype=torch.float64, device=images.device) >= d / 2 * 0.9
    return float(images[:, outside].var()), float(images[:, particle_disk(d, images.device)].var())


def describe_whitening(asked: bool, whitening: np.ndarray | None) -> str:
    """One log line: whether the noise was whitened, and the filter's range (gain at low and high frequency)."""
    if not asked:
        return "noise not whitened (--whiten to whiten it)"
    if whitening is None:
        return f"noise not whitened: the images are nearly noise-free (estimated SNR above {WHITEN_MAX_SNR:g})"
    nyquist = len(whitening) - 2  # the profile's rings run to D // 2 + 1
    return (f"noise whitened: filter gain {whitening[1]:.2f} at 1 Fourier px, {whitening[nyquist // 2]:.2f} at half "
            f"Nyquist, {whitening[nyquist]:.2f} at Nyquist (1 everywhere for white noise)")
