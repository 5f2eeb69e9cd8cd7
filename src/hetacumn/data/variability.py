"""Where the conformations differ, at known poses: the main direction of the images' residuals (3-D variability).

Probabilistic PCA by expectation-maximisation (Roweis 1998) on images seen through projection ``P_i``
and CTF ``C_i``. With ``V`` the consensus (a Wiener backprojection) and ``R_i = Y_i - a_i C_i P_i V`` the
residual of image ``i`` (``a_i`` its least-squares amplitude: real particles differ in contrast, and
without it the direction follows the contrast), each pass alternates

    E-step  c_i = <R_i, C_i P_i W> / |C_i P_i W|^2        (the image's coordinate along the direction W)
    M-step  W   = sum_i c_i P_i^T C_i R_i / (sum_i C_i^2 + lambda)

(the exact M-step weighs ``C_i^2`` by ``c_i^2``; as ``c_i``, a conformation, does not depend on the pose
or the CTF, that sum is ``mean(c^2) sum C_i^2`` up to noise, and ``W``'s scale does not matter). Only the
frequencies within ``radius_px`` take part, where a few thousand images determine ``W``: the images are
Fourier-cropped to a box of ``2 * radius_px + 4`` first, which keeps exactly those frequencies.

Measured on the two-state 64-px SNR-0.1 set at the true poses (4,000 images, radius 10 px, one thread): the
coordinates split the images as the states 98.5 % of the time in 11 s, where training the latent from random
starts needed ~38 passes over the data to get near (BENCHMARKS.md, "Latent start: direct checks"). On a
stack simulated by ASPIRE with per-image amplitudes in [2/3, 3/2] (bench/aspire_sim.py), the split went
from 94.0 % to 98.6 % with the fitted amplitudes (98.4 to 98.5 % on ours, which have none).

:class:`LatentDirection` keeps ``V`` and ``W`` (at the cropped box) with the standardisation of the fitted
coordinates, so that any image at a pose gets its coordinate by the E-step alone: images beyond those the
direction was fitted on, and new images in ``hetacumn infer``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from hetacumn.data.images import Batch, ParticleImages
from hetacumn.physics.fourier import fft2_centered, ifft2_centered
from hetacumn.physics.grids import radial_grid_2d
from hetacumn.physics.reconstruct import BackprojectionAccumulator
from hetacumn.physics.render import fitted_amplitudes, render_images
from hetacumn.physics.resample import fourier_crop

PosesOf = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]  # indices -> (rotations, shift_px)


class _CroppedSet:
    """Images, CTFs and poses of some particles at the cropped box, held in memory."""

    def __init__(self, rows: list[tuple], box: int, device):
        """``rows``: ``(images, ctf, rotations, shift_px)`` per batch, as :meth:`_crop` gives them."""
        images, ctf, rotations, shift_px = zip(*rows)
        self.images, self.rotations, self.shift_px = torch.cat(images), torch.cat(rotations), torch.cat(shift_px)
        self.ctf = None if ctf[0] is None else torch.cat(ctf)
        self.disk = (radial_grid_2d(box, device=device) <= (box - 4) / 2).to(self.images.dtype)
        self.box = box

    @classmethod
    def of_particles(cls, data: ParticleImages, indices: np.ndarray, poses_of: PosesOf, box: int, device,
                     batch_size: int) -> _CroppedSet:
        rows = [cls._crop(data.batch(indices[s:s + batch_size], device), *poses_of(indices[s:s + batch_size]), box)
                for s in range(0, len(indices), batch_size)]
        return cls(rows, box, device)

    @classmethod
    def of_batch(cls, batch: Batch, rotations: torch.Tensor, shift_px: torch.Tensor, box: int) -> _CroppedSet:
        """The images of one batch at the given poses (full-box px)."""
        return cls([cls._crop(batch, rotations, shift_px, box)], box, batch.images.device)

    @staticmethod
    def _crop(batch: Batch, rotations: torch.Tensor, shift_px: torch.Tensor, box: int):
        full_box, device = batch.images.shape[-1], batch.images.device
        return (fourier_crop(batch.images, box), batch.ctf_images(box), rotations.float().to(device),
                shift_px.float().to(device) * box / full_box)

    def band_limited_images(self) -> torch.Tensor:
        return ifft2_centered(fft2_centered(self.images) * self.disk).real

    def residuals(self, consensus: torch.Tensor, batch_size: int) -> torch.Tensor:
        """``Y_i - a_i C_i P_i V`` with each image's own amplitude ``a_i`` fitted (see the module's docstring)."""
        images, parts = self.band_limited_images(), []
        for s in range(0, len(images), batch_size):
            rendered, observed = self.render(consensus, slice(s, s + batch_size)), images[s:s + batch_size]
            parts.append(observed - fitted_amplitudes(observed, rendered)[:, None, None] * rendered)
        return torch.cat(parts)

    def render(self, volume: torch.Tensor, part: slice) -> torch.Tensor:
        """Band-limited images of ``volume`` at the poses of ``part`` (CTF and shift applied)."""
        ctf = None if self.ctf is None else self.ctf[part]
        images = render_images(volume, self.rotations[part], ctf=ctf, shift_px=self.shift_px[part])
        return ifft2_centered(fft2_centered(images) * self.disk).real

    def backproject(self, images: torch.Tensor, wiener_constant: float, batch_size: int) -> torch.Tensor:
        accumulator = BackprojectionAccumulator(self.box, device=images.device)
        for s in range(0, len(images), batch_size):
            part = slice(s, s + batch_size)
            ctf = None if self.ctf is None else self.ctf[part]
            accumulator.add(images[part], self.rotations[part], ctf, self.shift_px[part],
                            max_radius_px=(self.box - 4) / 2)
        return accumulator.volume(wiener_constant)


def _coordinates(cropped: _CroppedSet, residuals: torch.Tensor, direction: torch.Tensor,
                 batch_size: int) -> torch.Tensor:
    """E-step: ``c_i`` of every residual along ``direction``."""
    parts = []
    for s in range(0, len(residuals), batch_size):
        projected = cropped.render(direction, slice(s, s + batch_size))
        norm2 = (projected**2).sum((1, 2)).clamp_min(1e-12)
        parts.append((residuals[s:s + batch_size] * projected).sum((1, 2)) / norm2)
    return torch.cat(parts)


def residual_direction(data: ParticleImages, indices: np.ndarray, poses_of: PosesOf, radius_px: float = 10.0,
                       passes: int = 50, seed: int = 0, device="cpu", batch_size: int = 256, tolerance: float = 1e-5):
    """The consensus and the first principal direction of the residuals, both ``(d, d, d)`` at the cropped box
    ``d``, and the coordinates ``c`` ``(len(indices),)`` of the images ``indices`` along it.

    ``poses_of(index)`` gives the rotations ``(B, 3, 3)`` and RELION origins ``(B, 2)`` in px of the full box.
    The passes stop early once the direction moves less than ``tolerance`` (1 - cosine) in a pass.
    """
    box = min(data.box_size, 2 * math.ceil(radius_px) + 4)
    wiener_constant = 1.0 / max(data.stats.snr, 1e-3)
    cropped = _CroppedSet.of_particles(data, np.asarray(indices), poses_of, box, device, batch_size)
    consensus = cropped.backproject(cropped.band_limited_images(), wiener_constant, batch_size)
    residuals = cropped.residuals(consensus, batch_size)
    generator = torch.Generator().manual_seed(seed)
    coordinates = torch.randn(len(residuals), generator=generator).to(residuals)
    direction = torch.zeros_like(consensus)
    for _ in tqdm(range(passes), desc="residual direction", unit="pass", leave=False):
        previous = direction
        direction = cropped.backproject(residuals * coordinates[:, None, None], wiener_constant, batch_size)
        direction = direction / direction.norm().clamp_min(1e-12)
        coordinates = _coordinates(cropped, residuals, direction, batch_size)
        if float((direction * previous).sum()) >= 1 - tolerance:
            break
    return consensus, direction, coordinates


@dataclass
class LatentDirection:
    """The consensus and the residuals' direction (``(d, d, d)`` at the cropped box) and the mean and standard
    deviation of the coordinates they were fitted with: :meth:`coordinates` gives any image's standardised one."""

    consensus: torch.Tensor
    direction: torch.Tensor
    mean: float
    std: float

    @classmethod
    def fitted(cls, consensus: torch.Tensor, direction: torch.Tensor, coordinates: torch.Tensor) -> LatentDirection:
        """From :func:`residual_direction`'s results, standardised by its coordinates."""
        return cls(consensus, direction, float(coordinates.mean()), float(coordinates.std(correction=0).clamp_min(1e-12)))

    @torch.no_grad()
    def coordinates(self, batch: Batch, rotations: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
        """``(B,)`` standardised coordinates of the batch's images at poses ``rotations`` ``(B, 3, 3)`` and
        ``shift_px`` ``(B, 2)`` (RELION origins in px of the images' box)."""
        device = batch.images.device
        consensus, direction = self.consensus.to(device), self.direction.to(device)
        cropped = _CroppedSet.of_batch(batch, rotations, shift_px, consensus.shape[0])
        residuals = cropped.residuals(consensus, len(rotations))
        return (_coordinates(cropped, residuals, direction, len(rotations)) - self.mean) / self.std

    def state_dict(self) -> dict:
        return {"consensus": self.consensus.cpu(), "direction": self.direction.cpu(), "mean": self.mean,
                "std": self.std}

    @classmethod
    def from_state_dict(cls, state: dict | None) -> LatentDirection | None:
        return None if state is None else cls(state["consensus"], state["direction"], state["mean"], state["std"])
