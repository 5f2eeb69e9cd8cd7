"""A tiny simulated dataset shared by the engine tests (32 px, built-in molecule, two states)."""

from __future__ import annotations

import dataclasses

import pytest

from hetacumn.config.presets import preset
from hetacumn.io.particles import load_particles
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    config = SimulationConfig(n_images=256, box_size=32, pixel_size_angstrom=4.0, snr=100.0, shift_px=2.0,
                              proportions=[0.5, 0.5], seed=1)
    simulate_dataset(config, out, overwrite=True)
    return out


@pytest.fixture
def tiny_particles(tiny_dataset):
    return load_particles(tiny_dataset / "particles.star")


def small_config(method: str, **train):
    """A preset scaled down for fast tests: narrow encoder, one-epoch defaults, no marching."""
    config = preset(method, box_size=32, zdim=2)
    config.model.encoder = dataclasses.replace(config.model.encoder, channels=8, head_hidden=32)
    config.model.decoder = dataclasses.replace(config.model.decoder, hidden=32, layers=2, rff_features=16)
    config.train = dataclasses.replace(config.train, epochs=1, batch_size=32, marching_images_per_px=0,
                                       max_radius_px=8, log_every_steps=2, **train)
    config.task = dataclasses.replace(config.task, consensus_images=min(config.task.consensus_images, 64),
                                      warmup_images=min(config.task.warmup_images, 64),
                                      pose_prediction_start_images=0)
    return config


def next_step_before_and_after_resume(config, particles, outdir, batch_size: int = 32) -> tuple[dict, dict]:
    """Metrics of step 4 run straight on after 3 steps and a checkpoint, and run again from that checkpoint."""
    import numpy as np

    from hetacumn.data.images import ParticleImages
    from hetacumn.engine.trainer import Trainer

    data = ParticleImages(particles)
    first = Trainer(config, data, outdir)
    order = np.arange(len(data))
    for step in range(3):
        first.train_step(order[step * batch_size:(step + 1) * batch_size])
        first.progress["steps_done"] += 1
        first.progress["images_seen"] += batch_size
    first.checkpoint()
    next_batch = order[3 * batch_size:4 * batch_size]
    expected = first.train_step(next_batch)
    resumed = Trainer(config, data, outdir)
    resumed.resume(outdir / "checkpoint.pt")
    return expected, resumed.train_step(next_batch)
