"""Image encoders: a CNN backbone and heads for rotation (6D), shift (px) and conformation (mu, logvar).

Example usage::

    encoder = Encoder(EncoderConfig(), box_size=64, zdim=8, shift_range_px=8.0)
    out = encoder(images)             # images (B, D, D) normalised, masked
    out.rotation                      # (B, K, 3, 3) K hypotheses of the pose rotation A
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hetacumn.config.schema import EncoderConfig
from hetacumn.physics.rotations import s2s2_to_matrix


@dataclass
class EncoderOutput:
    rotation: torch.Tensor  # (B, K, 3, 3): K rotation hypotheses
    shift_px: torch.Tensor  # (B, 2), RELION origin convention
    z_mu: torch.Tensor | None  # (B, zdim)
    z_logvar: torch.Tensor | None  # (B, zdim)


KERNEL_FLOOR = 1e-20  # relative to a kernel's sum of 1; far below float32's resolution of 1.2e-7


class GaussianFilterBank(nn.Module):
    """Fixed bank of Gaussian blurs (variances 0.01·10^i px², i = 0..4) replacing the raw image (cryoAI)."""

    def __init__(self, octaves: int = 5, kernel_size: int = 11):
        super().__init__()
        offsets = torch.arange(kernel_size, dtype=torch.float32) - kernel_size // 2
        r2 = offsets[None, :] ** 2 + offsets[:, None] ** 2
        kernels = torch.stack([torch.exp(-r2 / (2 * 0.01 * 10**i)) for i in range(octaves)])
        kernels = kernels / kernels.sum(dim=(-1, -2), keepdim=True)
        # The narrowest kernels' tails underflow to subnormal floats (down to 4e-44), which made every convolution
        # ~7x slower on x86 CPUs (BENCHMARKS.md, "Subnormal filter weights"); weights this small add nothing in float32.
        kernels = torch.where(kernels < KERNEL_FLOOR, torch.zeros_like(kernels), kernels)
        self.register_buffer("kernels", kernels[:, None])
        self.padding = kernel_size // 2
        self.out_channels = octaves

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(images[:, None], [self.padding] * 4, mode="reflect")
        return nn.functional.conv2d(padded, self.kernels)


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    groups = math.gcd(8, c_out)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(groups, c_out), nn.ReLU(inplace=True))


def lean_backbone(c_in: int, channels: int, box_size: int) -> tuple[nn.Module, int]:
    """Strided convolutions from the first layer on, halving the image down to 4x4; widths double
    from ``channels`` up to 8x. Cheap enough for CPU training (no full-resolution convolution)."""
    layers, width, size = [], c_in, box_size
    out = channels
    while size > 4:
        layers.append(_conv_block(width, out, 2))
        width, size = out, (size + 1) // 2
        out = min(out * 2, channels * 8)
    return nn.Sequential(*layers, nn.Flatten()), width * size * size


def vgg_backbone(c_in: int, channels: int, box_size: int) -> tuple[nn.Module, int]:
    """cryoAI-like VGG: blocks of 3x3 convs with BatchNorm, pooled down to 2x2."""
    plan = [(2, 1), (2, 2), (3, 4), (2, 4), (2, 4)]
    layers, width, size = [], c_in, box_size
    for convs, mult in plan:
        if size <= 2:
            break
        for _ in range(convs):
            layers += [nn.Conv2d(width, channels * mult, 3, 1, 1), nn.BatchNorm2d(channels * mult), nn.ReLU(inplace=True)]
            width = channels * mult
        layers.append(nn.MaxPool2d(2))
        size //= 2
    layers.append(nn.AdaptiveAvgPool2d(2))
    return nn.Sequential(*layers, nn.Flatten()), width * 4


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def resnet18_backbone(c_in: int, channels: int, box_size: int) -> tuple[nn.Module, int]:
    """ResNet-18 layout (2-2-2-2 basic blocks) without the final FC layer (ACE-HetEM)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, channels, 7, 2, 3, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
    width = channels
    for stage, mult in enumerate((1, 2, 4, 8)):
        stride = 1 if stage == 0 else 2
        layers += [_BasicBlock(width, channels * mult, stride), _BasicBlock(channels * mult, channels * mult, 1)]
        width = channels * mult
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), width


def cryofire_backbone(c_in: int, channels: int, box_size: int) -> tuple[nn.Module, int]:
    """cryoFIRE-like: [conv-ReLU-conv-ReLU-AvgPool-GroupNorm] blocks, widths doubling at every conv."""
    layers, width, size = [], c_in, box_size
    out = channels
    while size > 2:
        mid, out = out, out * 2
        layers += [nn.Conv2d(width, mid, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(mid, out, 3, 1, 1),
                   nn.ReLU(inplace=True), nn.AvgPool2d(2), nn.GroupNorm(math.gcd(16, out), out)]
        width, size = out, size // 2
    return nn.Sequential(*layers, nn.Flatten()), width * size * size


BACKBONES = {"lean": lean_backbone, "vgg": vgg_backbone, "resnet18": resnet18_backbone, "cryofire": cryofire_backbone}


def _head(features: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, out))


class Encoder(nn.Module):
    def __init__(self, config: EncoderConfig, box_size: int, zdim: int, shift_range_px: float):
        super().__init__()
        self.filter_bank = GaussianFilterBank() if config.filter_bank else None
        c_in = self.filter_bank.out_channels if self.filter_bank else 1
        self.backbone, features = BACKBONES[config.backbone](c_in, config.channels, box_size)
        self.hypotheses = config.rotation_hypotheses
        self.rotation_head = _head(features, config.head_hidden, 6 * self.hypotheses)
        self.shift_head = _head(features, config.head_hidden, 2)
        self.z_head = _head(features, config.head_hidden, 2 * zdim) if zdim > 0 else None
        self.shift_range_px = shift_range_px
        self.zdim = zdim

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.filter_bank(images) if self.filter_bank is not None else images[:, None]
        return self.backbone(x)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        feats = self.features(images)
        six_d = self.rotation_head(feats).float().reshape(len(feats), self.hypotheses, 6)
        rotation = s2s2_to_matrix(six_d)
        shift = self.shift_range_px * torch.tanh(self.shift_head(feats).float())
        z_mu = z_logvar = None
        if self.z_head is not None:
            z_mu, z_logvar = self.z_head(feats).float().chunk(2, dim=-1)
        return EncoderOutput(rotation, shift, z_mu, z_logvar)
