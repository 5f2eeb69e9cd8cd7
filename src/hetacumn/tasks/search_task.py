"""The pose search stage: poses from a search against the decoder train the decoder, and the encoder
learns to predict them (a seed for the amortized stage that follows).

Each step decodes the volume at the prior mean ``z = 0`` on the Fourier grid, finds every image's
best pose (:class:`~hetacumn.tasks.search.PoseSearch`), and returns one loss with two parts that touch
disjoint parameters: the image task's error rendered at the searched poses (decoder; with the latent
of the image task) and the squared Frobenius + weighted squared shift distance between the encoder's
prediction and the searched pose (encoder; the closest rotation hypothesis counts).
"""

from __future__ import annotations

import torch

from hetacumn.config.schema import TaskConfig
from hetacumn.data.images import Batch
from hetacumn.models.model import HetModel
from hetacumn.tasks.base import StepContext, StepOutput, weighted_mse
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.search import PoseSearch, decode_volume_grid


def pose_search_from_config(config: TaskConfig, shift_range_px: float) -> PoseSearch:
    return PoseSearch(config.search_rotations, shift_extent_px=shift_range_px / 2,
                      shift_step_px=config.search_shift_step_px, levels=config.search_levels,
                      global_radius_px=config.search_global_radius_px, candidates=config.search_candidates)


class PoseSearchTask:
    def __init__(self, config: TaskConfig, image_task: ImageReconstructionTask, shift_range_px: float):
        self.config = config
        self.image_task = image_task
        self.search = pose_search_from_config(config, shift_range_px)

    def step(self, model: HetModel, batch: Batch, context: StepContext) -> StepOutput:
        half = context.half_plane
        target = half.gather(self.image_task.target(batch.images_ft, context))
        z_mean = None if model.zdim == 0 else torch.zeros(model.zdim, device=target.device)
        volume_ft = decode_volume_grid(model, half.radius_px, z_mean)
        rotation, shift_px, _ = self.search(volume_ft, target, context.ctf_values, half)
        enc = model.encode(batch.images)
        z, z_report, z_sample, kl = self.image_task.latent(enc, context)
        ctf = 1.0 if context.ctf_values is None else context.ctf_values
        mse = weighted_mse(model.render(rotation, shift_px, z, ctf, half), target, half)
        rotation_error = ((enc.rotation - rotation[:, None]) ** 2).sum(dim=(-1, -2)).min(dim=1).values
        shift_error = ((enc.shift_px - shift_px) ** 2).sum(-1)
        distill = rotation_error.mean() + self.config.pose_shift_weight * shift_error.mean()
        loss = mse.mean() + self.config.pose_distill_weight * distill
        metrics = {"mse": float(mse.detach().mean()), "distill_loss": float(distill.detach()),
                   "distill_rotation_frobenius2": float(rotation_error.detach().mean())}
        if kl is not None:
            loss = loss + self.config.kl_weight * kl.mean()
            metrics["kl"] = float(kl.detach().mean())
        metrics["loss"] = float(loss.detach())
        return StepOutput(loss, metrics, rotation, shift_px, None if z_report is None else z_report.detach(),
                          None if z_sample is None else z_sample.detach())
