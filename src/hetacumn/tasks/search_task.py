"""The pose search stage: ab initio poses by projection matching, which train the decoder and which the
encoder learns to predict (a seed for the amortized stage that follows).

The search runs against a *reference*: a running Wiener backprojection of the images at their
searched poses, with exponential forgetting (it remembers about ``search_memory_images`` images). It
starts from a few images (``search_seed_images``) at random poses, an asymmetric start; a start from
many images at random poses is a spherical blob, a fixed point of projection matching (measured: no
convergence from it, nor from the decoder's own volume, on the 32-px test set). Each step finds every
image's best pose (:class:`~hetacumn.tasks.search.PoseSearch`), adds the batch to the reference, and
returns one loss with two parts that touch disjoint parameters: the image task's error rendered at
the searched poses (decoder; with the latent of the image task) and the squared Frobenius + weighted
squared shift distance between the encoder's prediction and the searched pose (encoder; the closest
rotation hypothesis counts).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from hetacumn.config.schema import TaskConfig
from hetacumn.data.images import Batch
from hetacumn.models.model import HetModel
from hetacumn.tasks.base import StepContext, StepOutput, weighted_mse
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.physics.ctf import ctf_images
from hetacumn.physics.fourier import fft3_centered
from hetacumn.physics.reconstruct import BackprojectionAccumulator
from hetacumn.physics.rotations import random_rotations
from hetacumn.tasks.search import PoseSearch


def pose_search_from_config(config: TaskConfig, shift_range_px: float) -> PoseSearch:
    return PoseSearch(config.search_rotations, shift_extent_px=shift_range_px / 2,
                      shift_step_px=config.search_shift_step_px, levels=config.search_levels,
                      global_radius_px=config.search_global_radius_px, candidates=config.search_candidates)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class ReferenceVolume:
    """Running backprojection with exponential forgetting; its state goes into checkpoints.

    In a distributed run every process adds its share of the batch and the increments are summed over
    the processes, so all of them hold the reference of the whole global batch.
    """

    def __init__(self, box_size: int, memory_images: int, device):
        self.accumulator = BackprojectionAccumulator(box_size, oversampling=1, device=device)
        self.memory_images = memory_images

    @property
    def empty(self) -> bool:
        return self.accumulator.count == 0

    def add(self, batch: Batch, rotation: torch.Tensor, shift_px: torch.Tensor | None, keep=slice(None)) -> None:
        images = batch.images[keep]
        ctf = None if batch.ctf is None else ctf_images(batch.ctf[keep], images.shape[-1], batch.pixel_size_angstrom[keep])
        if not _distributed():
            self.accumulator.sums *= max(0.0, 1.0 - len(images) / self.memory_images)
            self.accumulator.add(images, rotation, ctf=ctf, shift_px=shift_px)
            return
        count = torch.tensor([float(len(images))], device=self.accumulator.device)
        dist.all_reduce(count)
        kept = self.accumulator.sums * max(0.0, 1.0 - float(count) / self.memory_images)
        self.accumulator.sums = torch.zeros_like(kept)
        self.accumulator.add(images, rotation, ctf=ctf, shift_px=shift_px)
        dist.all_reduce(self.accumulator.sums)
        self.accumulator.sums += kept
        self.accumulator.count += int(count) - len(images)

    def transform(self) -> torch.Tensor:
        """The centred 3-D transform of the current reconstruction."""
        return fft3_centered(self.accumulator.volume())

    def state_dict(self) -> dict:
        return {"sums": self.accumulator.sums, "count": self.accumulator.count}

    def load_state_dict(self, state: dict) -> None:
        self.accumulator.sums = state["sums"].to(self.accumulator.device)
        self.accumulator.count = state["count"]


class PoseSearchTask:
    def __init__(self, config: TaskConfig, image_task: ImageReconstructionTask, shift_range_px: float, box_size: int,
                 device):
        self.config = config
        self.image_task = image_task
        self.search = pose_search_from_config(config, shift_range_px)
        self.reference = ReferenceVolume(box_size, config.search_memory_images, device)

    def _seed(self, batch: Batch, generator: torch.Generator) -> None:
        first = not _distributed() or dist.get_rank() == 0  # the seed images come from rank 0's share
        keep = torch.arange(min(self.config.search_seed_images, len(batch.images)) if first else 0)
        rotation = random_rotations(len(keep), generator=generator).to(batch.images.device)
        self.reference.add(batch, rotation, None, keep)

    def step(self, model: HetModel, batch: Batch, context: StepContext) -> StepOutput:
        half = context.half_plane
        target = half.gather(self.image_task.target(batch.images_ft, context))
        if self.reference.empty:
            self._seed(batch, context.generator)
        rotation, shift_px, _ = self.search(self.reference.transform(), target, context.ctf_values, half)
        self.reference.add(batch, rotation, shift_px)
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
