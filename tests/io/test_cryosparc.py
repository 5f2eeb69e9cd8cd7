"""cryoSPARC .cs files: reproduce cryoDRGN's parse (pose.cs.pkl, ctf2.pkl) and the raw fields."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from hetacumn.errors import InputError
from hetacumn.io.particles import load_particles

P12 = "cryosparc_P12_J24_001_particles.cs"


def _pickle(path):
    with open(path, "rb") as handle:
        return pickle.load(handle)


def test_cs_poses_reproduce_cryodrgn_pose_pickle(interop_dir):
    particles = load_particles(interop_dir / P12, allow_missing_stacks=True)
    rot, trans = _pickle(interop_dir / "pose.cs.pkl")
    assert len(particles) == 2019 and particles.box_size == 180
    np.testing.assert_allclose(particles.poses.rotations, rot, atol=1e-5)
    np.testing.assert_allclose(particles.poses.shift_px, trans * 180, atol=1e-5)
    assert np.abs(particles.poses.shift_px).max() > 5  # the comparison is not between zeros


def test_cs_ctf_reproduces_cryodrgn_ctf_pickle(interop_dir):
    particles = load_particles(interop_dir / P12, allow_missing_stacks=True)
    expected = _pickle(interop_dir / "ctf2.pkl").astype(np.float64)
    ctf = particles.ctf.numpy()
    columns = [
        np.full(len(particles), particles.box_size),
        particles.pixel_size_angstrom,
        ctf["defocus_u_angstrom"],
        ctf["defocus_v_angstrom"],
        ctf["defocus_angle_deg"],
        ctf["voltage_kv"],
        ctf["spherical_aberration_mm"],
        ctf["amplitude_contrast"],
        ctf["phase_shift_deg"],
    ]
    np.testing.assert_allclose(np.stack(columns, axis=1), expected, rtol=1e-6, atol=1e-4)
    assert expected[0, 4] == pytest.approx(-78.131096, abs=1e-4)  # radians converted to degrees


def test_cs_stacks_missing_are_listed_not_fatal(interop_dir):
    particles = load_particles(interop_dir / P12, allow_missing_stacks=True)
    assert len(particles.images.stack_paths) == 50 and len(particles.images.missing_files) == 50
    with pytest.raises(InputError, match="stack file not found"):
        particles.images.read(np.array([0]))
    with pytest.raises(InputError, match="J19/extract/.*particles.mrc: stack file not found"):
        load_particles(interop_dir / P12)


def test_exported_cs_with_leading_gt_and_2d_alignments(interop_dir):
    raw = np.load(interop_dir / "cryosparc_J2_particles_exported.cs")
    particles = load_particles(interop_dir / "cryosparc_J2_particles_exported.cs", allow_missing_stacks=True)
    assert len(particles) == 22 and particles.box_size == 300
    np.testing.assert_allclose(particles.pixel_size_angstrom, raw["blob/psize_A"].astype(np.float64))
    assert particles.pixel_size_angstrom[0] == pytest.approx(1.345, abs=1e-6)
    assert particles.ctf.numpy()["defocus_u_angstrom"][0] == pytest.approx(float(raw["ctf/df1_A"][0]))
    assert particles.ctf.numpy()["defocus_angle_deg"][0] == pytest.approx(np.rad2deg(float(raw["ctf/df_angle_rad"][0])))
    assert particles.poses is None  # 2D alignments only
    missing = particles.images.missing_files
    assert [p.name for p in missing] == ["000090334788266266069_18jam15b_0345_ali_DW.mrcs"]
    assert missing[0].parent.name == "imported" and ">" not in str(missing[0])
    assert particles.notes["blob/sign (not applied)"] == "-1"


def test_empiar_cs_matches_its_star(interop_dir):
    raw = np.load(interop_dir / "empiar_10076_7.cs")
    from_cs = load_particles(interop_dir / "empiar_10076_7.cs")
    from_star = load_particles(interop_dir / "empiar_10076_7.star")
    assert len(from_cs) == 7 and from_cs.box_size == 320
    np.testing.assert_allclose(from_cs.pixel_size_angstrom, raw["blob/psize_A"].astype(np.float64))
    np.testing.assert_allclose(from_cs.pixel_size_angstrom, from_star.pixel_size_angstrom, rtol=1e-6)
    cs_ctf, star_ctf = from_cs.ctf.numpy(), from_star.ctf.numpy()
    np.testing.assert_allclose(cs_ctf["defocus_u_angstrom"], raw["ctf/df1_A"].astype(np.float64))
    np.testing.assert_allclose(cs_ctf["defocus_u_angstrom"], star_ctf["defocus_u_angstrom"], rtol=1e-6)
    np.testing.assert_allclose(cs_ctf["defocus_angle_deg"], star_ctf["defocus_angle_deg"], atol=1e-4)
    np.testing.assert_array_equal(from_cs.images.read(np.arange(7)), from_star.images.read(np.arange(7)))


def test_cs_without_blob_fields_is_refused(tmp_path):
    path = tmp_path / "bad.cs"
    records = np.zeros(3, dtype=[("uid", "<u8"), ("ctf/df1_A", "<f4")])
    with open(path, "wb") as handle:
        np.save(handle, records)
    with pytest.raises(InputError, match="no blob/path or blob/idx field") as error:
        load_particles(path)
    assert error.value.path == str(path)
    path.write_bytes(b"garbage")
    with pytest.raises(InputError, match="unreadable cryoSPARC .cs file"):
        load_particles(path)
