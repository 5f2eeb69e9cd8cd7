"""The amortized model: encoder (image -> pose, z) and Hermitian Fourier decoder ((k, z) -> volume).

A checkpoint stores the :class:`~hetacumn.config.schema.ModelConfig` beside the weights, so
``HetModel.from_checkpoint(path)`` rebuilds the model without the command line.

Example usage::

    model = HetModel(config.model)
    enc = model.encode(images)
    pred = model.render(enc.rotation, enc.shift_px, z, ctf_values, half_plane)   # (B, M) complex
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn

from hetacumn.config.io import dataclass_from_dict
from hetacumn.config.schema import ModelConfig
from hetacumn.models.decoders import build_decoder
from hetacumn.models.encoders import Encoder, EncoderOutput
from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.fourier import ifft3_centered
from hetacumn.physics.grids import fourier_grid_3d


class HetModel(nn.Module):
    # bfloat16 autocast of the encoder's and decoder's layers (the trainer sets it on CUDA from train.amp). Only
    # the networks: the physics around them (rotated coordinates, phase ramps, CTF, backprojection, pose
    # search) stays float32, where bfloat16's 8-bit mantissa would misplace a 32-px phase ramp by ~0.1 rad.
    mixed_precision = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        zdim = config.zdim if config.z_mode != "none" else 0
        self.zdim = zdim
        self.encoder = Encoder(config.encoder, config.box_size, zdim, config.shift_range_px)
        self.decoder = build_decoder(config.decoder, config.box_size, zdim)

    def _networks(self, device: torch.device):
        if not self.mixed_precision:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def encode(self, images: torch.Tensor) -> EncoderOutput:
        with self._networks(images.device):
            return self.encoder(images)  # its heads return float32

    def slices(self, rotations: torch.Tensor, z: torch.Tensor | None, half: HalfPlane) -> torch.Tensor:
        """Decoded central slices at the half-plane points: ``(B, M)`` complex."""
        plane = torch.cat([half.coords, torch.zeros_like(half.coords[:, :1])], dim=-1).to(rotations.dtype)
        coords = plane @ rotations  # row form of A^T k: (B, M, 3)
        with self._networks(coords.device):
            return self.decoder(coords, z)  # complex64

    def render(self, rotations, shift_px, z, ctf_values, half: HalfPlane) -> torch.Tensor:
        """Predicted image transforms at the half-plane points: CTF x slice x phase ramp for ``T(-shift)``."""
        values = self.slices(rotations, z, half) * ctf_values
        phase = 2 * torch.pi * (half.coords.to(shift_px.dtype) @ shift_px.T).T  # (B, M): +2 pi k.t
        return values * torch.polar(torch.ones_like(phase), phase)

    @torch.no_grad()
    def fourier_volume(self, z: torch.Tensor | None = None, max_radius_px: float | None = None,
                       chunk: int = 65536) -> torch.Tensor:
        """The decoder on the centred ``(D, D, D)`` Fourier grid at latent ``z`` (``(zdim,)`` or None).

        Evaluated below Nyquist (``|k| < 0.5`` cycles/px), or, given ``max_radius_px``, within that radius
        in px; zero elsewhere.
        """
        d = self.config.box_size
        device = next(self.parameters()).device
        grid = fourier_grid_3d(d, device=device).reshape(-1, 3)
        radius = grid.norm(dim=-1)
        inside = radius < 0.5 if max_radius_px is None else radius * d <= max_radius_px
        coords = grid[inside]
        zb = None if z is None or self.zdim == 0 else z.reshape(1, -1).to(device)
        values = torch.cat([self.decoder(coords[None, i : i + chunk], zb)[0] for i in range(0, len(coords), chunk)])
        volume_ft = torch.zeros(d**3, dtype=values.dtype, device=device)
        volume_ft[inside] = values
        return volume_ft.reshape(d, d, d)

    @torch.no_grad()
    def volume(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """Real-space volume ``(D, D, D)`` at latent ``z`` (``(zdim,)`` or None), band-limited to Nyquist."""
        return ifft3_centered(self.fourier_volume(z)).real

    def checkpoint_config(self) -> dict:
        return dataclasses.asdict(self.config)

    @staticmethod
    def from_config_dict(data: dict) -> "HetModel":
        return HetModel(dataclass_from_dict(ModelConfig, data, "model"))

    @staticmethod
    def from_checkpoint(path, map_location="cpu") -> "HetModel":
        state = torch.load(path, map_location=map_location, weights_only=False)
        model = HetModel.from_config_dict(state["model_config"])
        model.load_state_dict(state["model"])
        return model
