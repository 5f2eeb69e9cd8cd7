"""The training engine's mechanics: overfitting, exact resume, the pose task's frozen decoder."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hetacumn.data.images import ParticleImages
from hetacumn.engine.trainer import Trainer
from hetacumn.tasks.base import StepContext, ctf_at
from tests.engine.conftest import next_step_before_and_after_resume, small_config


@pytest.mark.parametrize("loss_space", ["fourier", "real"])
def test_one_batch_overfits(tiny_particles, tmp_path, loss_space):
    config = small_config("cryoai", lr=1e-2)
    config.model.decoder.kind = "rff_mlp"
    config.task.symmetrize = "none"
    config.task.loss_space = loss_space
    trainer = Trainer(config, ParticleImages(tiny_particles), tmp_path)
    batch = np.arange(16)
    losses = [trainer.train_step(batch)["mse"] for _ in range(300)]
    assert np.mean(losses[-10:]) < losses[0] / 10


def test_resume_reproduces_the_next_loss_exactly(tiny_particles, tmp_path):
    expected, again = next_step_before_and_after_resume(small_config("hetacumn"), tiny_particles, tmp_path)
    assert again["loss"] == expected["loss"]
    assert again["pose_loss"] == expected["pose_loss"]


def test_pose_task_changes_only_the_encoder_and_lowers_its_loss(tiny_particles, tmp_path):
    config = small_config("hetacumn", lr=1e-3)
    data = ParticleImages(tiny_particles)
    trainer = Trainer(config, data, tmp_path)
    decoder_before = {k: v.clone() for k, v in trainer.model.decoder.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in trainer.model.encoder.state_dict().items()}
    batch = data.batch(np.arange(32), trainer.device)
    half = trainer.half_plane()
    context = StepContext(half, ctf_at(half, batch), 10**6, trainer.generator)
    z = torch.zeros(32, config.model.zdim)
    trainer.generator.manual_seed(5)
    first = trainer._pose_step(batch, context, z)["pose_loss"]
    for _ in range(40):
        trainer.generator.manual_seed(5)  # the same synthetic poses each time: the loss must fall
        last = trainer._pose_step(batch, context, z)["pose_loss"]
    assert all(torch.equal(decoder_before[k], v) for k, v in trainer.model.decoder.state_dict().items())
    assert any(not torch.equal(encoder_before[k], v) for k, v in trainer.model.encoder.state_dict().items())
    assert last < 0.5 * first


@pytest.mark.parametrize("in_refinement", [False, True])
def test_pose_task_runs_in_the_refinement_stage_only_when_asked(tiny_particles, tmp_path, in_refinement):
    config = small_config("hetacumn")
    config.task = dataclasses.replace(config.task, refine_start_images=1, refine_steps=1,
                                      pose_prediction_in_refinement=in_refinement)
    trainer = Trainer(config, ParticleImages(tiny_particles), tmp_path)
    trainer.progress["images_seen"] = 64
    assert trainer.stage() == "refine"
    metrics = trainer.train_step(np.arange(32))
    assert ("pose_loss" in metrics) == in_refinement
    assert "refine_mse_before" in metrics  # a refinement step, with or without the pose step after it
