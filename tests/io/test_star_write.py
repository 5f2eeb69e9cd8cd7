"""Writing RELION 3.1 STAR files and reading them back: poses, shifts, CTF, images, optics, paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from hetacumn.errors import InputError
from hetacumn.io.mrc import write_mrc
from hetacumn.io.particle_set import PoseTable
from hetacumn.io.particles import load_particles
from hetacumn.io.star import write_particles_star
from hetacumn.physics.rotations import geodesic_distance_rad, random_rotations


def _max_angle_rad(a: np.ndarray, b: np.ndarray) -> float:
    return geodesic_distance_rad(torch.from_numpy(a), torch.from_numpy(b)).max().item()


def _assert_same_ctf(a, b, atol=1e-6):
    for name, values in a.numpy().items():
        np.testing.assert_allclose(b.numpy()[name], values, atol=atol, err_msg=name)


def test_relion31_round_trip_with_new_poses(interop_dir, tmp_path):
    particles = load_particles(interop_dir / "relion31.star")
    rotations = random_rotations(5, torch.Generator().manual_seed(7), dtype=torch.float64).numpy()
    shift_px = np.random.default_rng(7).uniform(-6, 6, size=(5, 2))
    out = write_particles_star(tmp_path / "out.star", particles, poses=PoseTable(rotations, shift_px))
    back = load_particles(out)
    assert _max_angle_rad(rotations, back.poses.rotations) < 1e-5
    np.testing.assert_allclose(back.poses.shift_px, shift_px, atol=1e-5)
    _assert_same_ctf(particles.ctf, back.ctf)
    np.testing.assert_array_equal(back.images.read(np.arange(5)), particles.images.read(np.arange(5)))
    pd.testing.assert_frame_equal(back.optics, particles.optics)
    for column in ("rlnCoordinateX", "rlnMicrographName", "rlnClassNumber", "rlnRandomSubset"):
        np.testing.assert_array_equal(back.table[column], particles.table[column])
    blocks = starfile.read(out, always_dict=True)
    assert list(blocks) == ["optics", "particles"]
    assert blocks["particles"]["rlnImageName"][0] == f"000001@{(interop_dir / 'relion31.mrcs').absolute().as_posix()}"
    with pytest.raises(InputError, match="exists"):
        write_particles_star(out, particles)


def test_subset_keeps_rows_in_order(interop_dir, tmp_path):
    particles = load_particles(interop_dir / "relion31.star")
    out = write_particles_star(tmp_path / "sub.star", particles, indices=np.array([4, 1]))
    back = load_particles(out)
    assert len(back) == 2
    assert _max_angle_rad(particles.poses.rotations[[4, 1]], back.poses.rotations) < 1e-5
    np.testing.assert_allclose(back.poses.shift_px, particles.poses.shift_px[[4, 1]], atol=1e-5)
    np.testing.assert_array_equal(back.images.read(np.arange(2)), particles.images.read(np.array([4, 1])))
    np.testing.assert_array_equal(back.table["rlnNrOfSignificantSamples"], particles.table["rlnNrOfSignificantSamples"][[4, 1]])


def _relion30_star(path, stack):
    rows = "\n".join(
        f"{i + 1}@{stack} 5.0 25000 {0.5 * i - 1.0} {2.0 - i} {10.0 * i} {20.0 + i} {-30.0 * i} {15000 + 100 * i} 14000 12.5 300 2.7 0.1"
        for i in range(4)
    )
    columns = ("ImageName DetectorPixelSize Magnification OriginX OriginY AngleRot AngleTilt AnglePsi DefocusU DefocusV "
               "DefocusAngle Voltage SphericalAberration AmplitudeContrast").split()
    path.write_text("data_\n\nloop_\n" + "\n".join(f"_rln{c}" for c in columns) + "\n" + rows + "\n")
    return path


def test_relion30_converts_to_optics_and_angstrom_origins(interop_dir, tmp_path):
    star30 = _relion30_star(tmp_path / "v30.star", (interop_dir / "toy_projections.mrcs").as_posix())
    particles = load_particles(star30)
    np.testing.assert_allclose(particles.pixel_size_angstrom, np.full(4, 2.0))  # 5 um * 1e4 / 25000
    np.testing.assert_allclose(particles.poses.shift_px[:, 0], [-1.0, -0.5, 0.0, 0.5])
    out = write_particles_star(tmp_path / "v31.star", particles)
    blocks = starfile.read(out, always_dict=True)
    assert blocks["optics"]["rlnImagePixelSize"].tolist() == [2.0]
    assert blocks["optics"]["rlnVoltage"].tolist() == [300.0]
    assert {"rlnOriginX", "rlnDetectorPixelSize", "rlnMagnification", "rlnVoltage"}.isdisjoint(blocks["particles"].columns)
    np.testing.assert_allclose(blocks["particles"]["rlnOriginXAngst"], [-2.0, -1.0, 0.0, 1.0], atol=1e-6)
    back = load_particles(out)
    np.testing.assert_allclose(back.poses.shift_px, particles.poses.shift_px, atol=1e-5)
    assert _max_angle_rad(particles.poses.rotations, back.poses.rotations) < 1e-5
    _assert_same_ctf(particles.ctf, back.ctf)


def test_cs_to_star(interop_dir, tmp_path):
    particles = load_particles(interop_dir / "empiar_10076_7.cs")
    back = load_particles(write_particles_star(tmp_path / "from_cs.star", particles))
    np.testing.assert_allclose(back.pixel_size_angstrom, particles.pixel_size_angstrom, atol=1e-6)
    _assert_same_ctf(particles.ctf, back.ctf, atol=1e-5)
    assert back.optics["rlnVoltage"].tolist() == [300.0] and back.poses is None
    np.testing.assert_array_equal(back.images.read(np.arange(7)), particles.images.read(np.arange(7)))


def test_stack_beside_the_star_is_referenced_relatively(tmp_path):
    images = np.random.default_rng(2).normal(size=(4, 16, 16)).astype(np.float32)
    write_mrc(tmp_path / "stacks" / "s.mrcs", images, 3.2)
    particles = load_particles(tmp_path / "stacks" / "s.mrcs")
    out = write_particles_star(tmp_path / "p.star", particles, indices=np.array([3, 0]))
    names = starfile.read(out, always_dict=True)["particles"]["rlnImageName"].tolist()
    assert names == ["000004@stacks/s.mrcs", "000001@stacks/s.mrcs"]
    back = load_particles(out)
    assert back.ctf is None and back.poses is None
    np.testing.assert_allclose(back.pixel_size_angstrom, [3.2, 3.2], atol=1e-6)
    np.testing.assert_array_equal(back.images.read(np.arange(2)), images[[3, 0]])
