"""Task 1, image reconstruction: encode, decode, render, compare (optionally variational, symmetrized).

Symmetrized loss: each image is also presented transformed (in-plane rotation by pi, or a mirror in x);
the loss of the better path counts, and the pose of the original image is recovered from the winning
path: rotation by pi gives ``A = Rz(pi) A2, t = -t2``; a mirror in x gives ``A = Ry(pi) A2,
t = (-t2x, t2y)`` (a mirrored projection is the projection of the same volume turned by pi about y).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hetacumn.config.schema import TaskConfig
from hetacumn.data.images import Batch
from hetacumn.models.model import HetModel
from hetacumn.physics.filters import gaussian_lowpass_ft
from hetacumn.physics.fourier import fft2_centered, negate_frequencies
from hetacumn.tasks.base import StepContext, StepOutput, ctf_at, image_error

_ROT_Z_PI = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))
_ROT_Y_PI = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))


def transform_images(images: torch.Tensor, kind: str) -> torch.Tensor:
    """Rotate by pi (``rotation``) or mirror in x (``mirror``) about the centre pixel ``D // 2``."""
    if kind == "rotation":
        return negate_frequencies(images)  # point reflection through D // 2
    return torch.roll(torch.flip(images, dims=(-1,)), shifts=1, dims=-1)


def untransform_pose(rotation: torch.Tensor, shift_px: torch.Tensor, kind: str):
    """Pose of the original image from the pose predicted for its transformed copy."""
    if kind == "rotation":
        return _ROT_Z_PI.to(rotation) @ rotation, -shift_px
    return _ROT_Y_PI.to(rotation) @ rotation, shift_px * torch.tensor([-1.0, 1.0], device=shift_px.device)


@dataclass
class _Path:
    error: torch.Tensor  # (B,)
    kl: torch.Tensor | None
    rotation: torch.Tensor
    shift_px: torch.Tensor
    raw_shift_px: torch.Tensor  # as predicted, for the L1 prior
    z_mean: torch.Tensor | None
    z_sample: torch.Tensor | None


def _pick(paths: list[_Path], best: torch.Tensor, name: str) -> torch.Tensor | None:
    values = [getattr(p, name) for p in paths]
    if values[0] is None:
        return None
    return torch.stack(values)[best, torch.arange(len(best), device=best.device)]


class ImageReconstructionTask:
    def __init__(self, config: TaskConfig, z_mode: str):
        self.config = config
        self.z_mode = z_mode

    def latent(self, enc, context: StepContext):
        """(z for decoding, z to report, posterior draw for the pose task, KL per image). In the consensus phase
        (and cryoFIRE's pose-only phase) z is drawn from the prior, so the conformation head gets no gradient and
        the decoder learns a volume that does not depend on z while the poses form."""
        if self.z_mode == "none" or enc.z_mu is None:
            return None, None, None, None
        mu, logvar = enc.z_mu, enc.z_logvar
        if context.deterministic:
            return mu, mu, mu.detach(), None
        if context.images_seen < self.config.consensus_images:  # cryoFIRE's pose-only phase too
            prior = self.config.consensus_z_std * torch.randn(mu.shape, generator=context.generator).to(mu.device)
            return prior, prior, prior, None
        if self.z_mode == "autoencoder":
            return mu, mu, mu.detach(), None
        eps = torch.randn(mu.shape, generator=context.generator).to(mu.device)
        sample = mu + torch.exp(0.5 * logvar) * eps
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
        return sample, mu, sample.detach(), kl

    def target(self, images_ft: torch.Tensor, context: StepContext) -> torch.Tensor:
        warmup = self.config.warmup_images
        if warmup <= 0 or context.images_seen >= warmup or context.deterministic:
            return images_ft
        gamma = context.images_seen / warmup
        lowpass = gaussian_lowpass_ft(images_ft.shape[-1], self.config.warmup_sigma_px, device=images_ft.device)
        return gamma * images_ft + (1 - gamma) * images_ft * lowpass

    def _path(self, model: HetModel, batch: Batch, context: StepContext, kind: str | None) -> _Path:
        half = context.half_plane
        images = batch.images if kind is None else transform_images(batch.images, kind)
        images_ft = batch.images_ft if kind is None else fft2_centered(images)
        enc = model.encode(images)
        z, z_mean, z_sample, kl = self.latent(enc, context)
        ctf = context.ctf_values
        if kind == "mirror" and ctf is not None:
            ctf = ctf_at(half, batch, mirror=True)
        target = half.gather(self.target(images_ft, context))
        errors = torch.stack([
            image_error(model.render(enc.rotation[:, k], enc.shift_px, z, 1.0 if ctf is None else ctf, half), target,
                        context)
            for k in range(enc.rotation.shape[1])
        ])  # (K, B): the best rotation hypothesis of each image counts
        error, best = errors.min(dim=0)
        rotation = enc.rotation[torch.arange(len(best), device=best.device), best]
        shift = enc.shift_px
        if kind is not None:
            rotation, shift = untransform_pose(rotation, shift, kind)
        return _Path(error, kl, rotation, shift, enc.shift_px, z_mean, z_sample)

    def step(self, model: HetModel, batch: Batch, context: StepContext) -> StepOutput:
        kinds = [None] if self.config.symmetrize == "none" else [None, self.config.symmetrize]
        paths = [self._path(model, batch, context, kind) for kind in kinds]
        best = torch.stack([p.error for p in paths]).argmin(0)
        mse = _pick(paths, best, "error")
        loss = mse.mean() + self.config.shift_l1_weight * _pick(paths, best, "raw_shift_px").abs().sum(-1).mean()
        metrics = {"mse": float(mse.detach().mean()), "path2_fraction": float((best > 0).float().mean())}
        kl = _pick(paths, best, "kl")
        if kl is not None:
            loss = loss + self.config.kl_weight * kl.mean()
            metrics["kl"] = float(kl.detach().mean())
        metrics["loss"] = float(loss.detach())
        z = _pick(paths, best, "z_mean")
        z_sample = _pick(paths, best, "z_sample")
        return StepOutput(loss, metrics, _pick(paths, best, "rotation").detach(), _pick(paths, best, "shift_px").detach(),
                          None if z is None else z.detach(), None if z_sample is None else z_sample.detach())
