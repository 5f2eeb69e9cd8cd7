"""Particle images as training batches: soft circular window, global normalisation, centred FFT.

Images are held in memory when they fit (``max_memory_gb``), else read batch by batch through the
particle set's memory maps. Statistics (normalisation scale, noise level outside the particle, SNR)
come from a fixed sample of up to 1,000 images, so they are deterministic. A negative scale inverts
the images: the contrast mode "auto" chooses it when the sample's particles are dark (data/contrast.py).

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
from hetacumn.physics.ctf import CTFParams
from hetacumn.physics.filters import soft_circular_mask
from hetacumn.physics.fourier import fft2_centered
from hetacumn.physics.grids import radial_grid_2d


@dataclass
class Batch:
    index: torch.Tensor  # (B,) particle indices into the particle set
    images: torch.Tensor  # (B, D, D) windowed, normalised real images (encoder input)
    images_ft: torch.Tensor  # (B, D, D) complex centred transforms of ``images``
    ctf: CTFParams | None  # (B,)
    pixel_size_angstrom: torch.Tensor  # (B,)


@dataclass(frozen=True)
class ImageStats:
    scale: float  # images are divided by this (std inside the window of the raw sample; < 0 inverts them)
    noise_variance: float  # per-pixel variance outside the particle, normalised units
    snr: float  # (total variance - noise variance) / noise variance inside the window
    radial_amplitude: np.ndarray  # RMS |FT| of the prepared images per integer radius (px), D // 2 + 2 shells
    contrast_score: float  # > 0: white particles (RELION's convention), in standard errors (data/contrast.py)

    @property
    def inverted(self) -> bool:
        return self.scale < 0


class ParticleImages:
    def __init__(self, particles: ParticleSet, mask_radius_fraction: float = 0.85, max_memory_gb: float = 4.0,
                 scale: float | None = None, chunk_images: int = 1024, buffer_chunks: int = 16,
                 contrast: str = "as-is"):
        self.particles = particles
        self.chunk_images = chunk_images  # out of core: contiguous chunks read whole and kept in a small cache
        self.buffer_chunks = buffer_chunks
        self._source = particles.images
        self.box_size = particles.box_size
        d = self.box_size
        self.window = soft_circular_mask(d, radius_px=mask_radius_fraction * d / 2, width_px=max(2.0, 0.05 * d))
        self.contrast = contrast  # "auto", "as-is" or "invert": see _estimate_stats
        self.stats = self._estimate_stats(scale)
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

    def _estimate_stats(self, scale: float | None) -> ImageStats:
        """Normalisation and noise statistics. Without ``scale`` the contrast mode decides its sign; a given
        ``scale`` (e.g. a trained model's) fixes the normalisation and, unless the mode is "auto" and the
        sample's contrast is decisive, the sign (so the model sees white particles either way)."""
        rng = np.random.default_rng(0)
        n = len(self.particles)
        sample = np.sort(rng.choice(n, size=min(n, 1000), replace=False))
        images = self._read(sample).double()
        score = contrast_score(images)
        images = images - images.mean(dim=(-1, -2), keepdim=True)
        radius = radial_grid_2d(self.box_size, dtype=torch.float64)
        outside = radius >= self.box_size / 2 * 0.9
        inside = radius < self.box_size / 2 * 0.85
        noise_var = float(images[:, outside].var())
        total_var = float(images[:, inside].var())
        if not scale:
            scale = float((images * self.window).std()) or 1.0
            scale = -scale if contrast_decision(self.contrast, score) else scale
        elif self.contrast == "auto" and abs(score) > DECISIVE_SCORE:
            scale = -abs(scale) if score < 0 else abs(scale)
        snr = max(total_var - noise_var, 1e-6 * total_var) / max(noise_var, 1e-12)
        power = fft2_centered((images * self.window.double()) / scale).abs() ** 2
        shells = radius.round().long().clamp(max=self.box_size // 2 + 1).flatten()
        sums = torch.zeros(self.box_size // 2 + 2, dtype=torch.float64).index_add_(0, shells, power.mean(0).flatten())
        counts = torch.bincount(shells, minlength=len(sums)).clamp(min=1)
        radial = torch.sqrt(sums / counts).clamp(min=1e-6).numpy()
        return ImageStats(scale=scale, noise_variance=noise_var / scale**2, snr=snr, radial_amplitude=radial,
                          contrast_score=score)

    def window_images(self, images: torch.Tensor) -> torch.Tensor:
        """Subtract each image's mean and apply the soft circular window."""
        images = images - images.mean(dim=(-1, -2), keepdim=True)
        return images * self.window.to(images.device)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Raw images ``(B, D, D)`` -> windowed images in normalised units."""
        return self.window_images(images) / self.stats.scale

    def batch(self, indices: np.ndarray, device: torch.device) -> Batch:
        raw = self._cache[indices] if self._cache is not None else self._read(indices)
        images = self.prepare(raw.to(device))
        ctf = None if self.particles.ctf is None else self.particles.ctf[torch.as_tensor(indices)].to(device, torch.float32)
        pixel = torch.as_tensor(self.particles.pixel_size_angstrom[indices], dtype=torch.float32, device=device)
        return Batch(torch.as_tensor(indices, device=device), images, fft2_centered(images), ctf, pixel)
