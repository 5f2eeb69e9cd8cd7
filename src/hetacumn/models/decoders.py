"""Volume decoders in Fourier space: ``forward(coords (B, M, 3) cycles/px, z (B, zdim) | None) -> (B, M) complex``.

All decoders are made Hermitian by :class:`HermitianDecoder`: a point in the negative half-space is
evaluated at ``-k`` and conjugated, so slices have Hermitian symmetry and only half of each slice
needs evaluating. A learnable radial envelope carries the steep fall of amplitude with frequency.

Example usage::

    decoder = build_decoder(DecoderConfig(kind="rff_mlp"), box_size=64, zdim=8)
    values = decoder(coords, z)        # (B, M) complex
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hetacumn.config.schema import DecoderConfig


def _as_complex(out: torch.Tensor) -> torch.Tensor:
    return torch.complex(out[..., 0].float(), out[..., 1].float())


class VoxelDecoder(nn.Module):
    """Explicit Fourier voxel grid; with ``basis > 0`` a z-conditioned linear combination of grids."""

    def __init__(self, box_size: int, zdim: int, basis: int):
        super().__init__()
        self.basis = basis if zdim > 0 else 0
        self.box_size = box_size
        self.grids = nn.Parameter(torch.randn(1, 2 * (1 + self.basis), box_size, box_size, box_size))
        self.coefficients = nn.Sequential(nn.Linear(zdim, 64), nn.ReLU(), nn.Linear(64, self.basis)) if self.basis else None

    def forward(self, coords: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        batch, points = coords.shape[:2]
        d = self.box_size
        normalized = (coords * d + d // 2) * (2.0 / (d - 1)) - 1.0  # align_corners=True index mapping
        grid = normalized.reshape(1, batch * points, 1, 1, 3).to(self.grids.dtype)
        sampled = nn.functional.grid_sample(self.grids, grid, align_corners=True, padding_mode="zeros")
        sampled = sampled.reshape(1 + self.basis, 2, batch, points)
        values = sampled[0]
        if self.coefficients is not None and z is not None:
            weights = self.coefficients(z).transpose(0, 1)  # (basis, B)
            values = values + (weights[:, None, :, None] * sampled[1:]).sum(0)
        return torch.complex(values[0].float(), values[1].float())


class RFFMLPDecoder(nn.Module):
    """Gaussian random Fourier features of k, concatenated with z, into a residual ReLU MLP."""

    def __init__(self, box_size: int, zdim: int, hidden: int, layers: int, features: int, sigma: float, output: str):
        super().__init__()
        self.register_buffer("frequencies", sigma * torch.randn(3, features))
        self.box_size = box_size
        self.hartley = output == "hartley"
        self.inp = nn.Linear(2 * features + zdim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.out = nn.Linear(hidden, 1 if self.hartley else 2)

    def _mlp(self, coords: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        with torch.autocast(coords.device.type, enabled=False):  # the features' phases need float32
            phase = (coords.float() * self.box_size) @ self.frequencies
        x = torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)
        if z is not None:
            x = torch.cat([x, z[:, None, :].expand(-1, coords.shape[1], -1)], dim=-1)
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return self.out(h)

    def forward(self, coords: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        if not self.hartley:
            return _as_complex(self._mlp(coords, z))
        both = self._mlp(torch.cat([coords, -coords], dim=1), z)[..., 0].float()
        h_pos, h_neg = both.chunk(2, dim=1)
        return torch.complex((h_pos + h_neg) / 2, -(h_pos - h_neg) / 2)


class _Siren(nn.Module):
    def __init__(self, c_in: int, hidden: int, layers: int, omega: float):
        super().__init__()
        dims = [c_in] + [hidden] * (layers + 1)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(hidden, 2)
        self.omega = omega
        with torch.no_grad():
            self.linears[0].weight.uniform_(-1 / c_in, 1 / c_in)
            for lin in list(self.linears[1:]) + [self.out]:
                bound = math.sqrt(6 / lin.in_features) / omega
                lin.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin in self.linears:
            x = torch.sin(self.omega * lin(x))
        return self.out(x)


class FourierNetDecoder(nn.Module):
    """cryoAI FourierNet: ``exp(envelope SIREN) * modulant SIREN``, read as (real, imag)."""

    def __init__(self, zdim: int, hidden: int, layers: int):
        super().__init__()
        self.modulant = _Siren(3 + zdim, hidden, layers, omega=40.0)
        self.envelope = _Siren(3 + zdim, hidden, max(layers - 1, 1), omega=30.0)

    def forward(self, coords: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        with torch.autocast(coords.device.type, enabled=False):  # sin(40 x) of bfloat16 x: ~0.2 rad off at |x| 1
            x = 2 * coords.float()
            if z is not None:
                x = torch.cat([x, z.float()[:, None, :].expand(-1, coords.shape[1], -1)], dim=-1)
            return _as_complex(torch.exp(self.envelope(x)) * self.modulant(x))


class HermitianDecoder(nn.Module):
    """Wraps a decoder: Hermitian symmetry by evaluating the negative half-space at ``-k``, and a
    learnable radial log-amplitude envelope (one value per shell, linearly interpolated)."""

    def __init__(self, inner: nn.Module, box_size: int):
        super().__init__()
        self.inner = inner
        self.box_size = box_size
        self.log_envelope = nn.Parameter(torch.zeros(box_size // 2 + 2))

    def envelope(self, radius_px: torch.Tensor) -> torch.Tensor:
        r = radius_px.clamp(max=len(self.log_envelope) - 1.001)
        low = r.floor().long()
        frac = r - low
        log_amp = self.log_envelope[low] * (1 - frac) + self.log_envelope[low + 1] * frac
        return torch.exp(log_amp)

    def forward(self, coords: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        x, y, zc = coords.unbind(-1)
        key = torch.where(zc != 0, zc, torch.where(y != 0, y, x))
        negative = key < 0
        canonical = torch.where(negative[..., None], -coords, coords)
        values = self.inner(canonical, z)
        values = torch.where(negative, values.conj(), values)
        return values * self.envelope(coords.norm(dim=-1) * self.box_size)


def build_decoder(config: DecoderConfig, box_size: int, zdim: int) -> HermitianDecoder:
    if config.kind == "voxel":
        inner: nn.Module = VoxelDecoder(box_size, zdim, config.voxel_basis)
    elif config.kind == "rff_mlp":
        inner = RFFMLPDecoder(box_size, zdim, config.hidden, config.layers, config.rff_features, config.rff_sigma,
                              config.output)
    elif config.kind == "fouriernet":
        inner = FourierNetDecoder(zdim, config.hidden, config.layers)
    else:
        raise ValueError(f"unknown decoder kind {config.kind!r}")
    return HermitianDecoder(inner, box_size)
