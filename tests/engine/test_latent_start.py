"""The latent start (data/variability.py, engine/latent_start.py): the residuals' main direction at known poses."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import torch

from hetacumn.data.images import ParticleImages
from hetacumn.data.variability import LatentDirection, residual_direction
from hetacumn.engine.run import infer_particles, train
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.mrc import read_mrc, write_mrc
from hetacumn.io.particles import load_particles
from hetacumn.metrics.latent import confusion_error
from hetacumn.physics.rotations import random_rotations
from hetacumn.tasks.explicit import with_known_latent

from .conftest import small_config


def _agreement(coordinates: torch.Tensor, labels: np.ndarray) -> float:
    split = (coordinates > coordinates.median()).numpy() == labels.astype(bool)
    return max(split.mean(), 1 - split.mean())


def test_the_residual_direction_splits_two_states_at_the_true_poses_and_not_at_random_ones(tiny_dataset):
    data = ParticleImages(load_particles(tiny_dataset / "particles.star"))
    truth = read_pose_pickle(tiny_dataset / "truth" / "poses.pkl", 32)
    labels = np.load(tiny_dataset / "truth" / "labels.npy")
    shifts = torch.from_numpy(truth.shift_px)
    _, _, coordinates = residual_direction(data, np.arange(len(data)),
                                           lambda i: (torch.from_numpy(truth.rotations[i]), shifts[i]))
    assert _agreement(coordinates, labels) > 0.95  # measured 0.984
    wrong = random_rotations(len(data), generator=torch.Generator().manual_seed(0)).double()
    _, _, coordinates = residual_direction(data, np.arange(len(data)), lambda i: (wrong[i], shifts[i]))
    assert _agreement(coordinates, labels) < 0.7  # measured 0.523: the poses carry the information


def test_the_split_ignores_each_particles_own_contrast(tiny_dataset, tmp_path):
    """Real particles differ in contrast (ASPIRE simulates that with amplitudes in [2/3, 3/2]): each image's
    amplitude is fitted against the consensus, so the direction follows the states, not the contrast."""
    labels = np.load(tiny_dataset / "truth" / "labels.npy")
    amplitudes = np.random.default_rng(5).uniform(2 / 3, 3 / 2, len(labels))
    images, pixel_size = read_mrc(tiny_dataset / "particles.mrcs")
    write_mrc(tmp_path / "particles.mrcs", images * amplitudes[:, None, None].astype(np.float32), pixel_size)
    shutil.copy(tiny_dataset / "particles.star", tmp_path / "particles.star")
    data = ParticleImages(load_particles(tmp_path / "particles.star"))
    truth = read_pose_pickle(tiny_dataset / "truth" / "poses.pkl", 32)
    rotations, shifts = torch.from_numpy(truth.rotations), torch.from_numpy(truth.shift_px)
    _, _, coordinates = residual_direction(data, np.arange(len(data)), lambda i: (rotations[i], shifts[i]))
    assert _agreement(coordinates, labels) > 0.97  # measured 0.984 (0.953 without the fitted amplitudes)
    assert abs(np.corrcoef(coordinates.numpy(), amplitudes)[0, 1]) < 0.25  # measured 0.11 (-0.45 without)


def test_a_direction_fitted_on_half_the_images_gives_the_other_half_their_coordinates(tiny_dataset):
    data = ParticleImages(load_particles(tiny_dataset / "particles.star"))
    truth = read_pose_pickle(tiny_dataset / "truth" / "poses.pkl", 32)
    labels = np.load(tiny_dataset / "truth" / "labels.npy")
    rotations, shifts = torch.from_numpy(truth.rotations), torch.from_numpy(truth.shift_px)
    fitted_on, others = np.arange(128), np.arange(128, 256)
    consensus, direction, fitted = residual_direction(data, fitted_on, lambda i: (rotations[i], shifts[i]))
    latent = LatentDirection.fitted(consensus, direction, fitted)
    again = latent.coordinates(data.batch(fitted_on, "cpu"), rotations[fitted_on], shifts[fitted_on])
    np.testing.assert_allclose(again, (fitted - fitted.mean()) / fitted.std(correction=0), atol=1e-4)
    new = latent.coordinates(data.batch(others, "cpu"), rotations[others], shifts[others])
    assert _agreement(new, labels[others]) > 0.9  # measured 0.961 (fitted on 128 images)
    assert abs(float(new.mean())) < 0.3 and abs(float(new.std()) - 1) < 0.3  # on the scale the decoder learned


def test_known_latent_entries_replace_the_encoders_and_nan_entries_keep_them():
    z = torch.arange(6.0).reshape(2, 3)
    known = torch.tensor([[10.0, float("nan"), float("nan")], [float("nan")] * 3])
    decoded, reported, sample, kl = with_known_latent((z, z + 1, z + 2, None), known)
    assert decoded.tolist() == [[10.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert reported.tolist() == [[10.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert sample[0, 0] == 10.0 and sample[1, 0] == 5.0 and kl is None


def _given_poses_run(tiny_dataset, outdir, start: bool, train_subset: int = 0, variability_images: int = 20_000):
    particles = load_particles(tiny_dataset / "particles.star", poses=tiny_dataset / "truth" / "poses.pkl")
    config = small_config("hetacumn", train_subset=train_subset)
    config.train = dataclasses.replace(config.train, epochs=5, batch_size=16, log_every_steps=200)
    config.task = dataclasses.replace(config.task, consensus_images=0, refine_steps=0, variability_start=start,
                                      variability_images=variability_images)
    config.data.poses = str(tiny_dataset / "truth" / "poses.pkl")
    outdir.mkdir()
    return train(config, particles, outdir)


def test_at_given_poses_the_latent_start_separates_two_states_in_five_epochs(tiny_dataset, tmp_path):
    labels = np.load(tiny_dataset / "truth" / "labels.npy")
    result = _given_poses_run(tiny_dataset, tmp_path / "start", start=True)
    held = np.load(tmp_path / "start" / "latent_start.npy")
    assert np.isfinite(held).all() and abs(held.mean()) < 1e-5 and abs(held.std() - 1) < 1e-3
    np.testing.assert_array_equal(result.z[:, 0], held)  # z.npy reports the trained images' held z[0]
    assert confusion_error(result.z, labels) < 0.05  # measured 0.0
    without = _given_poses_run(tiny_dataset, tmp_path / "plain", start=False)
    assert confusion_error(without.z, labels) > 0.3  # measured 0.48: z and the decoder start from nothing


def test_images_outside_the_trained_subset_and_in_infer_get_z0_along_the_checkpoints_direction(tiny_dataset, tmp_path):
    labels = np.load(tiny_dataset / "truth" / "labels.npy")
    result = _given_poses_run(tiny_dataset, tmp_path / "run", start=True, train_subset=128)
    held = np.load(tmp_path / "run" / "latent_start.npy")
    trained = np.isfinite(held)
    assert trained.sum() == 128
    np.testing.assert_array_equal(result.z[trained, 0], held[trained])
    assert confusion_error(result.z[~trained, :1], labels[~trained]) < 0.05  # measured 0.0
    particles = load_particles(tiny_dataset / "particles.star", poses=tiny_dataset / "truth" / "poses.pkl")
    inferred = infer_particles(tmp_path / "run" / "checkpoint.pt", particles, tmp_path / "infer", given_poses=True)
    np.testing.assert_array_equal(inferred.rotations, particles.poses.rotations)  # z at the given poses
    np.testing.assert_allclose(inferred.z[:, 0], result.z[:, 0], atol=1e-4)  # the checkpoint alone gives them
    assert confusion_error(inferred.z[:, :1], labels) < 0.05  # measured 0.0


def test_trained_images_beyond_those_the_direction_is_fitted_on_hold_their_projection(tiny_dataset, tmp_path):
    labels = np.load(tiny_dataset / "truth" / "labels.npy")
    result = _given_poses_run(tiny_dataset, tmp_path / "run", start=True, variability_images=128)
    held = np.load(tmp_path / "run" / "latent_start.npy")
    assert np.isfinite(held).all()  # 128 fitted, the other 128 projected
    np.testing.assert_array_equal(result.z[:, 0], held)
    assert confusion_error(held[:, None], labels) < 0.05  # measured 0.0


def test_resume_at_given_poses_keeps_the_latent_start_and_reproduces_the_next_step(tiny_dataset, tmp_path):
    from hetacumn.engine.trainer import Trainer

    particles = load_particles(tiny_dataset / "particles.star", poses=tiny_dataset / "truth" / "poses.pkl")
    config = small_config("hetacumn")
    config.task = dataclasses.replace(config.task, consensus_images=0, refine_steps=1)
    config.data.poses = str(tiny_dataset / "truth" / "poses.pkl")
    data = ParticleImages(particles)
    first = Trainer(config, data, tmp_path, particles.poses)
    batches = np.arange(128).reshape(4, 32)
    for batch in batches[:3]:
        first.train_step(batch)
        first.progress.update(steps_done=first.progress["steps_done"] + 1,
                              images_seen=first.progress["images_seen"] + 32)
    first.checkpoint()
    expected = first.train_step(batches[3])
    held = np.load(tmp_path / "latent_start.npy")
    np.save(tmp_path / "latent_start.npy", held[::-1].copy())  # a resumed run must use the file, not recompute
    resumed = Trainer(config, data, tmp_path, particles.poses)
    resumed.resume(tmp_path / "checkpoint.pt")
    assert resumed.train_step(batches[3]) != expected
    np.save(tmp_path / "latent_start.npy", held)
    again = Trainer(config, data, tmp_path, particles.poses)
    again.resume(tmp_path / "checkpoint.pt")
    assert again.train_step(batches[3]) == expected
    np.testing.assert_array_equal(again.latent_start, held)
