"""The consensus phase (hetacumn) and cryoFIRE's pose-only phase: z drawn from the prior, not the encoder."""

from __future__ import annotations

import pytest
import torch

from hetacumn.models.lattice import HalfPlane
from hetacumn.models.model import HetModel
from hetacumn.tasks.base import StepContext
from hetacumn.tasks.image import ImageReconstructionTask
from tests.engine.conftest import small_config


def _latent_at(method: str, images_seen: int, n_images: int = 2048):
    config = small_config(method)
    torch.manual_seed(0)
    model = HetModel(config.model)
    enc = model.encode(torch.randn(n_images, 32, 32))
    context = StepContext(HalfPlane.build(32, 8), None, images_seen, torch.Generator().manual_seed(0))
    task = ImageReconstructionTask(config.task, config.model.z_mode)
    return config, enc, task.latent(enc, context)


@pytest.mark.parametrize("method, std", [("cryofire", 3.0), ("hetacumn", 1.0)])
def test_consensus_phase_draws_z_from_the_prior(method, std):
    config, enc, (z, z_report, z_sample, kl) = _latent_at(method, images_seen=0)
    assert config.task.consensus_images > 0
    assert not z.requires_grad  # the conformation head gets no gradient from the image loss
    assert kl is None
    assert float(z.std()) == pytest.approx(std, rel=0.05)
    assert float(z.mean()) == pytest.approx(0.0, abs=0.1 * std)
    # independent of the encoder's means
    correlation = torch.corrcoef(torch.stack([z.flatten(), enc.z_mu.detach().flatten()]))[0, 1]
    assert abs(float(correlation)) < 0.05


def test_cryofire_uses_the_encoder_after_its_pose_only_phase():
    config, enc, (z, z_report, z_sample, kl) = _latent_at("cryofire", images_seen=10**9)
    assert torch.equal(z, enc.z_mu)
    assert z.requires_grad
    assert kl is None  # an autoencoder: no KL term
