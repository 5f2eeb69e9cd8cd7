"""Class subsets: exact partitions, STAR round trips to the same images and poses, selection."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from hetacumn.analysis.subsets import class_indices, read_labels, select_classes, write_class_subsets
from hetacumn.errors import InputError
from hetacumn.io.particles import load_particles


def test_class_indices_partition_the_particles():
    labels = np.random.default_rng(0).integers(0, 5, size=1000)
    parts = class_indices(labels)
    joined = np.concatenate(parts)
    assert len(parts) == 5 and len(joined) == 1000
    assert np.array_equal(np.sort(joined), np.arange(1000))  # union = all, and no index twice
    for k, part in enumerate(parts):
        assert part.dtype == np.int64 and np.all(labels[part] == k) and np.all(np.diff(part) > 0)


def test_select_invert_is_the_complement():
    labels = np.random.default_rng(1).integers(0, 6, size=500)
    kept = select_classes(labels, [1, 4])
    dropped = select_classes(labels, [4, 1], invert=True)
    assert len(kept) == np.isin(labels, [1, 4]).sum()
    assert len(np.intersect1d(kept, dropped)) == 0
    assert np.array_equal(np.union1d(kept, dropped), np.arange(500))
    with pytest.raises(InputError, match="class 9 not found"):
        select_classes(labels, [9])


def test_star_subsets_round_trip_images_and_poses(sim_dataset, tmp_path):
    particles = load_particles(sim_dataset / "particles.star", poses=sim_dataset / "truth" / "poses.pkl")
    labels = np.load(sim_dataset / "truth" / "labels.npy")
    written = write_class_subsets(tmp_path / "subsets", particles, labels)
    assert [w["n_particles"] for w in written] == np.bincount(labels).tolist()
    seen = []
    for entry in written:
        indices = pickle.load(open(entry["indices"], "rb"))
        assert indices.dtype == np.int64 and np.all(labels[indices] == entry["class"])
        subset = load_particles(entry["star"])
        assert len(subset) == len(indices)
        assert np.array_equal(subset.images.read(np.arange(len(subset))), particles.images.read(indices))
        assert np.abs(subset.poses.rotations - particles.poses.rotations[indices]).max() < 1e-5
        assert np.abs(subset.poses.shift_px - particles.poses.shift_px[indices]).max() < 1e-4
        assert np.allclose(subset.ctf.defocus_u_angstrom.numpy(), particles.ctf.defocus_u_angstrom.numpy()[indices])
        assert np.allclose(subset.pixel_size_angstrom, particles.pixel_size_angstrom[indices])
        seen.append(indices)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(len(particles)))


def test_read_labels_rejects_wrong_length(tmp_path):
    path = tmp_path / "labels.npy"
    np.save(path, np.arange(10))
    assert np.array_equal(read_labels(path, 10), np.arange(10))
    with pytest.raises(InputError, match="10 labels but 12 particles"):
        read_labels(path, 12)
