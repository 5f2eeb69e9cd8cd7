"""3-D classification in the search stage: each image takes the class whose reference it fits best."""

from __future__ import annotations

import dataclasses

import torch

from hetacumn.config.schema import TaskConfig
from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.fourier import fft2_centered, fft3_centered
from hetacumn.physics.render import render_images
from hetacumn.physics.rotations import geodesic_distance_rad, random_rotations
from hetacumn.simulate.volumes import toy_molecule
from hetacumn.tasks.base import StepContext
from hetacumn.tasks.class_split import DifferenceVolume, rank_classes
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.search_task import PoseSearchTask, ReferenceVolume

from .conftest import next_step_before_and_after_resume, small_config

BOX = 32


class _FixedReference:
    """A reference that holds a known volume and records the images it is given."""

    def __init__(self, volume):
        self.volume_ft = fft3_centered(volume)
        self.added = []
        self.empty = False

    def transform(self):
        return self.volume_ft

    def add(self, batch, rotation, shift_px, keep=slice(None), weights=None, max_radius_px=None):
        self.added.append(keep)


def test_each_image_takes_the_class_and_pose_of_its_own_state():
    generator = torch.Generator().manual_seed(2)
    states = [torch.as_tensor(toy_molecule(BOX, 4.0, state=s)).float() for s in (0.0, 1.0)]
    rotations = random_rotations(48, generator=generator)
    labels = torch.arange(48) % 2
    images = torch.cat([render_images(states[k], rotations[labels == k]) for k in (0, 1)])
    rotations = torch.cat([rotations[labels == k] for k in (0, 1)])
    labels = torch.cat([labels[labels == k] for k in (0, 1)])
    config = TaskConfig(pose_search_images=3000, search_classes=2, search_soft="off", search_balanced_memories=0)
    task = PoseSearchTask(config, ImageReconstructionTask(config, "variational"), 4.0, BOX, "cpu", 10.0)
    task.references = [_FixedReference(volume) for volume in states]
    half = HalfPlane.build(BOX, 10)
    classes_start = 1000 + 3 * config.search_memory_images  # split, two memories of difference map, one ranked
    context = StepContext(half, None, images_seen=classes_start, generator=generator)
    batch = type("Batch", (), {"images": images})()
    rotation, _, found = task.search_and_add(batch, half.gather(fft2_centered(images)), context)
    assert int((found == labels).sum()) >= 46  # measured: 47 of 48
    assert float(torch.rad2deg(geodesic_distance_rad(rotation, rotations)).median()) < 2.0
    assert [len(ref.added[0]) for ref in task.references] == [int((found == k).sum()) for k in (0, 1)]


def test_the_difference_map_orders_the_images_by_state():
    generator = torch.Generator().manual_seed(5)
    states = [torch.as_tensor(toy_molecule(BOX, 4.0, state=s)).float() for s in (0.0, 1.0)]
    consensus = (states[0] + states[1]) / 2
    rotations = random_rotations(96, generator=generator)
    labels = torch.arange(96) % 2
    images = torch.stack([render_images(states[int(k)], r[None])[0] for k, r in zip(labels, rotations)])
    difference = DifferenceVolume(ReferenceVolume(BOX, 200, "cpu"))
    for _ in range(4):  # passes of 32-image batches
        for start in range(0, 96, 32):
            batch = slice(start, start + 32)
            coefficient = difference.coefficients(images[batch], None, rotations[batch], None, consensus, generator)
    upper = rank_classes(coefficient, 2)
    agreement = float((upper == labels[64:]).float().mean())
    assert max(agreement, 1 - agreement) >= 0.9  # the sign of a principal component is arbitrary


def test_rank_classes_splits_at_the_quantiles():
    assert rank_classes(torch.tensor([3.0, 1.0, 2.0, 0.0]), 2).tolist() == [1, 0, 1, 0]
    assert rank_classes(torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0]), 3).tolist() == [2, 2, 1, 1, 0, 0]


def test_resume_with_search_classes_reproduces_the_next_loss(tiny_particles, tmp_path):
    # difference map from 32 images, ranked classes from 64: the resumed step (96 images seen) assigns by error
    config = small_config("hetacumn")
    config.task = dataclasses.replace(config.task, pose_search_images=10_000, search_rotations=512, search_classes=2,
                                      search_split_images=32, search_memory_images=16, consensus_images=32)
    expected, again = next_step_before_and_after_resume(config, tiny_particles, tmp_path)
    assert again["loss"] == expected["loss"] and again["class_z_error"] == expected["class_z_error"]


def test_a_class_without_images_in_the_batch_keeps_its_reference():
    reference = ReferenceVolume(BOX, 100, "cpu")
    volume = torch.as_tensor(toy_molecule(BOX, 4.0)).float()
    rotations = random_rotations(8, generator=torch.Generator().manual_seed(6))
    reference.add_images(render_images(volume, rotations), None, rotations, None)
    before = reference.accumulator.sums.clone()
    reference.add_images(torch.zeros(0, BOX, BOX), None, torch.zeros(0, 3, 3), None)
    assert torch.equal(reference.accumulator.sums, before)


def test_the_search_compares_raw_images_while_warm_up_low_passes_the_decoder_target():
    """acehetem's warm-up labeling must not reach the search: its references are made of raw images."""
    config = TaskConfig(pose_search_images=3000, warmup_images=50_000)
    image_task = ImageReconstructionTask(config, "variational")
    task = PoseSearchTask(config, image_task, 4.0, BOX, "cpu", 10.0)
    volume = torch.as_tensor(toy_molecule(BOX, 4.0)).float()
    task.consensus = _FixedReference(volume)
    images = render_images(volume, random_rotations(4, generator=torch.Generator().manual_seed(1)))
    batch = type("Batch", (), {"images": images, "images_ft": fft2_centered(images)})()
    half = HalfPlane.build(BOX, 10)
    context = StepContext(half, None, images_seen=100, generator=torch.Generator().manual_seed(3))
    seen = []

    def record(batch, target, context):
        seen.append(target)
        raise StopIteration

    task.search_and_add = record
    try:
        task.step(None, batch, context)
    except StopIteration:
        pass
    raw = half.gather(batch.images_ft)
    assert torch.equal(seen[0], raw)
    low_passed = half.gather(image_task.target(batch.images_ft, context))  # what the decoder is fitted to
    assert float((low_passed - raw).abs().max()) > 0.1 * float(raw.abs().max())
