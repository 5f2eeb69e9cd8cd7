"""Training at explicit poses (searched or refined): the loss shared by the search and refinement stages.

It has two parts that touch disjoint parameters: the image task's error rendered at the given poses
(decoder, and the conformation head through z) and the squared Frobenius + weighted squared shift
distance between the encoder's prediction and the given pose (the encoder's pose heads; the closest
rotation hypothesis counts), so that the encoder learns to predict the poses for amortized inference.
"""

from __future__ import annotations

import torch

from hetacumn.config.schema import TaskConfig
from hetacumn.models.encoders import EncoderOutput
from hetacumn.models.model import HetModel
from hetacumn.tasks.base import StepContext, StepOutput, image_error, pose_regression


def with_known_latent(latent, z_known: torch.Tensor | None):
    """``latent`` with the entries of ``z_known`` ``(B, zdim)`` that are not NaN in place of the encoder's values."""
    if z_known is None or latent[0] is None:
        return latent
    known = ~z_known.isnan()
    values = z_known.nan_to_num()
    z, z_report, z_sample, kl = latent
    return (torch.where(known, values, z), torch.where(known, values, z_report),
            torch.where(known, values, z_sample), kl)


def explicit_pose_step(model: HetModel, config: TaskConfig, enc: EncoderOutput, latent, target: torch.Tensor,
                       rotation: torch.Tensor, shift_px: torch.Tensor, context: StepContext,
                       z_target: torch.Tensor | None = None) -> StepOutput:
    """``latent`` is :meth:`ImageReconstructionTask.latent` of ``enc``; ``target`` the batch at the half-plane points.

    ``z_target`` ``(B, zdim)``: latent means the encoder is taught too (the search stage's classes, or the
    residuals' coordinates of data/variability.py), with weight ``search_class_z_weight``; NaN entries are free."""
    z, z_report, z_sample, kl = latent
    rotation, shift_px = rotation.detach(), shift_px.detach()
    ctf = 1.0 if context.ctf_values is None else context.ctf_values
    mse = image_error(model.render(rotation, shift_px, z, ctf, context.half_plane), target, context)
    distill, rotation_error = pose_regression(enc.rotation, enc.shift_px, rotation, shift_px, config.pose_shift_weight)
    loss = mse.mean() + config.pose_distill_weight * distill
    metrics = {"mse": float(mse.detach().mean()), "distill_loss": float(distill.detach()),
               "distill_rotation_frobenius2": float(rotation_error.detach().mean())}
    if z_target is not None:
        difference = torch.where(z_target.isnan(), 0.0, enc.z_mu - z_target.nan_to_num())
        class_error = (difference**2).sum(-1).mean()
        loss = loss + config.search_class_z_weight * class_error
        metrics["class_z_error"] = float(class_error.detach())
    if kl is not None:
        loss = loss + config.kl_weight * kl.mean()
        metrics["kl"] = float(kl.detach().mean())
    metrics["loss"] = float(loss.detach())
    return StepOutput(loss, metrics, rotation, shift_px, None if z_report is None else z_report.detach(),
                      None if z_sample is None else z_sample.detach())
