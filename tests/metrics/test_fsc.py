"""FSC against analytic cases: identity, independent noise, a Gaussian low-pass; resolution and AU-FSC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hetacumn.metrics.fsc import (
    au_fsc,
    fourier_shell_correlation,
    resolution_at,
    resolution_at_angstrom,
    shell_indices,
)
from hetacumn.physics.fourier import fft3_centered, ifft3_centered
from hetacumn.physics.grids import fourier_grid_3d

BOX = 48


def _noise(seed: int, box: int = BOX) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((box, box, box))


def _gaussian_lowpass(volume: np.ndarray, sigma_px: float) -> np.ndarray:
    """Multiply the spectrum by ``exp(-|k|^2 / (2 sigma^2))``, k in cycles/px."""
    k_sq = (fourier_grid_3d(volume.shape[0], dtype=torch.float64) ** 2).sum(-1)
    filtered = fft3_centered(torch.from_numpy(volume)) * torch.exp(-k_sq / (2 * sigma_px**2))
    return ifft3_centered(filtered).real.numpy()


def test_identical_volumes_correlate_in_every_shell():
    volume = np.random.default_rng(0).uniform(size=(BOX, BOX, BOX))
    freqs_px, fsc = fourier_shell_correlation(volume, volume)
    assert freqs_px.shape == (BOX // 2 + 1,)
    assert freqs_px[0] == 0.0 and freqs_px[-1] == 0.5
    np.testing.assert_allclose(fsc, 1.0, atol=1e-12)


def test_shells_are_one_voxel_wide():
    counts = torch.bincount(shell_indices(BOX).flatten()).numpy()
    assert counts[0] == 1 and counts[1] == 6 + 12  # |k| = 1 and sqrt(2) round to 1, sqrt(3) to 2
    # Shells 0..s fill a ball of radius s + 1/2.
    radius = np.arange(8, BOX // 2) + 0.5
    np.testing.assert_allclose(np.cumsum(counts)[8 : BOX // 2] / (4 / 3 * np.pi * radius**3), 1.0, atol=0.03)


def test_independent_noise_stays_near_zero():
    freqs_px, fsc = fourier_shell_correlation(_noise(1), _noise(2))
    n_voxels = torch.bincount(shell_indices(BOX).flatten())[: len(fsc)].numpy()
    scaled = (fsc * np.sqrt(n_voxels))[1:]  # the DC shell is a single voxel
    assert np.all(np.abs(scaled) < 3.0)
    # For real volumes each shell's FSC has standard deviation 1 / sqrt(n_voxels).
    assert 0.7 < np.sqrt(np.mean(scaled**2)) < 1.3


def test_gaussian_lowpass_plus_noise_crosses_half_at_analytic_frequency():
    # a = x, b = H x + n with white x, n of equal power: FSC = H / sqrt(1 + H^2) = 0.5 where H = 1/sqrt(3),
    # i.e. at k = sigma sqrt(ln 3) for H = exp(-k^2 / (2 sigma^2)).
    sigma_px = 0.3
    signal = _noise(3, box=96)
    freqs_px, fsc = fourier_shell_correlation(signal, _gaussian_lowpass(signal, sigma_px) + _noise(4, box=96))
    expected_frequency = sigma_px * math.sqrt(math.log(3))
    assert 1 / resolution_at(freqs_px, fsc, 0.5) == pytest.approx(expected_frequency, rel=0.03)
    h = np.exp(-(freqs_px**2) / (2 * sigma_px**2))
    np.testing.assert_allclose(fsc[4:], (h / np.sqrt(1 + h**2))[4:], atol=0.04)


def test_mask_hides_differences_outside_it():
    volume = _noise(5)
    radius = np.linalg.norm(np.indices((BOX,) * 3) - BOX // 2, axis=0)
    mask = (radius < BOX // 4).astype(np.float64)
    changed = volume + (1 - mask) * _noise(6)
    _, unmasked = fourier_shell_correlation(volume, changed)
    _, masked = fourier_shell_correlation(volume, changed, mask=mask)
    np.testing.assert_allclose(masked, 1.0, atol=1e-12)
    # Unmasked, the added noise carries a fraction f of the power: FSC = 1 / sqrt(1 + f).
    outside_fraction = 1 - mask.mean()
    assert np.median(unmasked[1:]) == pytest.approx(1 / math.sqrt(1 + outside_fraction), abs=0.02)


def test_shells_without_power_count_as_uncorrelated():
    """Beyond a hard low-pass (float32 rounding noise only) and at the DC of zero-mean maps, FSC = 0."""
    volume = _noise(9)
    volume -= volume.mean()
    spectrum = fft3_centered(torch.from_numpy(volume))
    spectrum[shell_indices(BOX) > 8] = 0
    lowpassed = ifft3_centered(spectrum).real.float()
    _, fsc = fourier_shell_correlation(lowpassed, torch.from_numpy(volume).float())
    assert fsc[0] == 0.0
    np.testing.assert_allclose(fsc[1:9].numpy(), 1.0, atol=1e-6)
    assert np.all(fsc[9:].numpy() == 0.0)


def test_torch_input_gives_tensors_with_the_numpy_values():
    a, b = _noise(7), _noise(7) + 0.5 * _noise(8)
    freqs_np, fsc_np = fourier_shell_correlation(a, b)
    freqs_t, fsc_t = fourier_shell_correlation(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    assert isinstance(fsc_t, torch.Tensor) and fsc_t.device == torch.device("cpu")
    np.testing.assert_allclose(freqs_t.numpy(), freqs_np)
    np.testing.assert_allclose(fsc_t.numpy(), fsc_np, atol=1e-5)
    # Two signals with SNR 4 (per shell): FSC = 1 / sqrt(1 + 1/4).
    assert np.median(fsc_np[4:]) == pytest.approx(1 / math.sqrt(1.25), abs=0.02)


def test_resolution_interpolates_the_first_crossing():
    freqs_px = np.arange(9) / 16
    fsc = np.array([1.0, 0.95, 0.8, 0.6, 0.4, 0.6, 0.3, 0.1, 0.0])
    # 0.5 is halfway between shells 3 (0.6) and 4 (0.4): frequency 3.5/16; the later recovery is ignored.
    assert resolution_at(freqs_px, fsc, 0.5) == pytest.approx(16 / 3.5)
    # 0.143 lies between shells 6 (0.3) and 7 (0.1) at fraction 0.157/0.2.
    assert resolution_at(freqs_px, fsc, 0.143) == pytest.approx(16 / (6 + 0.157 / 0.2))
    assert resolution_at_angstrom(freqs_px, fsc, 0.5, 1.5) == pytest.approx(1.5 * 16 / 3.5)
    assert resolution_at(torch.from_numpy(freqs_px), torch.from_numpy(fsc), 0.5) == pytest.approx(16 / 3.5)


def test_resolution_is_nyquist_when_never_crossed_and_ignores_the_dc_shell():
    freqs_px = np.arange(9) / 16
    assert resolution_at(freqs_px, np.full(9, 0.9), 0.143) == pytest.approx(2.0)
    dc_low = np.array([0.0, 0.9, 0.9, 0.9, 0.9, 0.0, 0.0, 0.0, 0.0])
    assert resolution_at(freqs_px, dc_low, 0.45) == pytest.approx(16 / 4.5)


def test_area_under_fsc():
    freqs_px = np.arange(33) / 64
    assert au_fsc(freqs_px, np.ones(33)) == pytest.approx(1.0)
    assert au_fsc(freqs_px, 1 - 2 * freqs_px) == pytest.approx(0.5)
    assert au_fsc(freqs_px, np.where(freqs_px <= 0.25, 1.0, 0.0)) == pytest.approx(0.25 / 0.5 + 0.5 / 64 / 0.5)
