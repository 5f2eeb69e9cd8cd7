"""Reading every STAR file of the interop fixtures, against values in the files and mrcfile reads."""

from __future__ import annotations

import warnings

import mrcfile
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from hetacumn.io.particles import load_particles


def _mrcfile_images(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.open(path, permissive=True) as mrc:
            return np.array(mrc.data, dtype=np.float32)


def _scipy_pose(rot_deg, tilt_deg, psi_deg):
    """The conventions' reference: A = Rotation.from_euler('ZYZ', ...).as_matrix().T."""
    angles = np.stack([rot_deg, tilt_deg, psi_deg], axis=-1)
    return Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix().transpose(0, 2, 1)


def test_relion31_block_order_does_not_matter(interop_dir):
    a = load_particles(interop_dir / "relion31.star")
    b = load_particles(interop_dir / "relion31.v2.star")
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.optics, b.optics)
    np.testing.assert_array_equal(a.poses.rotations, b.poses.rotations)
    np.testing.assert_array_equal(a.ctf.numpy()["defocus_u_angstrom"], b.ctf.numpy()["defocus_u_angstrom"])
    assert len(a) == 5 and a.format_name.startswith("RELION 3.1")


def test_relion31_values_and_images(interop_dir):
    particles = load_particles(interop_dir / "relion31.star")
    assert particles.box_size == 256
    np.testing.assert_array_equal(particles.pixel_size_angstrom, np.full(5, 2.806))
    ctf = particles.ctf.numpy()
    assert ctf["defocus_u_angstrom"][0] == pytest.approx(13108.082418)
    assert ctf["defocus_v_angstrom"][0] == pytest.approx(12845.582418)
    assert ctf["defocus_angle_deg"][0] == pytest.approx(-160.39)
    assert (ctf["voltage_kv"][0], ctf["spherical_aberration_mm"][0], ctf["amplitude_contrast"][0]) == (300.0, 0.01, 0.1)
    np.testing.assert_allclose(particles.poses.shift_px[0], np.array([0.019324, -0.64686]) / 2.806)
    images = particles.images.read(np.arange(5))
    assert images.shape == (5, 256, 256) and images.dtype == np.float32
    np.testing.assert_array_equal(images, _mrcfile_images(interop_dir / "relion31.mrcs"))
    np.testing.assert_array_equal(particles.images.read(np.array([3, 1])), images[[3, 1]])


@pytest.mark.parametrize("name", ["relion31.star", "relion5.star"])
def test_star_poses_follow_relion_euler_convention(interop_dir, name):
    particles = load_particles(interop_dir / name, allow_missing_stacks=True)
    table = particles.table
    expected = _scipy_pose(table["rlnAngleRot"], table["rlnAngleTilt"], table["rlnAnglePsi"])
    np.testing.assert_allclose(particles.poses.rotations, expected, atol=1e-12)


def test_relion5_optics_and_particles(interop_dir):
    particles = load_particles(interop_dir / "relion5.star", datadir=interop_dir / "toy_datadir")
    assert len(particles) == 17
    optics = particles.optics.iloc[0]
    assert optics["rlnCtfDataAreCtfPremultiplied"] == 0 and not particles.ctf_premultiplied
    assert (optics["rlnVoltage"], optics["rlnImageSize"], optics["rlnBeamTiltX"]) == (100.0, 448, 0.043489)
    assert optics["rlnMagMat00"] == pytest.approx(1.001833)
    np.testing.assert_array_equal(particles.pixel_size_angstrom, np.full(17, 0.89))
    ctf = particles.ctf.numpy()
    assert (ctf["voltage_kv"][0], ctf["spherical_aberration_mm"][0]) == (100.0, 1.6)
    assert ctf["defocus_u_angstrom"][0] == pytest.approx(11949.061330)
    np.testing.assert_allclose(particles.poses.shift_px[0], np.array([-3.12578, -1.41031]) / 0.89)
    # Images come from toy_datadir (the stacks are not beside the STAR): 3@toy_images_a.mrcs is row 2.
    expected = _mrcfile_images(interop_dir / "toy_datadir" / "toy_images_a.mrcs")[2]
    np.testing.assert_array_equal(particles.images.read(np.array([2]))[0], expected)


def test_relion5_without_datadir_reports_missing_stacks(interop_dir):
    particles = load_particles(interop_dir / "relion5.star", allow_missing_stacks=True)
    assert sorted(p.name for p in particles.images.missing_files) == ["toy_images_a.mrcs", "toy_images_b.mrcs"]
    assert particles.box_size == 448  # from rlnImageSize when no stack can be opened


def test_relion30_pixel_size_and_pixel_origins(interop_dir):
    particles = load_particles(interop_dir / "FinalRefinement-OriginalParticles-PfCRT.star", allow_missing_stacks=True)
    assert particles.format_name.startswith("RELION 3.0") and len(particles) == 5
    np.testing.assert_allclose(particles.pixel_size_angstrom, np.full(5, 1.035 * 1e4 / 10000))
    np.testing.assert_allclose(particles.poses.shift_px[:2], [[-0.14063, -0.04688], [-0.14062, 0.046875]])
    expected = _scipy_pose(np.array([16.093530]), np.array([86.352776]), np.array([98.225690]))
    np.testing.assert_allclose(particles.poses.rotations[:1], expected, atol=1e-12)
    assert particles.ctf is None and "rlnAmplitudeContrast" in particles.ctf_problem


def test_empiar_star_and_mrc(interop_dir):
    particles = load_particles(interop_dir / "empiar_10076_7.star")
    assert len(particles) == 7 and particles.box_size == 320
    np.testing.assert_allclose(particles.pixel_size_angstrom, np.full(7, 5 * 1e4 / 38168))
    np.testing.assert_allclose(particles.ctf.numpy()["defocus_u_angstrom"][[0, 6]], [15301.1, 15177.4])
    assert particles.poses is None
    np.testing.assert_array_equal(particles.images.read(np.arange(7)), _mrcfile_images(interop_dir / "empiar_10076_7.mrc"))


def test_toy_star_txt_and_mrcs_give_the_same_images(interop_dir):
    loaded = [load_particles(interop_dir / f"toy_projections.{ext}") for ext in ("star", "txt", "mrcs")]
    reference = _mrcfile_images(interop_dir / "toy_projections.mrcs")
    for particles in loaded:
        assert len(particles) == 1000 and particles.box_size == 30
        np.testing.assert_array_equal(particles.pixel_size_angstrom, np.ones(1000))  # from the stack header
        np.testing.assert_array_equal(particles.images.read(np.arange(1000)), reference)
    ctf = loaded[0].ctf.numpy()
    assert (ctf["phase_shift_deg"][0], ctf["voltage_kv"][0], ctf["amplitude_contrast"][0]) == (90.0, 300.0, 0.1)
    assert loaded[1].ctf is None and loaded[2].ctf is None


def test_toy_13_subset_with_optics(interop_dir):
    particles = load_particles(interop_dir / "toy_projections_13.star")
    rows = np.array([93, 32, 4, 5, 523, 556, 230, 875, 685, 321, 598, 155, 321]) - 1
    assert len(particles) == 13
    np.testing.assert_array_equal(particles.pixel_size_angstrom, np.full(13, 1.035))
    reference = _mrcfile_images(interop_dir / "toy_projections.mrcs")
    np.testing.assert_array_equal(particles.images.read(np.arange(13)), reference[rows])


def test_toy_dir_through_datadir_is_a_permutation_of_the_toy_images(interop_dir):
    particles = load_particles(interop_dir / "toy_projections_dir.star", datadir=interop_dir / "toy_datadir")
    assert len(particles) == 1000 and len(particles.images.stack_paths) == 2
    images = particles.images.read(np.arange(1000)).reshape(1000, -1).astype(np.float64)
    reference = _mrcfile_images(interop_dir / "toy_projections.mrcs").reshape(1000, -1).astype(np.float64)
    distances = (images**2).sum(1)[:, None] - 2 * images @ reference.T + (reference**2).sum(1)[None]
    match = distances.argmin(1)
    assert np.abs(images - reference[match]).max() == 0.0
    assert len(np.unique(match)) == 1000
