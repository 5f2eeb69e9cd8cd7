"""A stack written by another program's simulator: ASPIRE 0.14.3 (tests/fixtures/aspire, see its README).

ASPIRE projects with its own NUFFT code, applies its own CTF and writes its own RELION 3.1 STAR. Read as an
ordinary RELION file, its poses are ASPIRE's (our rotation = ASPIRE's transposed, our shift_px = ASPIRE's
offsets) and its images backproject to the volume ASPIRE projected: the geometry, shift, CTF (astigmatism
angle included) and contrast conventions agree with a program that shares no code with ours.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import starfile
import torch

from hetacumn.cli.main import main
from hetacumn.data.contrast import DECISIVE_SCORE, particles_contrast_score
from hetacumn.io.mrc import read_mrc
from hetacumn.io.particles import load_particles
from hetacumn.metrics.fsc import fourier_shell_correlation
from hetacumn.physics.ctf import ctf_images
from hetacumn.physics.render import render_images
from tests.physics.helpers import image_correlation

ASPIRE = Path(__file__).resolve().parents[1] / "fixtures" / "aspire"


def _true_volume() -> np.ndarray:
    return read_mrc(ASPIRE / "truth" / "vol_000.mrc")[0].astype(np.float64)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _reconstruct(star: Path, out: Path, *flags: str) -> np.ndarray:
    assert main(["reconstruct", str(star), "-o", str(out), "--datadir", str(ASPIRE), *flags]) == 0
    volume, pixel_size = read_mrc(out)
    assert pixel_size == pytest.approx(5.0)
    return volume.astype(np.float64)


def test_aspire_poses_and_optics_are_read_as_aspire_set_them():
    particles = load_particles(ASPIRE / "particles.star")
    rotations = np.load(ASPIRE / "truth" / "aspire_rotations.npy")
    offsets_px = np.load(ASPIRE / "truth" / "aspire_offsets_px.npy")
    assert len(particles) == 300 and particles.box_size == 32
    np.testing.assert_allclose(particles.pixel_size_angstrom, 5.0)
    np.testing.assert_allclose(particles.poses.rotations, rotations.transpose(0, 2, 1), atol=1e-5)
    np.testing.assert_allclose(particles.poses.shift_px, offsets_px, atol=1e-4)
    table = starfile.read(ASPIRE / "particles.star")["particles"]
    np.testing.assert_allclose(particles.ctf.defocus_angle_deg.numpy(), table["rlnDefocusAngle"], atol=1e-4)
    assert float(particles.ctf.voltage_kv[0]) == 300.0
    assert float(particles.ctf.amplitude_contrast[0]) == pytest.approx(0.1)


def test_aspire_stack_backprojects_to_the_volume_aspire_projected(tmp_path):
    particles = load_particles(ASPIRE / "particles.star")
    assert particles_contrast_score(particles) < -DECISIVE_SCORE  # ASPIRE's CTF sign: dark particles
    volume = _reconstruct(ASPIRE / "particles.star", tmp_path / "map.mrc")  # --contrast auto negates the map
    truth = _true_volume()
    assert _correlation(volume, truth) > 0.98
    fsc = fourier_shell_correlation(volume, truth)[1]
    assert fsc[1:14].min() > 0.95  # to 14/32 of a cycle per px: the CTF's astigmatism and shifts are right
    negated = _reconstruct(ASPIRE / "particles.star", tmp_path / "as_is.mrc", "--contrast", "as-is")
    assert _correlation(negated, truth) < -0.98


def _render_correlations(particles, ctf) -> np.ndarray:
    """Per-image correlation of ASPIRE's images (negated: dark particles) with our rendering of its volume."""
    volume = torch.from_numpy(_true_volume())
    rendered = render_images(volume, torch.from_numpy(particles.poses.rotations).double(),
                             ctf=ctf_images(ctf, particles.box_size, 5.0).double(),
                             shift_px=torch.from_numpy(particles.poses.shift_px).double())
    images = -torch.from_numpy(particles.images.read(np.arange(len(particles)))).double()
    return image_correlation(rendered, images).numpy()


def test_every_aspire_image_is_our_forward_model_of_its_pose_and_ctf():
    """Image by image (the model training fits), and a mirrored astigmatism angle is seen."""
    particles = load_particles(ASPIRE / "particles.star")
    right = _render_correlations(particles, particles.ctf)
    assert np.median(right) > 0.999 and right.min() > 0.99
    mirrored = dataclasses.replace(particles.ctf, defocus_angle_deg=-particles.ctf.defocus_angle_deg)
    wrong = _render_correlations(particles, mirrored)
    assert wrong.min() < 0.97 and np.median(wrong) < np.median(right) - 0.005
