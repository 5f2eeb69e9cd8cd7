"""CTF: wavelength, RELION sign, analytic zeros, astigmatism symmetry, phase shift, parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hetacumn.physics.ctf import CTFParams, compute_ctf, ctf_at_points, ctf_images, electron_wavelength_angstrom


def make_params(count: int = 1, **overrides) -> CTFParams:
    values = dict(defocus_u_angstrom=15000.0, defocus_v_angstrom=15000.0, defocus_angle_deg=0.0, voltage_kv=300.0,
                  spherical_aberration_mm=0.0, amplitude_contrast=0.0, phase_shift_deg=0.0, bfactor_angstrom2=0.0)
    values.update(overrides)
    return CTFParams.from_numpy(**{k: np.broadcast_to(np.asarray(v, float), (count,)) for k, v in values.items()})


def radial_points(s_angstrom: torch.Tensor, angle_rad: float = 0.3) -> torch.Tensor:
    return torch.stack([s_angstrom * math.cos(angle_rad), s_angstrom * math.sin(angle_rad)], -1)


def test_electron_wavelength():
    assert round(electron_wavelength_angstrom(300.0), 5) == 0.01969
    assert abs(electron_wavelength_angstrom(300.0) - 0.019687) < 1e-6
    assert abs(electron_wavelength_angstrom(200.0) - 0.025079) < 1e-6
    assert abs(electron_wavelength_angstrom(100.0) - 0.037014) < 1e-6
    for dtype in (torch.float64, torch.float32):
        tensor = electron_wavelength_angstrom(torch.tensor([300.0, 200.0], dtype=dtype))
        assert torch.allclose(tensor, torch.tensor([0.019687, 0.025079], dtype=dtype), atol=1e-6)


def test_ctf_at_zero_frequency_is_plus_amplitude_contrast():
    params = make_params(3, amplitude_contrast=[0.07, 0.1, 0.3], spherical_aberration_mm=2.7,
                         defocus_v_angstrom=[9000.0, 14000.0, 20000.0], defocus_angle_deg=[10.0, 50.0, 170.0])
    ctf = ctf_images(params, 32, 1.2)
    assert torch.allclose(ctf[:, 16, 16], torch.tensor([0.07, 0.1, 0.3], dtype=torch.float64), atol=1e-12)


def test_ctf_zeros_at_analytic_radii():
    defocus = 12000.0
    params = make_params(1, defocus_u_angstrom=defocus, defocus_v_angstrom=defocus)
    wavelength = electron_wavelength_angstrom(300.0)
    orders = torch.arange(1, 30, dtype=torch.float64)
    zeros = torch.sqrt(orders / (wavelength * defocus))
    assert torch.allclose(compute_ctf(radial_points(zeros), params)[0], torch.zeros(29, dtype=torch.float64),
                          atol=1e-9)
    # Half way (in s^2) between zeros the CTF is +-1, alternating, starting at +1 (RELION sign).
    peaks = torch.sqrt((orders - 0.5) / (wavelength * defocus))
    expected = torch.where(orders % 2 == 1, 1.0, -1.0).to(torch.float64)
    assert torch.allclose(compute_ctf(radial_points(peaks, 2.0), params)[0], expected, atol=1e-9)


def test_ctf_is_the_negative_of_the_cryodrgn_form():
    """CTF = -(sqrt(1-w^2) sin(g) - w cos(g)), g = 2 pi (-df lam s^2 / 2 + Cs lam^3 s^4 / 4) - phase."""
    generator = torch.Generator().manual_seed(3)
    freqs = (torch.rand(500, 2, generator=generator, dtype=torch.float64) - 0.5) * 0.6
    du, dv, angle_deg, cs_mm, w, phase_deg = 18000.0, 14000.0, 35.0, 2.7, 0.1, 20.0
    params = make_params(1, defocus_u_angstrom=du, defocus_v_angstrom=dv, defocus_angle_deg=angle_deg,
                         spherical_aberration_mm=cs_mm, amplitude_contrast=w, phase_shift_deg=phase_deg)
    lam = electron_wavelength_angstrom(300.0)
    s2 = (freqs**2).sum(-1)
    theta = torch.atan2(freqs[:, 1], freqs[:, 0])
    angle = math.radians(angle_deg)
    defocus = 0.5 * (du + dv + (du - dv) * torch.cos(2 * (theta - angle)))
    gamma = 2 * math.pi * (-0.5 * defocus * lam * s2 + 0.25 * cs_mm * 1e7 * lam**3 * s2**2) - math.radians(phase_deg)
    cryodrgn = math.sqrt(1 - w**2) * torch.sin(gamma) - w * torch.cos(gamma)
    assert torch.allclose(compute_ctf(freqs, params)[0], -cryodrgn, atol=1e-10)


def test_astigmatism_symmetries():
    box = 64
    common = dict(defocus_u_angstrom=20000.0, defocus_v_angstrom=12000.0, spherical_aberration_mm=2.7,
                  amplitude_contrast=0.1)
    at_45 = ctf_images(make_params(1, defocus_angle_deg=45.0, **common), box, 1.5)[0]
    # Reflection across the kx = ky line maps theta - 45 to 45 - theta: the 45-degree image is symmetric.
    assert torch.allclose(at_45, at_45.T, atol=1e-12)
    assert (at_45 - at_45.flip(0)).abs().max() > 0.5  # but not about the x axis
    # Swapping U and V is a 90-degree turn of the astigmatism axis.
    swapped = dict(common, defocus_u_angstrom=12000.0, defocus_v_angstrom=20000.0)
    assert torch.allclose(ctf_images(make_params(1, defocus_angle_deg=45.0 + 90.0, **swapped), box, 1.5)[0],
                          at_45, atol=1e-10)
    # Rotating the points by 45 degrees and the axis by 45 degrees leaves the CTF unchanged.
    s = torch.linspace(0.01, 0.3, 50, dtype=torch.float64)
    at_0 = compute_ctf(radial_points(s, 0.4), make_params(1, defocus_angle_deg=0.0, **common))
    rotated = compute_ctf(radial_points(s, 0.4 + math.pi / 4), make_params(1, defocus_angle_deg=45.0, **common))
    assert torch.allclose(at_0, rotated, atol=1e-10)
    # Along the angle, the defocus is U: the first zero sits at sqrt(1 / (lam dU)) when Cs = 0.
    first_zero_u = math.sqrt(1 / (electron_wavelength_angstrom(300.0) * 20000.0))
    no_cs = make_params(1, **dict(common, spherical_aberration_mm=0.0, amplitude_contrast=0.0, defocus_angle_deg=30.0))
    value = compute_ctf(radial_points(torch.tensor([first_zero_u], dtype=torch.float64), math.radians(30)), no_cs)
    assert abs(value.item()) < 1e-9


def test_phase_shift_of_90_degrees_equals_full_amplitude_contrast():
    box = 48
    phase = ctf_images(make_params(1, phase_shift_deg=90.0, spherical_aberration_mm=2.7), box, 1.0)
    amplitude = ctf_images(make_params(1, amplitude_contrast=1.0, spherical_aberration_mm=2.7), box, 1.0)
    assert torch.allclose(phase, amplitude, atol=1e-12)


def test_bfactor_envelope():
    s = torch.linspace(0, 0.4, 20, dtype=torch.float64)
    plain = compute_ctf(radial_points(s), make_params(1, amplitude_contrast=0.1))
    damped = compute_ctf(radial_points(s), make_params(1, amplitude_contrast=0.1, bfactor_angstrom2=80.0))
    assert torch.allclose(damped, plain * torch.exp(-80.0 * s**2 / 4), atol=1e-12)


def test_ctf_images_grid_and_per_image_pixel_size():
    params = make_params(2, defocus_u_angstrom=[10000.0, 22000.0], defocus_v_angstrom=[9000.0, 20000.0],
                         defocus_angle_deg=[20.0, 100.0], spherical_aberration_mm=2.7, amplitude_contrast=0.07)
    box = 32
    both = ctf_images(params, box, torch.tensor([1.0, 2.5], dtype=torch.float64))
    assert both.shape == (2, box, box)
    one = ctf_images(params[1:], box, 2.5)[0]
    assert torch.allclose(both[1], one, atol=1e-12)
    # Pixel [y, x] holds frequency ((x - D/2), (y - D/2)) / (D * pixel size).
    y, x = 5, 27
    freq = torch.tensor([[(x - 16) / (box * 1.0), (y - 16) / (box * 1.0)]], dtype=torch.float64)
    assert torch.allclose(both[0, y, x], compute_ctf(freq, params[:1])[0, 0], atol=1e-12)
    assert compute_ctf(torch.zeros(7, 5, 2, dtype=torch.float64), params).shape == (2, 7, 5)
    # The same values at a list of points given in cycles/px.
    points = torch.tensor([[(x - 16) / box, (y - 16) / box], [0.0, 0.0]], dtype=torch.float32)
    at_points = ctf_at_points(points, params, torch.tensor([1.0, 2.5], dtype=torch.float64))
    assert at_points.shape == (2, 2) and at_points.dtype == torch.float32
    assert abs(at_points[0, 0].item() - both[0, y, x].item()) < 1e-4  # float32 phase of ~300 rad
    assert torch.allclose(at_points[:, 1], torch.tensor([0.07, 0.07]))


def test_ctf_params_container():
    params = make_params(5, defocus_u_angstrom=np.arange(5) * 1000.0 + 10000.0)
    assert len(params) == 5
    chosen = params[np.array([4, 1])]
    assert chosen.defocus_u_angstrom.tolist() == [14000.0, 11000.0]
    assert params[torch.tensor([True, False, True, False, False])].defocus_u_angstrom.tolist() == [10000.0, 12000.0]
    assert params[2:4].voltage_kv.tolist() == [300.0, 300.0]
    as_float = params.to(dtype=torch.float32)
    assert as_float.amplitude_contrast.dtype == torch.float32
    arrays = params.numpy()
    assert np.array_equal(CTFParams.from_numpy(**arrays).numpy()["defocus_u_angstrom"], arrays["defocus_u_angstrom"])
    assert CTFParams.from_numpy(defocus_u_angstrom=[1.0, 2.0], defocus_v_angstrom=1.0, defocus_angle_deg=0.0,
                                voltage_kv=300.0, spherical_aberration_mm=2.7,
                                amplitude_contrast=0.1).bfactor_angstrom2.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        CTFParams(**{**{k: v for k, v in params.__dict__.items()}, "voltage_kv": torch.zeros(3)})
    with pytest.raises(TypeError):
        CTFParams.from_numpy(defocus_u_angstrom=1.0)
