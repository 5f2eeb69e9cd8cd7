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
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.search_task import PoseSearchTask

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

    def add(self, batch, rotation, shift_px, keep=slice(None), weights=None):
        self.added.append(keep)


def test_each_image_takes_the_class_and_pose_of_its_own_state():
    generator = torch.Generator().manual_seed(2)
    states = [torch.as_tensor(toy_molecule(BOX, 4.0, state=s)).float() for s in (0.0, 1.0)]
    rotations = random_rotations(48, generator=generator)
    labels = torch.arange(48) % 2
    images = torch.cat([render_images(states[k], rotations[labels == k]) for k in (0, 1)])
    rotations = torch.cat([rotations[labels == k] for k in (0, 1)])
    labels = torch.cat([labels[labels == k] for k in (0, 1)])
    config = TaskConfig(pose_search_images=3000, search_classes=2, search_soft="off")
    task = PoseSearchTask(config, ImageReconstructionTask(config, "variational"), 4.0, BOX, "cpu", 10.0)
    task.references = [_FixedReference(volume) for volume in states]
    half = HalfPlane.build(BOX, 10)
    context = StepContext(half, None, images_seen=config.pose_search_images - 1, generator=generator)
    batch = type("Batch", (), {"images": images})()
    rotation, _, found = task.search_and_add(batch, half.gather(fft2_centered(images)), context)
    assert int((found == labels).sum()) >= 46  # measured: 47 of 48
    assert float(torch.rad2deg(geodesic_distance_rad(rotation, rotations)).median()) < 2.0
    assert [len(ref.added[0]) for ref in task.references] == [int((found == k).sum()) for k in (0, 1)]


def test_resume_with_search_classes_reproduces_the_next_loss(tiny_particles, tmp_path):
    # split after 32 images, random classes until 64: the resumed step (96 images seen) assigns by error
    config = small_config("hetacumn")
    config.task = dataclasses.replace(config.task, pose_search_images=10_000, search_rotations=512, search_classes=2,
                                      search_split_images=32, search_memory_images=32, consensus_images=32)
    expected, again = next_step_before_and_after_resume(config, tiny_particles, tmp_path)
    assert again["loss"] == expected["loss"] and again["class_z_error"] == expected["class_z_error"]
