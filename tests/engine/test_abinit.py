"""Homogeneous ab initio on a tiny simulated set (32 px, high SNR): poses from nothing to under 10 deg."""

from __future__ import annotations

import dataclasses

from hetacumn.config.presets import preset
from hetacumn.engine.run import train
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.particles import load_particles
from hetacumn.metrics.pose import rotation_errors, translation_errors
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset


def test_homogeneous_ab_initio_recovers_poses(tmp_path):
    simulate_dataset(SimulationConfig(n_images=3000, box_size=32, pixel_size_angstrom=4.0, snr=10.0, shift_px=0.0,
                                      proportions=[1.0], seed=0), tmp_path / "sim", overwrite=True)
    particles = load_particles(tmp_path / "sim" / "particles.star")
    config = preset("cryoai", box_size=32)
    config.train = dataclasses.replace(config.train, epochs=5, marching_images_per_px=1500,
                                       max_radius_px=12)
    config.task = dataclasses.replace(config.task, pose_search_images=10**9)
    (tmp_path / "run").mkdir()
    result = train(config, particles, tmp_path / "run")
    truth = read_pose_pickle(tmp_path / "sim" / "truth" / "poses.pkl", 32)
    errors = rotation_errors(result.rotations, truth.rotations)
    assert errors["median_angle_deg"] < 10.0, errors
    shifts = translation_errors(result.shift_px, truth.shift_px, truth.rotations)
    assert shifts["median_px"] < 1.0, shifts
