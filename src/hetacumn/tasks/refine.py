"""Per-particle pose refinement by gradient descent against the decoder (the semi-amortized stage).

A pose ``(A, t)`` is moved by a tangent step: ``A <- A exp([w]x)`` (right-multiplied, as the local
search does) and ``t <- t + d``; the 5 numbers ``(w, d)`` are updated by Adam, one optimiser per
particle, whose moments and step count live in the pose table (:mod:`hetacumn.data.pose_table`), so
a particle's refinement continues across visits and epochs. The decoder's parameters receive no
gradient from the refinement (the gradient is taken with respect to ``(w, d)`` only).

Two users: the training stage (:class:`PoseRefinementTask`: table rows initialised from the encoder's
best hypothesis, refined for ``refine_steps`` each visit, then the decoder trained at the refined
poses and the encoder taught them) and inference on new images (``hetacumn infer --refine K``: K
steps from fresh moments).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from hetacumn.config.schema import TaskConfig
from hetacumn.data.images import Batch
from hetacumn.data.pose_table import PoseRows, PoseTable
from hetacumn.models.model import HetModel
from hetacumn.physics.rotations import axis_angle_to_matrix
from hetacumn.physics.slice import sample_trilinear
from hetacumn.tasks.base import StepContext, StepOutput, image_error
from hetacumn.tasks.explicit import explicit_pose_step, with_known_latent
from hetacumn.tasks.image import ImageReconstructionTask

_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-12


def fresh_rows(rotation: torch.Tensor, shift_px: torch.Tensor) -> PoseRows:
    """Rows at the given poses with Adam's state cleared."""
    n = len(rotation)
    zeros = torch.zeros(n, 5, dtype=torch.float64, device=rotation.device)
    return PoseRows(rotation.double(), shift_px.double(), zeros, zeros.clone(),
                    torch.zeros(n, dtype=torch.float64, device=rotation.device),
                    torch.ones(n, dtype=torch.bool, device=rotation.device))


def _apply(rows: PoseRows, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rotation = rows.rotation.to(step.dtype) @ axis_angle_to_matrix(step[:, :3])
    return rotation, rows.shift_px.to(step.dtype) + step[:, 3:]


def refine_poses(error_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], rows: PoseRows, steps: int,
                 lr_rad: float, lr_px: float) -> tuple[PoseRows, torch.Tensor | None]:
    """``steps`` Adam steps on every row's pose to lower ``error_of(rotation, shift_px)`` (``(B,)`` per image).

    Returns the updated rows and the error at the poses before the last step (None when ``steps`` is 0).
    """
    lr = torch.tensor([lr_rad] * 3 + [lr_px] * 2, dtype=torch.float64, device=rows.rotation.device)
    error = None
    for _ in range(steps):
        tangent = torch.zeros(len(rows.rotation), 5, device=rows.rotation.device, requires_grad=True)
        error = error_of(*_apply(rows, tangent))
        (grad,) = torch.autograd.grad(error.sum(), tangent)
        grad = grad.double()
        count = rows.steps + 1
        moment1 = _BETA1 * rows.moment1 + (1 - _BETA1) * grad
        moment2 = _BETA2 * rows.moment2 + (1 - _BETA2) * grad**2
        corrected1 = moment1 / (1 - _BETA1 ** count[:, None])
        corrected2 = moment2 / (1 - _BETA2 ** count[:, None])
        update = -lr * corrected1 / (corrected2.sqrt() + _EPS)
        rotation, shift_px = _apply(rows, update)
        rows = dataclasses.replace(rows, rotation=rotation, shift_px=shift_px, moment1=moment1, moment2=moment2,
                                   steps=count)
        error = error.detach()
    return rows, error


def rendered_error(model: HetModel, targets: torch.Tensor, ctf_values, z, context: StepContext):
    """``error_of`` for :func:`refine_poses`: the task's weighted error of each image at a pose."""
    half = context.half_plane
    ctf = 1.0 if ctf_values is None else ctf_values
    z = None if z is None else z.detach()
    return lambda rotation, shift_px: image_error(model.render(rotation.float(), shift_px.float(), z, ctf, half),
                                                  targets, context)


def volume_rendered_error(volume_ft: torch.Tensor, targets: torch.Tensor, ctf_values, context: StepContext):
    """``error_of`` against a fixed centred Fourier volume (the decoder on its grid, for a homogeneous model):
    slices by trilinear interpolation, far cheaper than the decoder itself."""
    half = context.half_plane
    plane = torch.cat([half.coords, torch.zeros_like(half.coords[:, :1])], dim=-1).to(volume_ft.device) * half.box_size
    ctf = 1.0 if ctf_values is None else ctf_values

    def error_of(rotation, shift_px):
        slices = sample_trilinear(volume_ft, plane @ rotation.float())
        phase = 2 * torch.pi * (half.coords.to(shift_px.device) @ shift_px.float().T).T
        return image_error(slices * ctf * torch.polar(torch.ones_like(phase), phase), targets, context)

    return error_of


class PoseRefinementTask:
    """Training with a pose per particle: read the batch's rows, refine them, train at the refined poses."""

    def __init__(self, config: TaskConfig, image_task: ImageReconstructionTask, table: PoseTable):
        self.config = config
        self.image_task = image_task
        self.table = table

    def _rows(self, model: HetModel, batch: Batch, context: StepContext) -> PoseRows:
        """The batch's rows; those never seen start at the encoder's best hypothesis (symmetrized paths too)."""
        index = batch.index.cpu().numpy()
        rows = self.table.read(index, batch.images.device)
        fresh = ~rows.initialised
        if bool(fresh.any()):
            with torch.no_grad():
                guess = self.image_task.step(model, batch, dataclasses.replace(context, deterministic=True))
            start = fresh_rows(guess.rotation, guess.shift_px)
            for name in ("rotation", "shift_px", "moment1", "moment2", "steps", "initialised"):
                getattr(rows, name)[fresh] = getattr(start, name)[fresh]
        return rows

    def step(self, model: HetModel, batch: Batch, context: StepContext) -> StepOutput:
        target = context.half_plane.gather(self.image_task.target(batch.images_ft, context))
        rows = self._rows(model, batch, context)
        enc = model.encode(batch.images)
        latent = with_known_latent(self.image_task.latent(enc, context), context.z_known)
        error_of = rendered_error(model, target, context.ctf_values, latent[0], context)
        rows, error_before = refine_poses(error_of, rows, self.config.refine_steps, self.config.refine_lr_rad,
                                          self.config.refine_lr_px)
        self.table.write(np.asarray(batch.index.cpu()), rows)
        out = explicit_pose_step(model, self.config, enc, latent, target,
                                 rows.rotation.float(), rows.shift_px.float(), context, z_target=context.z_known)
        if error_before is not None:
            out.metrics["refine_mse_before"] = float(error_before.mean())
        return out
