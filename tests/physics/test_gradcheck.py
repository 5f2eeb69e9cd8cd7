"""float64 torch.autograd.gradcheck of every differentiable physics operation."""

from __future__ import annotations

import torch
from torch.autograd import gradcheck

from hetacumn.physics.ctf import CTFParams, compute_ctf
from hetacumn.physics.filters import gaussian_blur
from hetacumn.physics.fourier import fft3_centered
from hetacumn.physics.render import render_images
from hetacumn.physics.rotations import axis_angle_to_matrix, geodesic_distance_rad, random_rotations, s2s2_to_matrix
from hetacumn.physics.shift import translate_ft
from hetacumn.physics.slice import extract_central_slices

DOUBLE = dict(dtype=torch.float64)


def generator() -> torch.Generator:
    return torch.Generator().manual_seed(21)


def test_compute_ctf_gradient_wrt_defocus():
    freqs = (torch.rand(40, 2, generator=generator(), **DOUBLE) - 0.5) * 0.4
    base = CTFParams.from_numpy(defocus_u_angstrom=[12000.0, 20000.0], defocus_v_angstrom=[11000.0, 18000.0],
                                defocus_angle_deg=[30.0, 120.0], voltage_kv=300.0, spherical_aberration_mm=2.7,
                                amplitude_contrast=0.1, bfactor_angstrom2=50.0)

    def ctf_of(defocus_u, defocus_v):
        fields = {**base.__dict__, "defocus_u_angstrom": defocus_u, "defocus_v_angstrom": defocus_v}
        return compute_ctf(freqs, CTFParams(**fields))

    inputs = (base.defocus_u_angstrom.clone().requires_grad_(), base.defocus_v_angstrom.clone().requires_grad_())
    assert gradcheck(ctf_of, inputs, eps=1e-3, atol=1e-6)


def test_translate_ft_gradient_wrt_shift():
    images_ft = torch.randn(3, 8, 8, generator=generator(), dtype=torch.complex128)
    shift = torch.randn(3, 2, generator=generator(), **DOUBLE).requires_grad_()
    assert gradcheck(lambda s: translate_ft(images_ft, s), (shift,))


def test_extract_central_slices_gradient_wrt_volume_and_rotations():
    volume_ft = fft3_centered(torch.randn(8, 8, 8, generator=generator(), **DOUBLE)).requires_grad_()
    rotations = random_rotations(2, generator(), **DOUBLE).requires_grad_()
    assert gradcheck(extract_central_slices, (volume_ft, rotations), atol=1e-6)


def test_render_gradient_wrt_volume_and_shift():
    volume = torch.randn(8, 8, 8, generator=generator(), **DOUBLE).requires_grad_()
    rotations = random_rotations(2, generator(), **DOUBLE)
    ctf = torch.rand(2, 8, 8, generator=generator(), **DOUBLE)
    shift = torch.randn(2, 2, generator=generator(), **DOUBLE).requires_grad_()
    assert gradcheck(lambda v, s: render_images(v, rotations, ctf, s), (volume, shift), atol=1e-6, fast_mode=True)


def test_s2s2_to_matrix_gradient():
    six_d = torch.randn(4, 6, generator=generator(), **DOUBLE).requires_grad_()
    assert gradcheck(s2s2_to_matrix, (six_d,))


def test_geodesic_distance_gradient_away_from_zero():
    rot_a = random_rotations(5, generator(), **DOUBLE)
    axes = torch.nn.functional.normalize(torch.randn(5, 3, generator=generator(), **DOUBLE), dim=-1)
    angles = torch.linspace(0.3, 2.8, 5, **DOUBLE)
    rot_b = rot_a @ axis_angle_to_matrix(axes * angles[:, None])
    rot_a, rot_b = rot_a.requires_grad_(), rot_b.requires_grad_()
    assert torch.allclose(geodesic_distance_rad(rot_a, rot_b), angles)
    assert gradcheck(geodesic_distance_rad, (rot_a, rot_b))


def test_gaussian_blur_gradient_wrt_images_and_sigma():
    images = torch.randn(2, 8, 8, generator=generator(), **DOUBLE).requires_grad_()
    sigma = torch.tensor([0.8, 1.5], **DOUBLE).requires_grad_()
    assert gradcheck(gaussian_blur, (images, sigma))
