"""cryoDRGN pose and CTF pickles: fixtures read, round trips, overrides in load_particles, bad pickles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hetacumn.errors import InputError
from hetacumn.io.cryodrgn import read_ctf_pickle, read_pose_pickle, write_ctf_pickle, write_pose_pickle
from hetacumn.io.particle_set import PoseTable
from hetacumn.io.particles import load_particles
from hetacumn.physics.ctf import CTFParams
from hetacumn.physics.rotations import geodesic_distance_rad, random_rotations


def _raw(path):
    with open(path, "rb") as handle:
        return pickle.load(handle)


def _dump(path, content):
    with open(path, "wb") as handle:
        pickle.dump(content, handle)
    return path


def test_fixture_pose_pickles(interop_dir):
    rot, trans = _raw(interop_dir / "toy_rot_trans.pkl")
    poses = read_pose_pickle(interop_dir / "toy_rot_trans.pkl", box_size=30)
    np.testing.assert_array_equal(poses.rotations, rot.astype(np.float64))
    np.testing.assert_allclose(poses.shift_px, trans * 30)
    assert np.abs(poses.shift_px).max() == pytest.approx(30 * 0.15605044937235193)
    for name, count in [("toy_angles.pkl", 1000), ("hand_rot.pkl", 100)]:
        poses = read_pose_pickle(interop_dir / name, box_size=64)
        assert len(poses) == count and np.abs(poses.shift_px).max() == 0.0
        np.testing.assert_array_equal(poses.rotations, _raw(interop_dir / name).astype(np.float64))
        # Proper rotations: orthonormal with determinant +1.
        np.testing.assert_allclose(poses.rotations @ poses.rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (count, 3, 3)), atol=1e-5)
        np.testing.assert_allclose(np.linalg.det(poses.rotations), 1.0, atol=1e-5)


def test_pose_pickle_round_trip(tmp_path):
    rotations = random_rotations(50, torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    shift_px = np.random.default_rng(3).uniform(-8, 8, size=(50, 2))
    path = write_pose_pickle(tmp_path / "poses.pkl", PoseTable(rotations, shift_px), box_size=64)
    rot, trans = _raw(path)
    assert rot.dtype == np.float32 and np.abs(trans).max() <= 8 / 64
    back = read_pose_pickle(path, box_size=64)
    angle = geodesic_distance_rad(torch.from_numpy(rotations), torch.from_numpy(back.rotations))
    assert angle.max().item() < 1e-6
    np.testing.assert_allclose(back.shift_px, shift_px, atol=1e-5)
    with pytest.raises(InputError, match="exists"):
        write_pose_pickle(path, back, box_size=64)


def test_ctf_pickle_matches_fixture_and_round_trips(interop_dir, tmp_path):
    table = _raw(interop_dir / "ctf2.pkl")
    ctf, box_size, pixel_size = read_ctf_pickle(interop_dir / "ctf2.pkl")
    assert (box_size, len(ctf)) == (180, 2019)
    np.testing.assert_allclose(pixel_size, table[:, 1].astype(np.float64))
    np.testing.assert_array_equal(ctf.numpy()["defocus_angle_deg"], table[:, 4].astype(np.float64))
    np.testing.assert_array_equal(ctf.numpy()["bfactor_angstrom2"], np.zeros(2019))
    path = write_ctf_pickle(tmp_path / "ctf.pkl", ctf, box_size, pixel_size)
    np.testing.assert_array_equal(_raw(path), table)
    again, again_box, again_px = read_ctf_pickle(path)
    assert again_box == 180
    for name, values in ctf.numpy().items():
        np.testing.assert_array_equal(again.numpy()[name], values)


def test_pickles_override_in_load_particles(interop_dir, tmp_path):
    ctf = CTFParams.from_numpy(defocus_u_angstrom=np.linspace(1e4, 2e4, 1000), defocus_v_angstrom=1.1e4,
                               defocus_angle_deg=30.0, voltage_kv=300.0, spherical_aberration_mm=2.7,
                               amplitude_contrast=0.07, phase_shift_deg=0.0)
    ctf_path = write_ctf_pickle(tmp_path / "ctf.pkl", ctf, 30, 1.5)
    particles = load_particles(interop_dir / "toy_projections.mrcs", poses=interop_dir / "toy_rot_trans.pkl", ctf=ctf_path)
    rot, trans = _raw(interop_dir / "toy_rot_trans.pkl")
    np.testing.assert_allclose(particles.poses.shift_px, trans * 30)
    np.testing.assert_array_equal(particles.pixel_size_angstrom, np.full(1000, 1.5))
    assert particles.require_ctf().numpy()["defocus_u_angstrom"][-1] == pytest.approx(2e4, rel=1e-6)


def test_bad_pose_pickles(interop_dir, tmp_path):
    wrong_length = _dump(tmp_path / "three.pkl", (np.tile(np.eye(3), (3, 1, 1)), np.zeros((3, 2))))
    with pytest.raises(InputError, match="3 poses but 5 particles") as error:
        load_particles(interop_dir / "relion31.star", poses=wrong_length)
    assert error.value.path == str(wrong_length)
    pixels = _dump(tmp_path / "old.pkl", (np.tile(np.eye(3), (5, 1, 1)), np.full((5, 2), 12.0)))
    with pytest.raises(InputError, match="old format: translations look like pixels") as error:
        read_pose_pickle(pixels, 256)
    assert "old.pkl" in str(error.value)
    with pytest.raises(InputError, match=r"rotations should be \(N, 3, 3\)"):
        read_pose_pickle(_dump(tmp_path / "flat.pkl", np.zeros((5, 9))), 256)
    (tmp_path / "junk.pkl").write_bytes(b"\x00junk")
    with pytest.raises(InputError, match="unreadable pickle"):
        read_pose_pickle(tmp_path / "junk.pkl", 256)


def test_bad_ctf_pickles(interop_dir, tmp_path):
    with pytest.raises(InputError, match=r"expected an \(N, 9\) CTF array"):
        read_ctf_pickle(_dump(tmp_path / "eight.pkl", np.zeros((4, 8), np.float32)))
    short = _dump(tmp_path / "short.pkl", np.tile(np.array([[256, 2.806, 1e4, 1e4, 0, 300, 2.7, 0.1, 0]], np.float32), (4, 1)))
    with pytest.raises(InputError, match="4 CTF rows but 5 particles") as error:
        load_particles(interop_dir / "relion31.star", ctf=short)
    assert error.value.path == str(short)
