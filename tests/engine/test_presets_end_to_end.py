"""Every preset runs train -> infer -> volume, and the outputs agree with each other."""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest

from hetacumn.cli.main import main as cli
from hetacumn.config.io import load_config
from hetacumn.engine.run import infer_particles, train
from hetacumn.io.mrc import read_mrc
from hetacumn.io.particles import load_particles
from hetacumn.models.model import HetModel
from tests.engine.conftest import small_config


@pytest.mark.parametrize("method", ["cryoai", "cryofire", "acehetem", "hetacumn"])
def test_preset_train_infer_volume(method, tiny_dataset, tiny_particles, tmp_path):
    config = small_config(method)
    run = tmp_path / "run"
    run.mkdir()
    package_level = logging.getLogger("hetacumn").level
    result = train(config, tiny_particles, run)
    assert logging.getLogger("hetacumn").level == package_level  # run.log's INFO set-up is undone

    rot, trans = pickle.load(open(run / "poses.pkl", "rb"))
    assert rot.shape == (256, 3, 3)
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    assert np.allclose(np.linalg.det(rot), 1, atol=1e-5)
    assert np.abs(trans).max() <= config.model.shift_range_px / 32 + 1e-6
    assert load_config(run / "config.json") == config
    records = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert records[-1]["images_seen"] == 256 and records[-1]["images_per_s"] > 0
    log_text = (run / "run.log").read_text()
    assert f"schedule: {method}, 1 epochs of 256 images (256 images); poses from the encoder" in log_text
    assert "epoch 1/1: loss " in log_text and "256 images seen" in log_text
    if method == "cryoai":
        assert not (run / "z.npy").exists() and result.z is None
    else:
        z = np.load(run / "z.npy")
        assert z.shape == (256, 2) and np.isfinite(z).all() and z.std(0).min() > 0

    # poses.star is read back by the foundation's reader to the same rotations and shifts
    back = load_particles(run / "poses.star")
    assert np.abs(back.poses.rotations - rot).max() < 1e-5
    assert np.abs(back.poses.shift_px - trans * 32).max() < 1e-4
    assert np.allclose(back.ctf.defocus_u_angstrom.numpy(), tiny_particles.ctf.defocus_u_angstrom.numpy())

    # amortized inference on the same images reproduces what training wrote
    inferred = infer_particles(run / "checkpoint.pt", tiny_particles, tmp_path / "infer")
    assert np.abs(inferred.rotations - rot).max() < 1e-4

    # the checkpoint rebuilds the model alone, and volume writes maps with the data's voxel size
    model = HetModel.from_checkpoint(run / "checkpoint.pt")
    assert model.config == config.model
    z_file = tmp_path / "z.txt"
    np.savetxt(z_file, np.zeros((2, max(config.model.zdim, 1))) if method != "cryoai" else np.zeros((1, 0)))
    args = ["volume", str(run / "checkpoint.pt"), "-o", str(tmp_path / "vols")]
    if method != "cryoai":
        args += ["--z", str(z_file)]
    assert cli(args) == 0
    volume, voxel = read_mrc(tmp_path / "vols" / "vol_000.mrc")
    assert voxel == pytest.approx(4.0, rel=1e-5)
    assert volume.shape == (32, 32, 32) and np.isfinite(volume).all() and volume.std() > 0


def test_volume_flip_mirrors_about_the_centre_voxel(tiny_particles, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    train(small_config("cryoai"), tiny_particles, run)
    assert cli(["volume", str(run / "checkpoint.pt"), "-o", str(tmp_path / "plain")]) == 0
    assert cli(["volume", str(run / "checkpoint.pt"), "-o", str(tmp_path / "flip"), "--flip"]) == 0
    plain, _ = read_mrc(tmp_path / "plain" / "vol_000.mrc")
    flipped, _ = read_mrc(tmp_path / "flip" / "vol_000.mrc")
    z = np.arange(32)
    mirrored_z = (2 * 16 - z) % 32  # z -> -z about index D // 2
    assert np.allclose(flipped, plain[mirrored_z], atol=1e-6)


def test_a_broken_checkpoint_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    assert cli(["volume", str(bad), "-o", str(tmp_path / "vols")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "checkpoint" in err[0]
