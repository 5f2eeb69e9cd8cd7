"""Central slices and projections: Fourier slice theorem, direction convention, analytic Gaussians."""

from __future__ import annotations

import math

import pytest
import torch

from hetacumn.physics.fourier import fft2_centered, fft3_centered
from hetacumn.physics.grids import real_grid_2d
from hetacumn.physics.rotations import axis_angle_to_matrix, random_rotations
from hetacumn.physics.slice import extract_central_slices, pad_volume, project_volume
from tests.physics.helpers import gaussian_projections, gaussian_volume, image_centroid

QUARTER_X = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)  # Rx(+90 deg)
QUARTER_Y = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]], dtype=torch.float64)  # Ry(+90 deg)


@pytest.fixture
def random_volume() -> torch.Tensor:
    volume = torch.randn(16, 16, 16, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    volume[0], volume[:, 0], volume[:, :, 0] = 0, 0, 0  # so that negating a coordinate stays in the box
    return volume


def test_identity_slice_is_the_transform_of_the_z_sum(random_volume):
    slices = extract_central_slices(fft3_centered(random_volume), torch.eye(3, dtype=torch.float64))
    assert torch.allclose(slices, fft2_centered(random_volume.sum(0)), atol=1e-9)


def test_quarter_turn_about_y_sums_along_volume_x(random_volume):
    # x_image = A x_volume, so image (x, y) collects volume points (-w, y, x): the sum over volume x, transposed.
    slices = extract_central_slices(fft3_centered(random_volume), QUARTER_Y)
    assert torch.allclose(slices, fft2_centered(random_volume.sum(2).T), atol=1e-9)


def test_quarter_turn_about_x_sums_along_volume_y(random_volume):
    # Image (x, y) collects volume points (x, w, -y): image[y, x] = sum_w volume[z = -y, w, x].
    box = random_volume.shape[-1]
    negated = (box - torch.arange(box)) % box
    expected = random_volume.sum(1)[negated]
    slices = extract_central_slices(fft3_centered(random_volume), QUARTER_X)
    # The ky = -Nyquist row reads kz = +Nyquist, outside the box: compare the rest.
    assert torch.allclose(slices[1:, 1:], fft2_centered(expected)[1:, 1:], atol=1e-9)


def test_off_centre_blob_appears_at_the_rotated_position():
    box, position = 32, torch.tensor([[5.0, -3.0, 2.0]], dtype=torch.float64)
    volume = gaussian_volume(box, position, torch.tensor([1.5], dtype=torch.float64))
    rotations = torch.cat([QUARTER_X[None], QUARTER_Y[None],
                           random_rotations(20, torch.Generator().manual_seed(2), dtype=torch.float64)])
    expected = (position @ rotations.transpose(-1, -2))[:, 0, :2]
    centroids = image_centroid(project_volume(volume, rotations))
    assert (centroids - expected).abs().max() < 0.15  # interpolation error ~0.1 px; the convention is what counts
    assert torch.allclose(expected[0], torch.tensor([5.0, -2.0], dtype=torch.float64))  # Rx(90): y_image = -z
    transposed = (position @ rotations)[:, 0, :2]
    assert (centroids[2:] - transposed[2:]).norm(dim=-1).median() > 2.0


def test_centred_gaussian_projects_to_the_analytic_gaussian():
    box, sigma = 32, 2.5
    center, sigmas = torch.zeros(1, 3, dtype=torch.float64), torch.tensor([sigma], dtype=torch.float64)
    volume = gaussian_volume(box, center, sigmas)
    rotations = random_rotations(50, torch.Generator().manual_seed(4), dtype=torch.float64)
    images = project_volume(volume, rotations)
    analytic = gaussian_projections(box, center, sigmas, rotations)
    peak = sigma * math.sqrt(2 * math.pi)
    assert (images - analytic).abs().max() / peak < 5e-3
    assert torch.allclose(images[:, box // 2, box // 2], torch.full((50,), peak, dtype=torch.float64), rtol=5e-3)
    # Mass is conserved to ~1%: the gridding correction that removes the trilinear attenuation is exact
    # only on average over orientations (measured: +0.1% to +1.1%).
    mass = (2 * math.pi) ** 1.5 * sigma**3
    assert torch.allclose(images.sum((-1, -2)), torch.full((50,), mass, dtype=torch.float64), rtol=1.5e-2)
    # Width: the second moment within 3 sigma (the far tail is dominated by interpolation error).
    radius_sq = (real_grid_2d(box, dtype=torch.float64) ** 2).sum(-1)
    core = radius_sq < (3 * sigma) ** 2

    def core_width(x):
        return torch.sqrt((x * radius_sq * core).sum((-1, -2)) / (2 * (x * core).sum((-1, -2))))

    assert (core_width(images) / core_width(analytic) - 1).abs().max() < 5e-3  # measured 0.3%
    assert abs(core_width(analytic)[0].item() / sigma - 1) < 0.1  # truncation only


def test_gaussian_mixture_projections_match_analytic():
    generator = torch.Generator().manual_seed(8)
    box = 32
    centers = (torch.rand(6, 3, generator=generator, dtype=torch.float64) - 0.5) * box / 2
    sigmas = 1.2 + torch.rand(6, generator=generator, dtype=torch.float64)
    rotations = random_rotations(40, generator, dtype=torch.float64)
    images = project_volume(gaussian_volume(box, centers, sigmas), rotations)
    analytic = gaussian_projections(box, centers, sigmas, rotations)
    assert ((images - analytic).norm() / analytic.norm()).item() < 0.02


def test_batched_equals_looped_and_oversampled_slices():
    generator = torch.Generator().manual_seed(6)
    volume_ft = fft3_centered(torch.randn(12, 12, 12, generator=generator, dtype=torch.float64))
    rotations = random_rotations(6, generator, dtype=torch.float64).reshape(2, 3, 3, 3)
    batched = extract_central_slices(volume_ft, rotations)
    assert batched.shape == (2, 3, 12, 12)
    for i in range(2):
        for j in range(3):
            assert torch.allclose(batched[i, j], extract_central_slices(volume_ft, rotations[i, j]), atol=1e-12)
    # A D x D slice of a 2x oversampled volume reads every other sample of its 2D x 2D slice.
    padded_ft = fft3_centered(pad_volume(torch.randn(12, 12, 12, generator=generator, dtype=torch.float64), 24))
    coarse = extract_central_slices(padded_ft, rotations, scale=2)
    assert coarse.shape == (2, 3, 12, 12)
    assert torch.allclose(coarse, extract_central_slices(padded_ft, rotations)[..., ::2, ::2], atol=1e-10)


def test_project_volume_is_differentiable_in_rotation():
    box = 16
    volume = gaussian_volume(box, torch.tensor([[4.0, 0.0, 0.0]], dtype=torch.float64),
                             torch.tensor([1.5], dtype=torch.float64))

    def centroid_x(angle):
        rotation = axis_angle_to_matrix(torch.stack([torch.zeros_like(angle), torch.zeros_like(angle), angle]))
        return image_centroid(project_volume(volume, rotation[None]))[0, 0]

    for value in (0.3, 0.7, 1.1):
        angle = torch.tensor(value, dtype=torch.float64, requires_grad=True)
        centroid_x(angle).backward()
        step = torch.tensor(1e-4, dtype=torch.float64)
        numeric = (centroid_x(angle.detach() + step) - centroid_x(angle.detach() - step)) / (2 * step)
        assert abs(angle.grad.item() - numeric.item()) < 1e-3 * abs(numeric.item())
        # The centroid is 4 cos(t); trilinear interpolation makes its slope piecewise (measured within 0.8).
        assert abs(angle.grad.item() + 4 * math.sin(value)) < 1.0
