"""Backprojection: noiseless reconstructions from analytic projections recover the volume (FSC)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hetacumn.physics.ctf import CTFParams, ctf_images
from hetacumn.physics.fourier import fft2_centered, ifft2_centered
from hetacumn.physics.reconstruct import BackprojectionAccumulator, reconstruct_half_maps, reconstruct_volume
from hetacumn.physics.rotations import random_rotations
from hetacumn.physics.shift import translate_images
from tests.physics.helpers import fsc_shells, gaussian_projections, gaussian_volume, random_gaussian_model

BOX = 32
N_VIEWS = 2000
# Shells at or below 0.8 Nyquist: r / D <= 0.4 cycles/px.
SHELLS_TO_08_NYQUIST = slice(1, int(0.8 * BOX / 2) + 1)


@pytest.fixture(scope="module")
def dataset():
    generator = torch.Generator().manual_seed(7)
    centers, sigmas = random_gaussian_model(60, BOX, generator)
    rotations = random_rotations(N_VIEWS, generator, dtype=torch.float64)
    volume = gaussian_volume(BOX, centers, sigmas).float()
    images = gaussian_projections(BOX, centers, sigmas, rotations).float()
    return volume, rotations.float(), images


@pytest.fixture(scope="module")
def full_reconstruction(dataset):
    volume, rotations, images = dataset
    return reconstruct_volume(images, rotations, wiener_constant=1e-2)


@pytest.fixture(scope="module")
def ctf_dataset(dataset):
    volume, rotations, images = dataset
    rng = np.random.default_rng(8)
    defocus_u = rng.uniform(10000, 25000, N_VIEWS)
    params = CTFParams.from_numpy(defocus_u_angstrom=defocus_u, defocus_v_angstrom=defocus_u - rng.uniform(0, 1000, N_VIEWS),
                                  defocus_angle_deg=rng.uniform(0, 180, N_VIEWS), voltage_kv=300.0,
                                  spherical_aberration_mm=2.7, amplitude_contrast=0.1)
    ctf = ctf_images(params, BOX, 1.5).float()
    shift_px = torch.from_numpy(rng.uniform(-3, 3, (N_VIEWS, 2))).float()
    # Forward model: image = T(-shift)[IFT(CTF * FT(projection))].
    observed = translate_images(ifft2_centered(fft2_centered(images) * ctf).real, -shift_px)
    return ctf, shift_px, observed


def test_noiseless_reconstruction_fsc_above_099(dataset, full_reconstruction):
    volume = dataset[0]
    fsc = fsc_shells(full_reconstruction, volume)
    assert fsc[SHELLS_TO_08_NYQUIST].min() > 0.99  # measured 0.997
    assert ((full_reconstruction - volume).norm() / volume.norm()).item() < 0.05  # measured 0.036


def test_default_wiener_constant_is_mild_on_2000_views(dataset):
    volume, rotations, images = dataset
    fsc = fsc_shells(reconstruct_volume(images, rotations), volume)
    assert fsc[SHELLS_TO_08_NYQUIST].min() > 0.99


def test_ctf_and_shift_reconstruction_recovers_the_volume(dataset, ctf_dataset):
    volume, rotations, _ = dataset
    ctf, shift_px, observed = ctf_dataset
    reconstruction = reconstruct_volume(observed, rotations, ctf=ctf, shift_px=shift_px, wiener_constant=1e-2)
    fsc = fsc_shells(reconstruction, volume)
    assert fsc[SHELLS_TO_08_NYQUIST].min() > 0.9  # measured 0.94
    assert fsc[1:9].min() > 0.98
    # The opposite shift sign smears the map: the shift convention is pinned.
    wrong = reconstruct_volume(observed, rotations, ctf=ctf, shift_px=-shift_px, wiener_constant=1e-2)
    assert fsc_shells(wrong, volume)[4:SHELLS_TO_08_NYQUIST.stop].max() < 0.6


def test_half_maps_agree_and_merge_to_the_full_map(dataset, full_reconstruction):
    volume, rotations, images = dataset
    half_a, half_b, full = reconstruct_half_maps(images, rotations, wiener_constant=1e-2)
    assert fsc_shells(half_a, half_b)[SHELLS_TO_08_NYQUIST].min() > 0.98
    assert torch.allclose(full, full_reconstruction, atol=1e-4 * volume.abs().max().item())
    # An explicit split: half a is exactly the reconstruction of its images.
    half_index = (torch.arange(N_VIEWS) >= 1500).long()
    split_a, _, _ = reconstruct_half_maps(images[:1600], rotations[:1600], half_index[:1600], wiener_constant=1e-2)
    alone = reconstruct_volume(images[:1500], rotations[:1500], wiener_constant=1e-2)
    assert torch.allclose(split_a, alone, atol=1e-5 * volume.abs().max().item())


def test_accumulator_is_batch_invariant_and_mergeable(dataset):
    _, rotations, images = dataset
    subset, views = images[:64], rotations[:64]
    whole = BackprojectionAccumulator(BOX)
    whole.add(subset, views)
    first, second = BackprojectionAccumulator(BOX), BackprojectionAccumulator(BOX)
    first.add(subset[:20], views[:20])
    second.add(subset[20:], views[20:])
    merged = first.merged_with(second)
    assert merged.count == whole.count == 64
    assert torch.allclose(merged.volume(), whole.volume(), atol=1e-4)
    with pytest.raises(ValueError):
        first.merged_with(BackprojectionAccumulator(BOX, oversampling=1))


def test_accumulator_weights_scale_both_sums(dataset):
    _, rotations, images = dataset
    subset, views = images[:16], rotations[:16]
    once = BackprojectionAccumulator(BOX)
    once.add(subset, views)
    # Each image inserted twice at weights 0.25 and 0.75, plus a weight-0 copy at the wrong pose.
    split = BackprojectionAccumulator(BOX)
    twice = torch.cat([subset, subset, subset])
    weights = torch.cat([torch.full((16,), 0.25), torch.full((16,), 0.75), torch.zeros(16)])
    split.add(twice, torch.cat([views, views, views.flip(0)]), weights=weights)
    assert torch.allclose(split.sums, once.sums, atol=1e-4 * once.sums.abs().max().item())
    doubled = BackprojectionAccumulator(BOX)
    doubled.add(subset, views, weights=torch.full((16,), 2.0))
    assert torch.allclose(doubled.sums, 2 * once.sums, atol=1e-4 * once.sums.abs().max().item())


@pytest.mark.parametrize("oversampling, with_ctf", [(1, True), (2, False)])
def test_accumulator_within_a_radius_keeps_the_sums_inside_it(dataset, ctf_dataset, oversampling, with_ctf):
    # Voxels within radius - 2 get trilinear weight only from slice points within the radius: their sums
    # equal the full insertion's; beyond radius + 2 nothing was inserted.
    _, rotations, images = dataset
    ctf = ctf_dataset[0][:32] if with_ctf else None
    radius = 9.0
    full, limited = BackprojectionAccumulator(BOX, oversampling), BackprojectionAccumulator(BOX, oversampling)
    full.add(images[:32], rotations[:32], ctf=ctf)
    limited.add(images[:32], rotations[:32], ctf=ctf, max_radius_px=radius)
    size = full.padded_size
    offsets = torch.stack(torch.meshgrid(*[torch.arange(size) - size // 2] * 3, indexing="ij"), -1)
    voxel_radius = offsets.float().norm(dim=-1).flatten() / oversampling
    inside, outside = voxel_radius <= radius - 2, voxel_radius > radius + 2
    scale = full.sums.abs().max().item()
    assert float((full.sums[inside, 2] > 0).float().mean()) > 0.5 and bool((full.sums[outside, 2] > 0).any())
    assert torch.allclose(limited.sums[inside], full.sums[inside], atol=1e-5 * scale)
    assert float(limited.sums[outside].abs().max()) == 0.0
