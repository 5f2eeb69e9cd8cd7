"""``hetacumn reconstruct`` with the true poses of a simulated dataset recovers the true volume."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

from hetacumn.cli.main import main
from hetacumn.io.mrc import read_mrc
from hetacumn.metrics.fsc import fourier_shell_correlation
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset

PIXEL_SIZE_ANGSTROM = 3.0
NYQUIST = 0.5  # cycles/px


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """1000 noiseless 32-px images of one conformation, with CTF and shifts up to 2 px."""
    out = tmp_path_factory.mktemp("sim") / "sim"
    config = SimulationConfig(n_images=1000, box_size=32, pixel_size_angstrom=PIXEL_SIZE_ANGSTROM, snr=float("inf"),
                              proportions=[1.0], shift_px=2.0, seed=5)
    simulate_dataset(config, out, device="cpu")
    return out


def _fsc_to_truth(dataset, volume_path):
    """FSC of ``volume_path`` with the true volume: (frequencies in cycles/px, curve), and the voxel size."""
    volume, voxel_size_angstrom = read_mrc(volume_path)
    truth, _ = read_mrc(dataset / "truth" / "vol_000.mrc")
    freqs_px, fsc = fourier_shell_correlation(volume, truth)
    return np.asarray(freqs_px), np.asarray(fsc), voxel_size_angstrom


def _reconstruct(dataset, output, poses, *extra) -> int:
    argv = ["reconstruct", dataset / "particles.star", "--poses", poses, "-o", output, "--device", "cpu", *extra]
    return main([str(arg) for arg in argv])


def test_true_poses_recover_the_volume(dataset, tmp_path, capsys):
    output = tmp_path / "vol.mrc"
    assert _reconstruct(dataset, output, dataset / "truth" / "poses.pkl", "--half-maps") == 0
    freqs_px, fsc, voxel_size_angstrom = _fsc_to_truth(dataset, output)
    assert voxel_size_angstrom == pytest.approx(PIXEL_SIZE_ANGSTROM)
    assert fsc[(freqs_px > 0) & (freqs_px <= 0.8 * NYQUIST)].min() > 0.9
    match = re.search(r"half-map FSC=0.143 resolution: ([\d.]+) px = ([\d.]+) Å", capsys.readouterr().out)
    assert match is not None
    res_px, res_angstrom = float(match[1]), float(match[2])
    assert 2.0 <= res_px < 3.0
    assert res_angstrom == pytest.approx(res_px * PIXEL_SIZE_ANGSTROM, abs=0.01)
    for half in "ab":
        freqs_px, fsc, _ = _fsc_to_truth(dataset, tmp_path / f"vol_half_{half}.mrc")
        assert fsc[(freqs_px > 0) & (freqs_px <= 0.8 * NYQUIST)].min() > 0.95


def test_transposed_rotations_do_not(dataset, tmp_path):
    with open(dataset / "truth" / "poses.pkl", "rb") as handle:
        rotations, trans = pickle.load(handle)
    transposed = tmp_path / "transposed.pkl"
    with open(transposed, "wb") as handle:
        pickle.dump((np.ascontiguousarray(np.swapaxes(rotations, -1, -2)), trans), handle)
    assert _reconstruct(dataset, tmp_path / "wrong.mrc", transposed) == 0
    freqs_px, fsc, _ = _fsc_to_truth(dataset, tmp_path / "wrong.mrc")
    band = (freqs_px >= 0.1) & (freqs_px <= 0.8 * NYQUIST)
    assert fsc[band].mean() < 0.6  # about 0.46, against > 0.99 with the true rotations
