"""Mixed precision (train.amp, CUDA): bfloat16 in the networks' layers only, float32 physics around them.

CPU autocast runs the same bfloat16 layers, so the contract is checked here without a GPU. On a GPU, autocast
around the whole task once put the backprojection's phase ramps in bfloat16 (torch.polar refused them).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from hetacumn.data.images import ParticleImages
from hetacumn.engine.trainer import Trainer
from hetacumn.models.lattice import HalfPlane
from hetacumn.models.model import HetModel
from hetacumn.physics.rotations import random_rotations

from .conftest import small_config


def _model_and_inputs():
    torch.manual_seed(0)
    model = HetModel(small_config("hetacumn").model)
    half = HalfPlane.build(32, 12)
    rotations = random_rotations(4, generator=torch.Generator().manual_seed(1))
    z = torch.randn(4, model.zdim, generator=torch.Generator().manual_seed(2))
    ctf = torch.ones(4, len(half.coords))
    return model, half, rotations, z, ctf


@torch.no_grad()
def test_mixed_precision_rounds_the_networks_but_not_the_phase_ramp():
    model, half, rotations, z, ctf = _model_and_inputs()
    shift_px = torch.tensor([[3.7, -2.9]] * 4)
    full = model.render(rotations, torch.zeros(4, 2), z, ctf, half)
    model.mixed_precision = True
    unshifted = model.render(rotations, torch.zeros(4, 2), z, ctf, half)
    shifted = model.render(rotations, shift_px, z, ctf, half)
    # the networks ran in bfloat16: their output moved by its rounding, not more
    relative = float((unshifted - full).abs().norm() / full.abs().norm())
    assert 1e-4 < relative < 3e-2
    # the phase ramp did not: exp(+2 pi i k.t) to float32 precision at 12 px with a 3.7-px shift
    ramp = shifted / unshifted
    expected = torch.polar(torch.ones(len(half.coords)), 2 * torch.pi * (half.coords @ shift_px[0]))
    assert float((ramp - expected).abs().max()) < 1e-4
    assert unshifted.dtype == torch.complex64


@torch.no_grad()
def test_mixed_precision_encoder_gives_float32_rotations():
    model, *_ = _model_and_inputs()
    model.mixed_precision = True
    out = model.encode(torch.randn(8, 32, 32, generator=torch.Generator().manual_seed(3)))
    assert out.rotation.dtype == torch.float32 and out.z_mu.dtype == torch.float32
    gram = out.rotation @ out.rotation.transpose(-1, -2)
    assert float((gram - torch.eye(3)).abs().max()) < 1e-5


def test_mixed_precision_search_and_image_steps_match_float32(tiny_particles, tmp_path):
    config = small_config("hetacumn")
    config.task = dataclasses.replace(config.task, pose_search_images=64, search_rotations=512)
    data = ParticleImages(tiny_particles)
    losses = {}
    for mixed in (False, True):
        torch.manual_seed(0)
        trainer = Trainer(config, data, tmp_path / str(mixed))
        trainer.model.mixed_precision = mixed
        steps = []
        for step in range(3):  # two search-stage steps (64 images), then the image task
            steps.append((trainer.stage(), trainer.train_step(np.arange(32 * step, 32 * step + 32))["loss"]))
            trainer.progress["steps_done"] += 1
            trainer.progress["images_seen"] += 32
        losses[mixed] = steps
    assert [stage for stage, _ in losses[True]] == ["search", "search", "encoder"]
    for (_, exact), (_, rounded) in zip(losses[False], losses[True]):
        assert np.isfinite(rounded) and abs(rounded - exact) < 0.05 * abs(exact)
