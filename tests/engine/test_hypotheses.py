"""Several rotation hypotheses: the image task keeps, per image, the one whose rendering fits best."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch

from hetacumn.config.presets import preset
from hetacumn.config.schema import TaskConfig
from hetacumn.models.lattice import HalfPlane
from hetacumn.models.model import HetModel
from hetacumn.physics.rotations import geodesic_distance_rad, random_rotations
from hetacumn.tasks.base import StepContext, weighted_mse
from hetacumn.tasks.image import ImageReconstructionTask

BOX, IMAGES, HYPOTHESES = 16, 6, 4


def test_best_of_m_keeps_the_hypothesis_with_the_lowest_rendered_error():
    torch.manual_seed(0)
    config = preset("cryoai", box_size=BOX).model
    config.encoder = dataclasses.replace(config.encoder, rotation_hypotheses=HYPOTHESES)
    model = HetModel(config)
    half = HalfPlane.build(BOX, 6)
    generator = torch.Generator().manual_seed(1)
    truth = random_rotations(IMAGES, generator=generator)
    shift_px = torch.zeros(IMAGES, 2)
    with torch.no_grad():  # noiseless targets rendered by the decoder itself at the true poses
        images_ft = half.scatter(model.render(truth, shift_px, None, 1.0, half))
    # hypotheses: random rotations, with the truth hidden at a different slot for each image
    hypotheses = random_rotations(IMAGES * HYPOTHESES, generator=generator).reshape(IMAGES, HYPOTHESES, 3, 3)
    slots = torch.arange(IMAGES) % HYPOTHESES
    hypotheses[torch.arange(IMAGES), slots] = truth
    model.encode = lambda images: SimpleNamespace(rotation=hypotheses, shift_px=shift_px, z_mu=None, z_logvar=None)
    batch = SimpleNamespace(images=torch.zeros(IMAGES, BOX, BOX), images_ft=images_ft, ctf=None,
                            pixel_size_angstrom=torch.ones(IMAGES))
    task = ImageReconstructionTask(TaskConfig(symmetrize="none", shift_l1_weight=0.0), "none")
    out = task.step(model, batch, StepContext(half, None, 0, generator, deterministic=True))
    assert float(torch.rad2deg(geodesic_distance_rad(out.rotation, truth)).max()) < 1e-3
    assert out.metrics["mse"] < 1e-10
    # every other hypothesis renders a worse image: the winner's loss is the lowest of the M
    with torch.no_grad():
        errors = torch.stack([weighted_mse(model.render(hypotheses[:, k], shift_px, None, 1.0, half),
                                           half.gather(images_ft), half) for k in range(HYPOTHESES)])
    power = weighted_mse(torch.zeros_like(half.gather(images_ft)), half.gather(images_ft), half)  # (B,)
    assert torch.equal(errors.argmin(0), slots)
    wrong = errors.masked_fill(torch.nn.functional.one_hot(slots, HYPOTHESES).T.bool(), float("inf"))
    assert bool((wrong.min(0).values > 0.05 * power).all())  # the other hypotheses are far from the target
