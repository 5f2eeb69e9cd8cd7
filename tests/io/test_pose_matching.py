"""Poses from a STAR file of the same particles are paired by image name (stack file and index), not by row."""

from __future__ import annotations

import numpy as np
import pytest

from hetacumn.errors import InputError
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.particles import load_particles
from hetacumn.io.star import write_particles_star
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset


@pytest.fixture(scope="module")
def posed(tmp_path_factory):
    out = tmp_path_factory.mktemp("posed")
    simulate_dataset(SimulationConfig(n_images=40, box_size=16, pixel_size_angstrom=8.0, snr=10.0, shift_px=2.0,
                                      seed=4), out, overwrite=True)
    return out, read_pose_pickle(out / "truth" / "poses.pkl", 16)


def test_a_pose_file_in_another_order_with_more_particles_gives_each_particle_its_own_pose(posed, tmp_path):
    out, truth = posed
    plain = load_particles(out / "particles.star")
    subset = tmp_path / "subset.star"
    write_particles_star(subset, plain, poses=truth, indices=np.arange(10, 30))  # the particles trained on
    shuffled = np.random.default_rng(0).permutation(40)  # a refinement written in its own order
    refined = write_particles_star(tmp_path / "refined.star", plain, poses=truth, indices=shuffled)
    particles = load_particles(subset, poses=refined)
    assert np.abs(particles.poses.rotations - truth.rotations[10:30]).max() < 1e-5
    assert np.abs(particles.poses.shift_px - truth.shift_px[10:30]).max() < 1e-4


def test_a_pose_file_missing_particles_is_refused_by_name(posed, tmp_path):
    out, truth = posed
    plain = load_particles(out / "particles.star")
    refined = write_particles_star(tmp_path / "refined.star", plain, poses=truth, indices=np.arange(5, 40))
    with pytest.raises(InputError, match=r"has no pose for 5 of the 40 particles of .* \(matched by image name, "
                                         r"e\.g\. 1@particles\.mrcs\)"):
        load_particles(out / "particles.star", poses=refined)


def test_a_pose_file_naming_other_stacks_is_paired_by_order_when_the_counts_agree(posed, tmp_path):
    out, truth = posed
    plain = load_particles(out / "particles.star")
    refined = write_particles_star(tmp_path / "refined.star", plain, poses=truth)
    text = refined.read_text().replace("particles.mrcs", "shiny.mrcs")  # e.g. after Bayesian polishing
    assert text.count("shiny.mrcs") == 40
    refined.write_text(text)
    particles = load_particles(out / "particles.star", poses=refined)
    assert np.abs(particles.poses.rotations - truth.rotations).max() < 1e-5
