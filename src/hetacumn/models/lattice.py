"""Which Fourier coefficients of an image the model evaluates: half a slice, inside a circle.

A real image's transform is Hermitian, so the half-plane ``kx > 0`` (plus ``kx = 0, ky >= 0``) holds
all of it; the Nyquist row and column (index 0), which have no partner, are left out. ``weights`` are 2
for points standing for themselves and their mirror, 1 for the origin, so a weighted sum of squared
differences over the half-plane equals the sum over the full plane (Parseval).

Example usage::

    half = HalfPlane.build(64, radius_px=12)
    targets = images_ft.flatten(-2)[:, half.flat_index]        # (B, M)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hetacumn.physics.fourier import negate_frequencies
from hetacumn.physics.grids import real_grid_2d


@dataclass(frozen=True)
class HalfPlane:
    box_size: int
    radius_px: float
    flat_index: torch.Tensor  # (M,) into the flattened (D*D) centred transform
    coords: torch.Tensor  # (M, 2) (kx, ky) in cycles/px
    weights: torch.Tensor  # (M,)

    @staticmethod
    def build(box_size: int, radius_px: float, device=None) -> "HalfPlane":
        offsets = real_grid_2d(box_size, device=device)  # (D, D, 2) integer (x, y) offsets
        x, y = offsets[..., 0], offsets[..., 1]
        half = (x > 0) | ((x == 0) & (y >= 0))
        inside = offsets.norm(dim=-1) <= radius_px
        not_nyquist = (x > -box_size // 2) & (y > -box_size // 2)
        keep = (half & inside & not_nyquist).flatten()
        flat_index = torch.nonzero(keep).squeeze(1)
        coords = offsets.reshape(-1, 2)[flat_index] / box_size
        weights = torch.where((coords == 0).all(-1), 1.0, 2.0).to(coords.dtype)
        return HalfPlane(box_size, float(radius_px), flat_index, coords, weights)

    def within(self, radius_px: float) -> tuple["HalfPlane", torch.Tensor]:
        """The points of this half-plane within ``radius_px``, and the boolean mask selecting them."""
        mask = self.coords.norm(dim=-1) * self.box_size <= radius_px
        return HalfPlane(self.box_size, min(self.radius_px, float(radius_px)), self.flat_index[mask],
                         self.coords[mask], self.weights[mask]), mask

    def gather(self, images_ft: torch.Tensor) -> torch.Tensor:
        """Values of centred transforms ``(..., D, D)`` at the half-plane points: ``(..., M)``."""
        return images_ft.flatten(-2)[..., self.flat_index]

    def scatter(self, values: torch.Tensor) -> torch.Tensor:
        """Full centred transforms ``(B, D, D)`` from half-plane values, filling the mirror by symmetry."""
        d = self.box_size
        full = torch.zeros(values.shape[0], d * d, dtype=values.dtype, device=values.device)
        full[:, self.flat_index] = values
        full = full.reshape(-1, d, d)
        mirror = negate_frequencies(full).conj()
        origin = (self.coords == 0).all(-1)
        result = full + mirror
        if origin.any():
            result[:, d // 2, d // 2] = full[:, d // 2, d // 2]
        return result
