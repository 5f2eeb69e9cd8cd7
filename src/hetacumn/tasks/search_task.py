"""The pose search stage: ab initio poses by projection matching, which train the decoder and which the
encoder learns to predict (a seed for the amortized stage that follows).

The search runs against a *reference*: a running Wiener backprojection of the images at their
searched poses, with exponential forgetting (it remembers about ``search_memory_images`` images). It
starts from a few images (``search_seed_images``) at random poses, an asymmetric start; a start from
many images at random poses is a spherical blob, a fixed point of projection matching (measured: no
convergence from it, nor from the decoder's own volume, on the 32-px test set). Each step finds every
image's best pose (:class:`~hetacumn.tasks.search.PoseSearch`), adds the batch to the reference, and
trains the model at the searched poses (:func:`~hetacumn.tasks.explicit.explicit_pose_step`: the
decoder on the rendered error, the encoder by regression onto the searched poses).

With ``search_soft`` the reference takes in each image at every distinct refined candidate pose,
weighted by its posterior probability (:func:`~hetacumn.tasks.search.candidate_posteriors`, the noise
power estimated from the batch's residuals), instead of at its best pose alone; the decoder and the
encoder still learn the best pose. Measured on the 64-px SNR-0.1 set (search stage only, marching
1,500 images/px): median 14.7 deg against 36.7 deg (hard) after 36,000 images with seed 0, 10.4 deg
against 50.1 deg after 20,000 with seed 1; on the 32-px SNR-10 set it converges slightly later (9.3
deg against 6.3 deg after 15,000 images). ``search_soft = "auto"`` (the default) resolves to soft
assignment when the SNR estimated from the data is below 1 (:func:`resolve_soft_assignment`).

With ``search_classes`` K > 1 the stage ends as a 3-D classification (:class:`PoseSearchTask` gives the
schedule): a search against one homogeneous reference turns conformations into poses (measured on the
32-px two-state set: the two states' poses came out rotated by +-5.6 deg about the hinge axis, and with
that plus ~5 deg of scatter z was not learned at those poses, confusion 0.38, while either alone gave
0.015-0.027), so each class gets its own reference and the encoder learns the classes as a start for z.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from hetacumn.config.schema import TaskConfig
from hetacumn.data.images import Batch
from hetacumn.models.model import HetModel
from hetacumn.physics.fourier import fft3_centered
from hetacumn.physics.reconstruct import BackprojectionAccumulator
from hetacumn.physics.rotations import random_rotations
from hetacumn.tasks.base import StepContext, StepOutput
from hetacumn.tasks.class_split import DifferenceVolume, rank_classes
from hetacumn.tasks.explicit import explicit_pose_step
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.search import PoseSearch


def pose_search_from_config(config: TaskConfig, shift_range_px: float, final: bool = False) -> PoseSearch:
    """The search stage's pose search, or with ``final`` the one against the trained decoder."""
    radius_px = config.search_final_radius_px if final else config.search_global_radius_px
    return PoseSearch(config.search_rotations, shift_extent_px=shift_range_px / 2,
                      shift_step_px=config.search_shift_step_px, levels=config.search_levels,
                      global_radius_px=radius_px, candidates=config.search_candidates)


def resolve_soft_assignment(setting: str, estimated_snr: float) -> bool:
    """``search_soft``: ``"on"``, ``"off"``, or ``"auto"``: soft below an estimated SNR of 1, where
    the posterior over poses is broad (with the true volume at SNR 0.1, 30 % of best poses are > 10 deg off)."""
    if setting == "auto":
        return estimated_snr < 1.0
    return setting == "on"


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


# The references are read only within the search's radius, which grows by a px every ~1,500 images (frequency
# marching) while they forget with a memory of ~850: inserting 8 px beyond it fills each new shell for ~3,000
# images (97 % of its steady weight) before the search reads it, and skips the rest of each slice.
INSERT_MARGIN_PX = 8.0
_MIN_POSTERIOR = 1e-3  # candidate poses below this weight are not backprojected


def _expanded(images, ctf, rotation, shift_px, weights):
    """One row per (image, candidate) whose weight reaches ``_MIN_POSTERIOR``; weights renormalised per image."""
    weights = torch.where(weights >= _MIN_POSTERIOR, weights, torch.zeros_like(weights))
    weights = weights / weights.sum(1, keepdim=True)
    image, candidate = torch.nonzero(weights, as_tuple=True)
    return (images[image], None if ctf is None else ctf[image], rotation[image, candidate],
            None if shift_px is None else shift_px[image, candidate], weights[image, candidate])


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

    def add(self, batch: Batch, rotation: torch.Tensor, shift_px: torch.Tensor | None, keep=slice(None),
            weights: torch.Tensor | None = None, max_radius_px: float | None = None) -> None:
        """Insert the images ``keep`` of the batch at their poses and forget in proportion to their number.

        With ``weights`` ``(B, K)`` each image is inserted at ``K`` poses (``rotation`` ``(B, K, 3, 3)``,
        ``shift_px`` ``(B, K, 2)``) with those weights, summing to 1 per image. ``max_radius_px``: see
        :meth:`BackprojectionAccumulator.add`.
        """
        images = batch.images[keep]
        ctf = batch.ctf_images()
        ctf = None if ctf is None else ctf[keep]
        self.add_images(images, ctf, rotation, shift_px, weights, max_radius_px)

    def add_images(self, images: torch.Tensor, ctf: torch.Tensor | None, rotation: torch.Tensor,
                   shift_px: torch.Tensor | None, weights: torch.Tensor | None = None,
                   max_radius_px: float | None = None) -> None:
        """:meth:`add` for images ``(B, D, D)`` and CTF images ``(B, D, D)`` (or None) at hand."""
        image_count = len(images)
        if weights is not None:
            images, ctf, rotation, shift_px, weights = _expanded(images, ctf, rotation, shift_px, weights)
        if not _distributed():
            if len(images):  # a class may get no image of a batch
                self.accumulator.sums *= max(0.0, 1.0 - image_count / self.memory_images)
                self.accumulator.add(images, rotation, ctf=ctf, shift_px=shift_px, weights=weights,
                                     max_radius_px=max_radius_px)
            return
        count = torch.tensor([float(image_count)], device=self.accumulator.device)
        dist.all_reduce(count)
        kept = self.accumulator.sums * max(0.0, 1.0 - float(count) / self.memory_images)
        self.accumulator.sums = torch.zeros_like(kept)
        if len(images):
            self.accumulator.add(images, rotation, ctf=ctf, shift_px=shift_px, weights=weights,
                                 max_radius_px=max_radius_px)
        dist.all_reduce(self.accumulator.sums)
        self.accumulator.sums += kept
        self.accumulator.count += int(count) - len(images)

    def transform(self) -> torch.Tensor:
        """The centred 3-D transform of the current reconstruction."""
        return fft3_centered(self.accumulator.volume())

    def state_dict(self) -> dict:
        return {"sums": self.accumulator.sums, "count": self.accumulator.count}

    def load_state_dict(self, state: dict) -> None:
        self.accumulator.sums = state["sums"].to(self.accumulator.device, copy=True)  # never shared with the source
        self.accumulator.count = state["count"]


def split_images(config: TaskConfig) -> int:
    """Images seen when the difference map starts (``search_classes`` > 1): ``search_split_images``, or a
    third of the search stage when that is 0."""
    return config.search_split_images or config.pose_search_images // 3


class PoseSearchTask:
    """The search stage; with ``search_classes`` K > 1 also a 3-D classification.

    Schedule in images seen, with ``M = search_memory_images`` and ``S`` the split (:attr:`split_images`):
    before ``S + search_split_memories * M`` one consensus reference, from ``S`` on also the difference
    map (:class:`~hetacumn.tasks.class_split.DifferenceVolume`); for the next ``M`` images K class
    references (copies of the consensus) take the images by the quantiles of their coefficient; after
    that each image takes the class (and pose) of the lowest error, the errors centred per class for
    ``search_balanced_memories`` memories first.
    """

    def __init__(self, config: TaskConfig, image_task: ImageReconstructionTask, shift_range_px: float, box_size: int,
                 device, estimated_snr: float):
        self.config = config
        self.estimated_snr = estimated_snr
        self.image_task = image_task
        self.search = pose_search_from_config(config, shift_range_px)
        memory = config.search_memory_images
        self.consensus = ReferenceVolume(box_size, memory, device)
        self.difference = DifferenceVolume(ReferenceVolume(box_size, memory, device))
        self.references = [ReferenceVolume(box_size, memory, device) for _ in range(config.search_classes)]

    @property
    def split_images(self) -> int:
        return split_images(self.config)

    def _phase(self, images_seen: int) -> str:
        """``consensus``, ``difference`` (consensus and difference map), ``ranked`` or ``classes``."""
        memory = self.config.search_memory_images
        since = images_seen - self.split_images - self.config.search_split_memories * memory
        if len(self.references) == 1 or images_seen < self.split_images:
            return "consensus"
        return "difference" if since < 0 else "ranked" if since < memory else "classes"

    def _all_references(self) -> list[ReferenceVolume]:
        return [self.consensus, self.difference.reference, *self.references]

    def state_dict(self) -> list[dict]:
        return [reference.state_dict() for reference in self._all_references()]

    def load_state_dict(self, state: list[dict] | dict) -> None:
        state = [state] if isinstance(state, dict) else state  # a single reference: written before the classes
        for reference, reference_state in zip(self._all_references(), state):
            reference.load_state_dict(reference_state)

    def _seed(self, batch: Batch, generator: torch.Generator) -> None:
        first = not _distributed() or dist.get_rank() == 0  # the seed images come from rank 0's share
        keep = torch.arange(min(self.config.search_seed_images, len(batch.images)) if first else 0)
        rotation = random_rotations(len(keep), generator=generator).to(batch.images.device)
        self.consensus.add(batch, rotation, None, keep)

    def _search(self, reference: ReferenceVolume, target: torch.Tensor, context: StepContext):
        """Best pose and its error per image against one reference, and the coarse candidates."""
        half, ctf = context.half_plane, context.ctf_values
        widen = 0 < self.config.search_widen_images <= context.images_seen
        self.search.global_radius_px = (self.config.search_final_radius_px if widen
                                        else self.config.search_global_radius_px)
        volume_ft = reference.transform()
        candidates = self.search.coarse_candidates(volume_ft, target, ctf, half)
        rotation, shift_px, error = self.search.refine_best(volume_ft, target, ctf, half, *candidates)
        return rotation, shift_px, error, candidates

    def _add(self, reference: ReferenceVolume, batch: Batch, target: torch.Tensor, context: StepContext, found,
             keep: torch.Tensor) -> None:
        """The images ``keep`` into the reference: at the best pose, or (``search_soft``) at every candidate
        pose weighted by its posterior."""
        rotation, shift_px, _, (rotations, shifts, error) = found
        # with classes, the difference map reads the consensus at every frequency (tasks/class_split.py)
        radius = None if len(self.references) > 1 else context.half_plane.radius_px + INSERT_MARGIN_PX
        if not resolve_soft_assignment(self.config.search_soft, self.estimated_snr):
            reference.add(batch, rotation[keep], shift_px[keep], keep, max_radius_px=radius)
            return
        weights = self.search.posteriors(target[keep], context.half_plane, rotations[keep], shifts[keep], error[keep])
        best = (torch.arange(len(keep), device=error.device), error[keep].argmin(1))
        rotations, shifts = rotations[keep].clone(), shifts[keep].clone()
        rotations[best], shifts[best] = rotation[keep], shift_px[keep]  # the best candidate at its refined pose
        reference.add(batch, rotations, shifts, keep, weights=weights, max_radius_px=radius)

    def search_and_add(self, batch: Batch, target: torch.Tensor, context: StepContext):
        """Each image's best pose (and class) against the references, which then take in the batch.

        Returns the rotations, shifts and the class of every image (None before the classes start)."""
        phase, everyone = self._phase(context.images_seen), torch.arange(len(target), device=target.device)
        if phase == "classes":
            found = [self._search(reference, target, context) for reference in self.references]
            labels = self._classes(torch.stack([error for _, _, error, _ in found], 1), context)
            for k, (reference, found_k) in enumerate(zip(self.references, found)):
                self._add(reference, batch, target, context, found_k, torch.nonzero(labels == k).flatten())
            rotation = torch.stack([f[0] for f in found], 1)[everyone, labels]
            return rotation, torch.stack([f[1] for f in found], 1)[everyone, labels], labels
        found = self._search(self.consensus, target, context)
        labels = None
        if phase != "consensus":
            coefficient = self._coefficients(batch, found, context)
        if phase == "ranked":
            if self.references[0].empty:  # every class starts from the consensus
                for reference in self.references:
                    reference.load_state_dict(self.consensus.state_dict())
            labels = rank_classes(coefficient, len(self.references))
            for k, reference in enumerate(self.references):
                self._add(reference, batch, target, context, found, torch.nonzero(labels == k).flatten())
        self._add(self.consensus, batch, target, context, found, everyone)
        return found[0], found[1], labels

    def _coefficients(self, batch: Batch, found, context: StepContext) -> torch.Tensor:
        return self.difference.coefficients(batch.images, batch.ctf_images(), found[0], found[1], self.consensus.accumulator.volume(),
                                            context.generator)

    def _classes(self, error: torch.Tensor, context: StepContext) -> torch.Tensor:
        """Each image's class from its errors ``(B, K)``: the lowest, after centring each class's errors on
        their batch mean for the first ``search_balanced_memories`` memories of the phase (without it the
        class with more images, a sharper reference, takes ever more of them: measured on the 32-px two-state
        set after random classes, one class down to 9 % of the images 6,000 images after the split)."""
        memory = self.config.search_memory_images
        start = self.split_images + (self.config.search_split_memories + 1) * memory
        if context.images_seen < start + self.config.search_balanced_memories * memory:
            error = error - error.mean(0, keepdim=True)
        return error.argmin(1)

    def step(self, model: HetModel, batch: Batch, context: StepContext) -> StepOutput:
        half = context.half_plane
        if self.consensus.empty:
            self._seed(batch, context.generator)
        # the search compares the raw images with references made of raw images; warm-up labeling (acehetem)
        # low-passes only the decoder's target (searched against low-passed targets: 48.5 deg against 8 deg)
        rotation, shift_px, labels = self.search_and_add(batch, half.gather(batch.images_ft), context)
        target = half.gather(self.image_task.target(batch.images_ft, context))
        enc = model.encode(batch.images)
        anchors = None if labels is None else class_anchors(len(self.references), enc.z_mu)
        z_target = None if anchors is None else anchors[labels]
        out = explicit_pose_step(model, self.config, enc, self.image_task.latent(enc, context), target, rotation,
                                 shift_px, context, z_target=z_target)
        out.metrics["search_radius_px"] = float(self.search.global_radius_px)
        return out


def class_anchors(classes: int, z_mu: torch.Tensor | None) -> torch.Tensor | None:
    """The latent each class of the search stage teaches the encoder: the first ``classes`` unit vectors."""
    if z_mu is None:
        return None
    return torch.eye(z_mu.shape[1], device=z_mu.device, dtype=z_mu.dtype)[:classes]
