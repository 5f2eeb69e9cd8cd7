"""The refinement stage: per-particle Adam on the poses, the memory-mapped pose table, resume, inference."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from hetacumn.config.presets import preset
from hetacumn.data.images import ParticleImages
from hetacumn.data.pose_table import PoseTable
from hetacumn.engine.run import infer_particles, train
from hetacumn.engine.trainer import Trainer
from hetacumn.models.lattice import HalfPlane
from hetacumn.models.model import HetModel
from hetacumn.physics.fourier import fft3_centered
from hetacumn.physics.rotations import (
    axis_angle_to_matrix,
    geodesic_distance_rad,
    random_rotations,
)
from hetacumn.simulate.volumes import toy_molecule
from hetacumn.tasks.base import StepContext, ctf_at, weighted_mse
from hetacumn.tasks.refine import (
    fresh_rows,
    refine_poses,
    rendered_error,
    volume_rendered_error,
)

from .conftest import next_step_before_and_after_resume, small_config

BOX = 32


def _degrees(a, b):
    return torch.rad2deg(geodesic_distance_rad(a.float(), b.float()))


@pytest.fixture(scope="module")
def known_model():
    """A voxel decoder holding the built-in molecule's transform exactly (envelope 1)."""
    config = preset("cryoai", box_size=BOX, zdim=0)
    config.model.decoder = dataclasses.replace(config.model.decoder, kind="voxel")
    model = HetModel(config.model)
    volume_ft = fft3_centered(torch.as_tensor(toy_molecule(BOX, 4.0)).float())
    with torch.no_grad():
        model.decoder.inner.grids[0, 0] = volume_ft.real
        model.decoder.inner.grids[0, 1] = volume_ft.imag
    return model


@pytest.mark.parametrize("against", ["decoder", "grid"])
def test_refinement_returns_from_ten_degrees_to_within_one_and_leaves_the_decoder_alone(known_model, against):
    generator = torch.Generator().manual_seed(1)
    rotations = random_rotations(64, generator=generator)
    shift_px = torch.rand(64, 2, generator=generator) * 4 - 2
    half = HalfPlane.build(BOX, 10)
    targets = known_model.render(rotations, shift_px, None, 1.0, half).detach()  # noiseless
    axes = torch.nn.functional.normalize(torch.randn(64, 3, generator=torch.Generator().manual_seed(2)), dim=-1)
    start = rotations @ axis_angle_to_matrix(axes * math.radians(10))

    context = StepContext(half, None, 0, generator, deterministic=True)
    if against == "decoder":
        error_of = rendered_error(known_model, targets, None, None, context)
    else:  # the decoder evaluated once on its grid, as `infer --refine` does for a homogeneous model
        error_of = volume_rendered_error(known_model.fourier_volume(None, max_radius_px=12), targets, None, context)

    rows, _ = refine_poses(error_of, fresh_rows(start, shift_px.round()), steps=60, lr_rad=0.02, lr_px=0.1)
    assert float(_degrees(start, rotations).min()) > 9.9
    error = _degrees(rows.rotation, rotations)
    assert float(error.median()) < 1.0 and float(error.max()) < 2.0  # measured: 0.31 / 0.89 deg
    assert float((rows.shift_px.float() - shift_px).abs().median()) < 0.05
    assert torch.all(rows.steps == 60)
    assert all(p.grad is None for p in known_model.parameters())


def test_pose_table_reads_back_what_was_written_and_restores_its_snapshot(tmp_path):
    table = PoseTable.create(tmp_path / "pose_table.npy", 10)
    assert not table.initialised.any()
    rotation = random_rotations(3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    table.set_poses(np.array([1, 5, 7]), rotation, torch.tensor([[0.5, -1.0], [0, 0], [2.0, 3.0]]))
    table.snapshot()
    rows = table.read(np.array([5, 7, 1]))
    assert torch.equal(rows.rotation, rotation[[1, 2, 0]])
    assert rows.shift_px[1].tolist() == [2.0, 3.0]
    assert table.initialised.tolist() == [False, True, False, False, False, True, False, True, False, False]
    table.set_poses(np.array([0]), rotation[:1], torch.zeros(1, 2))  # after the snapshot: undone by restore
    table.restore()
    assert table.initialised.sum() == 3 and not table.initialised[0]
    with pytest.raises(ValueError, match="expected \\(11, 23\\)"):
        PoseTable.open(tmp_path / "pose_table.npy", 11)


def test_table_rows_start_at_the_encoders_best_hypothesis(tiny_particles, tmp_path):
    config = small_config("cryoai")
    config.task = dataclasses.replace(config.task, refine_start_images=1, refine_steps=0)
    trainer = Trainer(config, ParticleImages(tiny_particles), tmp_path)
    trainer.progress["images_seen"] = 1
    assert trainer.stage() == "refine"
    index = np.arange(32)
    batch = trainer.data.batch(index, trainer.device)
    half = trainer.half_plane()
    context = StepContext(half, ctf_at(half, batch), 1, trainer.generator,
                          deterministic=True)
    with torch.no_grad():
        expected = trainer.image_task.step(trainer.model, batch, context)
    trainer.train_step(index)
    rows = trainer.pose_table.read(index)
    assert float(_degrees(rows.rotation, expected.rotation).max()) < 1e-3
    assert torch.allclose(rows.shift_px.float(), expected.shift_px, atol=1e-6)
    assert trainer.pose_table.initialised.sum() == 32


def test_resume_in_the_refinement_stage_reproduces_the_next_step_and_the_table(tiny_particles, tmp_path):
    config = small_config("hetacumn")
    config.task = dataclasses.replace(config.task, refine_start_images=32, refine_steps=2)
    expected, resumed = next_step_before_and_after_resume(config, tiny_particles, tmp_path)
    assert "refine_mse_before" in expected
    assert resumed == expected
    # the resumed trainer rewrote rows 96..127 from the restored table: rerunning step 4 gives the same rows
    table = PoseTable.open(tmp_path / "pose_table.npy", len(tiny_particles))
    assert table.initialised.sum() == 128 - 32  # the first batch was trained before the stage began


def _mean_rendered_error(model, data, rotations, shift_px, radius_px):
    half = HalfPlane.build(data.box_size, radius_px)
    batch = data.batch(np.arange(len(data)), torch.device("cpu"))
    ctf = ctf_at(half, batch)
    with torch.no_grad():
        z = None if model.zdim == 0 else model.encode(batch.images).z_mu
        rendered = model.render(torch.as_tensor(rotations).float(), torch.as_tensor(shift_px).float(), z, ctf, half)
        return float(weighted_mse(rendered, half.gather(batch.images_ft), half).mean())


def test_train_writes_table_poses_and_infer_refine_lowers_the_error(tiny_particles, tmp_path):
    config = small_config("cryoai")
    config.train = dataclasses.replace(config.train, epochs=2)
    config.task = dataclasses.replace(config.task, refine_start_images=64)
    (tmp_path / "run").mkdir()
    result = train(config, tiny_particles, tmp_path / "run")
    table = PoseTable.open(tmp_path / "run" / "pose_table.npy", len(tiny_particles))
    rows = table.read(np.arange(len(tiny_particles)))
    assert table.initialised.all()  # every image was visited in the second epoch
    assert np.abs(result.rotations - rows.rotation.numpy()).max() < 1e-9

    amortized = infer_particles(tmp_path / "run" / "checkpoint.pt", tiny_particles, tmp_path / "amortized")
    refined = infer_particles(tmp_path / "run" / "checkpoint.pt", tiny_particles, tmp_path / "refined", refine_steps=10)
    model = HetModel.from_checkpoint(tmp_path / "run" / "checkpoint.pt")
    data = ParticleImages(tiny_particles, scale=config.data.scale)
    before = _mean_rendered_error(model, data, amortized.rotations, amortized.shift_px, 8)
    after = _mean_rendered_error(model, data, refined.rotations, refined.shift_px, 8)
    assert after < 0.9 * before
    cost = json.loads((tmp_path / "refined" / "inference_cost.json").read_text())
    assert cost["images"] == 256 and cost["refine_steps"] == 10
    assert set(cost["ms_per_image"]) == {"encoder", "refine"}  # the parts timed (their sizes: BENCHMARKS.md)
    assert min(cost["ms_per_image"].values()) > 0
