"""The encoder's Gaussian filter bank: normalised blurs with no subnormal weights (which slowed every convolution
~7x on x86 CPUs), and the command line flushes subnormal results to zero."""

from __future__ import annotations

import torch

from hetacumn.cli.main import main
from hetacumn.models.encoders import KERNEL_FLOOR, GaussianFilterBank

SMALLEST_NORMAL = torch.finfo(torch.float32).tiny


def test_kernels_are_normalised_gaussians_without_subnormal_weights():
    kernels = GaussianFilterBank().kernels[:, 0]
    nonzero = kernels[kernels != 0]
    assert float(nonzero.min()) >= KERNEL_FLOOR > SMALLEST_NORMAL * 1e10
    assert torch.allclose(kernels.sum(dim=(-1, -2)), torch.ones(5), atol=1e-6)
    # the narrowest kernel (variance 0.01 px^2) is the identity to float32's precision; the widest keeps its tails
    assert float(kernels[0, 5, 5]) == 1.0 and int((kernels[0] != 0).sum()) == 1
    assert int((kernels[-1] != 0).sum()) == 121


def test_a_blur_of_a_point_is_its_kernel_and_a_constant_stays_constant():
    bank = GaussianFilterBank()
    point = torch.zeros(1, 21, 21)
    point[0, 10, 10] = 1.0
    blurred = bank(point)
    assert torch.allclose(blurred[0, :, 5:16, 5:16], bank.kernels[:, 0].flip(-1, -2), atol=1e-7)
    assert torch.allclose(bank(torch.full((1, 16, 16), 3.0)), torch.full((1, 5, 16, 16), 3.0), atol=1e-5)


def test_the_command_line_flushes_subnormal_results_to_zero(tmp_path):
    torch.set_flush_denormal(False)
    try:
        assert float(torch.tensor([1e-30]) * torch.tensor([1e-10])) > 0  # a subnormal result, kept
        assert main(["info", str(tmp_path / "missing.star")]) == 2  # any command, here one refused
        assert float(torch.tensor([1e-30]) * torch.tensor([1e-10])) == 0.0
        assert float(torch.tensor([1e-30]) * torch.tensor([1e-7])) > 0  # the smallest normal floats stay
    finally:
        torch.set_flush_denormal(False)
