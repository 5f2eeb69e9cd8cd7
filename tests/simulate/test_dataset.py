"""simulate_dataset: what it writes, read back through hetacumn.io, checked against its ground truth."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import starfile
import torch

from hetacumn.errors import InputError
from hetacumn.io.mrc import read_mrc, write_mrc
from hetacumn.io.particles import load_particles
from hetacumn.physics.ctf import ctf_images
from hetacumn.physics.reconstruct import reconstruct_volume
from hetacumn.physics.render import render_images
from hetacumn.physics.shift import translate_images
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset
from hetacumn.simulate.volumes import toy_molecule

BOX, APIX = 32, 4.0
BASE = SimulationConfig(n_images=1200, box_size=BOX, pixel_size_angstrom=APIX, snr=float("inf"),
                        proportions=[0.3, 0.7], shift_px=3.0, seed=7)


def _fsc(volume_a: np.ndarray, volume_b: np.ndarray) -> np.ndarray:
    """FSC in one-voxel shells from 0 to Nyquist (shell s at s / D cycles/px)."""
    size = volume_a.shape[0]
    transforms = [np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(v))) for v in (volume_a, volume_b)]
    offsets = np.stack(np.indices(volume_a.shape)) - size // 2
    shells = np.rint(np.linalg.norm(offsets, axis=0)).astype(int).ravel()
    cross = np.bincount(shells, (transforms[0] * transforms[1].conj()).real.ravel())
    power = [np.bincount(shells, (np.abs(t) ** 2).ravel()) for t in transforms]
    return (cross / np.sqrt(power[0] * power[1]))[: size // 2 + 1]


def _simulate(tmp_path_factory, name: str, **changes):
    config = dataclasses.replace(BASE, **changes)
    out = tmp_path_factory.mktemp(name)
    return out, simulate_dataset(config, out, overwrite=True)


def _load_pickle(path):
    with open(path, "rb") as handle:
        return pickle.load(handle)


def _images(out) -> np.ndarray:
    particles = load_particles(out / "particles.star")
    return particles.images.read(np.arange(len(particles)))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return _simulate(tmp_path_factory, "clean")


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return _simulate(tmp_path_factory, "noisy", snr=0.1)


def test_reconstruction_with_true_poses_recovers_each_volume(clean):
    out, _ = clean
    particles = load_particles(out / "particles.star", poses=out / "truth" / "poses.pkl")
    ctf = ctf_images(particles.require_ctf(), BOX, torch.from_numpy(particles.pixel_size_angstrom)).float()
    images = torch.from_numpy(particles.images.read(np.arange(len(particles))))
    rotations = torch.from_numpy(particles.poses.rotations).float()
    shift_px = torch.from_numpy(particles.poses.shift_px).float()
    labels = np.load(out / "truth" / "labels.npy")
    truths = [read_mrc(out / "truth" / f"vol_{k:03d}.mrc")[0] for k in (0, 1)]
    assert read_mrc(out / "truth" / "vol_000.mrc")[1] == pytest.approx(APIX)
    np.testing.assert_allclose(truths[1], toy_molecule(BOX, APIX, 1.0))
    for k in (0, 1):
        keep = torch.from_numpy(labels == k)
        volume = reconstruct_volume(images[keep], rotations[keep], ctf[keep], shift_px[keep]).numpy()
        fsc_true = _fsc(volume, truths[k])
        assert fsc_true[: int(0.8 * BOX / 2) + 1].min() > 0.9
        assert _fsc(volume, truths[1 - k])[6:10].min() < 0.6  # the other class's volume does not fit


def test_star_holds_ctf_and_optics_but_no_poses_or_labels(clean):
    out, _ = clean
    blocks = starfile.read(out / "particles.star", always_dict=True)
    assert set(blocks) == {"optics", "particles"}
    particles = blocks["particles"]
    assert set(particles.columns) == {"rlnImageName", "rlnMicrographName", "rlnOpticsGroup", "rlnDefocusU",
                                      "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor",
                                      "rlnRandomSubset"}
    optics = blocks["optics"].iloc[0]
    assert (optics["rlnVoltage"], optics["rlnSphericalAberration"], optics["rlnAmplitudeContrast"]) == (300, 2.7, 0.1)
    assert (optics["rlnImagePixelSize"], optics["rlnImageSize"], optics["rlnImageDimensionality"]) == (APIX, BOX, 2)
    assert particles["rlnImageName"].iloc[0] == "000001@particles.mrcs"
    assert particles["rlnImageName"].iloc[-1] == f"{BASE.n_images:06d}@particles.mrcs"
    assert np.bincount(particles["rlnRandomSubset"])[1:].tolist() == [600, 600]
    truth_ctf = _load_pickle(out / "truth" / "ctf.pkl")
    np.testing.assert_allclose(particles["rlnDefocusU"], truth_ctf[:, 2], rtol=1e-6)
    np.testing.assert_allclose(particles["rlnDefocusAngle"], truth_ctf[:, 4], rtol=1e-5, atol=1e-4)
    assert truth_ctf[:, 2].min() >= 10000 and truth_ctf[:, 2].max() <= 25000
    assert np.abs(truth_ctf[:, 3] - truth_ctf[:, 2]).max() <= BASE.astigmatism_angstrom + 1e-2


def test_measured_snr_matches_the_target(clean, noisy):
    noise = _images(noisy[0]) - _images(clean[0])
    signal_variance = _images(clean[0]).var(dtype=np.float64)
    assert signal_variance == pytest.approx(noisy[1]["signal_variance"], rel=1e-4)
    assert signal_variance / noise.var(dtype=np.float64) == pytest.approx(0.1, rel=0.1)
    assert abs(noise.mean(dtype=np.float64)) < 0.01 * noise.std()


def test_class_proportions_within_binomial_tolerance(clean):
    out, summary = clean
    labels = np.load(out / "truth" / "labels.npy")
    count = BASE.n_images
    tolerance = 4 * np.sqrt(count * 0.3 * 0.7)
    assert abs(np.sum(labels == 0) - 0.3 * count) < tolerance
    assert summary["class_counts"] == np.bincount(labels).tolist()
    np.testing.assert_array_equal(np.load(out / "truth" / "states.npy"), labels.astype(float))


def test_uniform_shifts_fill_the_extent(clean):
    shift_px = _load_pickle(clean[0] / "truth" / "poses.pkl")[1] * BOX
    assert np.abs(shift_px).max() <= 3.0 + 1e-5
    assert np.abs(shift_px).max() > 2.95
    np.testing.assert_allclose(shift_px.std(axis=0), 3.0 / np.sqrt(3), rtol=0.1)


def test_gaussian_shifts_have_the_extent_as_deviation(tmp_path_factory):
    out, _ = _simulate(tmp_path_factory, "gauss", n_images=1500, shift_distribution="gaussian", shift_px=2.0)
    shift_px = _load_pickle(out / "truth" / "poses.pkl")[1] * BOX
    np.testing.assert_allclose(shift_px.std(axis=0), 2.0, rtol=0.1)
    assert np.abs(shift_px).max() <= 6.0 + 1e-5


def test_images_are_the_centred_images_moved_by_minus_the_true_shift(tmp_path_factory):
    """Same seed with and without shifts: image = T(-shift_px)[centred image], shift_px from the truth."""
    centred, _ = _simulate(tmp_path_factory, "centred", n_images=40, shift_px=0.0)
    shifted, _ = _simulate(tmp_path_factory, "shifted", n_images=40, shift_px=3.0)
    shift_px = torch.from_numpy(_load_pickle(shifted / "truth" / "poses.pkl")[1] * BOX).double()
    expected = translate_images(torch.from_numpy(_images(centred)).double(), -shift_px)
    actual = torch.from_numpy(_images(shifted)).double()
    assert float(torch.linalg.norm(actual - expected) / torch.linalg.norm(actual)) < 1e-3  # float32 files
    wrong_sign = translate_images(torch.from_numpy(_images(centred)).double(), shift_px)
    assert float(torch.linalg.norm(actual - wrong_sign) / torch.linalg.norm(actual)) > 0.3


def test_same_seed_reproduces_bit_exactly_and_another_seed_differs(tmp_path_factory):
    runs = [_simulate(tmp_path_factory, f"seed{i}", n_images=30, snr=0.5, seed=seed)[0]
            for i, seed in enumerate((5, 5, 6))]
    for name in ("particles.mrcs", "truth/poses.pkl", "truth/ctf.pkl", "truth/labels.npy"):
        first, second = ((run / name).read_bytes() for run in runs[:2])
        if name.endswith(".mrcs"):  # the header's text labels (bytes 224-1023) carry mrcfile's time stamp
            first, second = first[:224] + first[1024:], second[:224] + second[1024:]
        assert first == second
    images = [_images(run) for run in runs]
    assert np.corrcoef(images[0].ravel(), images[2].ravel())[0, 1] < 0.2
    rotations = [_load_pickle(run / "truth" / "poses.pkl")[0] for run in (runs[0], runs[2])]
    assert np.abs(rotations[0] - rotations[1]).max() > 0.5


def test_continuous_builtin_images_show_the_molecule_at_their_true_state(tmp_path_factory):
    out, summary = _simulate(tmp_path_factory, "continuous", n_images=400, continuous=True, proportions=None)
    states, labels = np.load(out / "truth" / "states.npy"), np.load(out / "truth" / "labels.npy")
    assert summary["n_volumes"] == 11
    assert abs(states.mean() - 0.5) < 0.05 and states.min() < 0.02 and states.max() > 0.98
    np.testing.assert_array_equal(labels, np.rint(states * 10))
    np.testing.assert_allclose(read_mrc(out / "truth" / "vol_005.mrc")[0], toy_molecule(BOX, APIX, 0.5))
    particles = load_particles(out / "particles.star", poses=out / "truth" / "poses.pkl")
    images = particles.images.read(np.arange(6))
    ctf = ctf_images(particles.ctf[np.arange(6)], BOX, APIX).float()
    for i in range(6):
        expected = render_images(torch.from_numpy(toy_molecule(BOX, APIX, float(states[i]))),
                                 torch.from_numpy(particles.poses.rotations[i : i + 1]).float(), ctf[i : i + 1],
                                 torch.from_numpy(particles.poses.shift_px[i : i + 1]).float())[0].numpy()
        assert np.linalg.norm(images[i] - expected) / np.linalg.norm(expected) < 0.03


def test_continuous_mode_interpolates_given_volumes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maps")
    maps = [write_mrc(folder / f"state{s}.mrc", toy_molecule(BOX, APIX, s), APIX) for s in (0.0, 1.0)]
    out, _ = _simulate(tmp_path_factory, "interpolated", n_images=20, continuous=True, proportions=None,
                       volumes=[str(p) for p in maps], shift_px=0.0)
    states = np.load(out / "truth" / "states.npy")
    particles = load_particles(out / "particles.star", poses=out / "truth" / "poses.pkl")
    rotations = torch.from_numpy(particles.poses.rotations).float()
    ctf = ctf_images(particles.ctf, BOX, APIX).float()
    ends = [render_images(torch.from_numpy(toy_molecule(BOX, APIX, s)), rotations, ctf) for s in (0.0, 1.0)]
    weight = torch.from_numpy(states).float()[:, None, None]
    expected = ((1 - weight) * ends[0] + weight * ends[1]).numpy()
    images = particles.images.read(np.arange(20))
    assert np.linalg.norm(images - expected) / np.linalg.norm(expected) < 1e-4


def test_ctf_rows_are_copied_from_a_star(tmp_path_factory, interop_dir):
    out, _ = _simulate(tmp_path_factory, "ctf_from", n_images=50, ctf_from_star=str(interop_dir / "relion31.star"))
    source = starfile.read(interop_dir / "relion31.star", always_dict=True)
    simulated = starfile.read(out / "particles.star", always_dict=True)
    assert set(simulated["particles"]["rlnDefocusU"].round(2)) <= set(source["particles"]["rlnDefocusU"].round(2))
    assert len(set(simulated["particles"]["rlnDefocusU"].round(2))) > 1
    optics = simulated["optics"].iloc[0]
    assert (optics["rlnSphericalAberration"], optics["rlnImagePixelSize"]) == (pytest.approx(0.01), APIX)


@pytest.mark.parametrize("changes, problem", [
    ({"continuous": True}, "proportions do not apply"),
    ({"snr": 0.0}, "snr must be positive"),
    ({"shift_distribution": "cauchy"}, "shift distribution"),
    ({"box_size": 33}, "box size must be even"),
])
def test_bad_configs_are_refused(changes, problem):
    with pytest.raises(InputError, match=problem):
        dataclasses.replace(BASE, **changes)


def test_proportions_must_match_the_volumes(tmp_path):
    path = write_mrc(tmp_path / "one.mrc", toy_molecule(BOX, APIX, 0.0), APIX)
    config = dataclasses.replace(BASE, volumes=[str(path)])
    with pytest.raises(InputError, match="2 proportions for 1 volumes"):
        simulate_dataset(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()
