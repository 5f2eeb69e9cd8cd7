"""Training at given poses (``hetacumn train --poses``): the poses are kept, and the conformations are learned."""

from __future__ import annotations

import dataclasses

import numpy as np

from hetacumn.engine.run import train
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.particles import load_particles
from hetacumn.io.star import write_particles_star
from hetacumn.metrics.latent import confusion_error

from .conftest import small_config


def test_given_poses_from_a_star_file_are_kept_and_two_states_are_separated(tiny_dataset, tmp_path):
    truth = read_pose_pickle(tiny_dataset / "truth" / "poses.pkl", 32)
    plain = load_particles(tiny_dataset / "particles.star")
    refined = write_particles_star(tmp_path / "consensus.star", plain, poses=truth)  # a consensus refinement
    particles = load_particles(tiny_dataset / "particles.star", poses=refined)
    config = small_config("hetacumn")
    config.train = dataclasses.replace(config.train, epochs=10, batch_size=16, log_every_steps=200)
    config.task = dataclasses.replace(config.task, consensus_images=0, refine_steps=0)
    config.data.poses = str(refined)
    (tmp_path / "run").mkdir()
    result = train(config, particles, tmp_path / "run")
    cosine = (np.einsum("nij,nij->n", result.rotations, truth.rotations) - 1) / 2
    assert np.degrees(np.arccos(np.clip(cosine, -1, 1))).max() < 0.05  # float32 and the STAR file's decimals
    assert np.abs(result.shift_px - truth.shift_px).max() < 1e-4
    # measured: 0.0 after 10 epochs of 256 images with the latent start (data/variability.py); before it,
    # 160 epochs were needed (0.32 after 40 epochs of 512: z started from nothing)
    assert confusion_error(result.z, np.load(tiny_dataset / "truth" / "labels.npy")) < 0.05
