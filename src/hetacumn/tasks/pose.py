"""Task 2, conditional pose prediction (HetACUMN CPP / ACE-HetEM P2P): decoder, then encoder.

Random poses (uniform on SO(3), shifts uniform within half the shift range) and latents drawn from
the posterior of the current image batch are rendered by the *frozen* decoder with the batch's CTFs;
noise is added at the SNR estimated from the data, relative to the variance of the rendered images within
the particle disk where that SNR's signal was measured (so it is progressive as the decoder sharpens); the
encoder must recover the pose. Only encoder parameters receive gradients: the decoder runs under
``torch.no_grad``.
"""

from __future__ import annotations

import math

import torch

from hetacumn.config.schema import TaskConfig
from hetacumn.data.images import Batch, particle_disk
from hetacumn.models.model import HetModel
from hetacumn.physics.fourier import ifft2_centered
from hetacumn.physics.rotations import random_rotations
from hetacumn.tasks.base import StepContext, StepOutput, pose_regression


class PosePredictionTask:
    def __init__(self, config: TaskConfig, snr: float, window_images):
        self.config = config
        self.snr = snr
        self.window_images = window_images  # the data's window, applied to rendered images too

    @torch.no_grad()
    def render_examples(self, model: HetModel, batch: Batch, z: torch.Tensor | None, context: StepContext):
        n = batch.images.shape[0]
        device = batch.images.device
        generator = context.generator
        rotation = random_rotations(n, generator=generator, device=device)
        half_range = model.config.shift_range_px / 2
        shift = ((torch.rand(n, 2, generator=generator) * 2 - 1) * half_range).to(device)
        ctf = 1.0 if context.ctf_values is None else context.ctf_values
        values = model.render(rotation, shift, z, ctf, context.half_plane)
        clean = ifft2_centered(context.half_plane.scatter(values)).real
        images = clean
        if self.config.pose_noise and math.isfinite(self.snr):
            # the signal where the data's SNR measured it (a variance over the whole box would dilute it by the
            # empty background: 0.57x the data's noise at any box size)
            centred = clean - clean.mean(dim=(-1, -2), keepdim=True)
            sigma = torch.sqrt(centred[:, particle_disk(clean.shape[-1], device)].var() / self.snr)
            noise = torch.randn(clean.shape, generator=generator).to(device)
            images = clean + sigma * noise
        return self.window_images(images), rotation, shift  # renders are already in normalised units

    def step(self, model: HetModel, batch: Batch, context: StepContext, z: torch.Tensor | None) -> StepOutput:
        images, rotation, shift = self.render_examples(model, batch, z, context)
        enc = model.encode(images)
        loss, rotation_error = pose_regression(enc.rotation, enc.shift_px, rotation, shift, self.config.pose_shift_weight)
        metrics = {"pose_loss": float(loss.detach()), "pose_rotation_frobenius2": float(rotation_error.detach().mean())}
        return StepOutput(loss, metrics)
