"""Training and inference on images Fourier-cropped as they are read (``train --box D``): the same images as
``hetacumn downsample`` writes, poses and shifts written for the original stacks, volumes with the scaled
voxel size, and a checkpoint that infers on the original stacks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from hetacumn.cli.main import main
from hetacumn.data.cropped import fourier_cropped, training_box
from hetacumn.engine.checkpoint import load_checkpoint
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.mrc import read_mrc
from hetacumn.io.particles import load_particles
from hetacumn.physics.resample import fourier_crop_volume
from hetacumn.physics.rotations import geodesic_distance_rad
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset

N_IMAGES, BOX, SMALL, APIX = 64, 32, 16, 3.0


@pytest.fixture(scope="module")
def cropped_run(tmp_path_factory):
    """64 simulated 32-px images (shifts up to 3 px), a hetacumn run at their true poses trained on them cropped
    to 16 px (two epochs), and the particles written again by ``hetacumn downsample`` (root/small.star)."""
    root = tmp_path_factory.mktemp("cropped")
    config = SimulationConfig(n_images=N_IMAGES, box_size=BOX, pixel_size_angstrom=APIX, snr=10.0, shift_px=3.0,
                              seed=5)
    simulate_dataset(config, root / "sim")
    truth = root / "sim" / "truth" / "poses.pkl"
    argv = ["train", root / "sim" / "particles.star", "-o", root / "run", "--box", SMALL, "--poses", truth,
            "--epochs", 2, "--batch-size", 32, "--zdim", 2, "--device", "cpu"]
    assert main([str(a) for a in argv]) == 0
    argv = ["downsample", root / "sim" / "particles.star", "-D", SMALL, "-o", root / "small.mrcs", "--star",
            root / "small.star"]
    assert main([str(a) for a in argv]) == 0
    return root


def test_cropped_view_reads_what_downsample_writes(cropped_run):
    particles = load_particles(cropped_run / "sim" / "particles.star",
                               poses=cropped_run / "sim" / "truth" / "poses.pkl")
    view = fourier_cropped(particles, SMALL)
    written = load_particles(cropped_run / "small.star")
    assert view.box_size == SMALL
    index = np.arange(0, N_IMAGES, 7)
    np.testing.assert_allclose(view.images.read(index), written.images.read(index), atol=1e-5)
    np.testing.assert_allclose(view.pixel_size_angstrom, APIX * BOX / SMALL)
    np.testing.assert_allclose(view.poses.shift_px, particles.poses.shift_px * SMALL / BOX)


def test_outputs_hold_the_original_images_shifts_and_the_models_voxel_size(cropped_run):
    truth = read_pose_pickle(cropped_run / "sim" / "truth" / "poses.pkl", BOX)
    assert np.abs(truth.shift_px).max() > 1.0  # a scale error in the shifts would show
    written = load_particles(cropped_run / "sim" / "particles.star", poses=cropped_run / "run" / "poses.star")
    np.testing.assert_allclose(written.poses.shift_px, truth.shift_px, atol=1e-4)  # Å in the STAR, back to px
    pickled = read_pose_pickle(cropped_run / "run" / "poses.pkl", BOX)
    np.testing.assert_allclose(pickled.shift_px, truth.shift_px, atol=1e-4)
    np.testing.assert_allclose(pickled.rotations, truth.rotations, atol=1e-5)
    volume, voxel_size = read_mrc(cropped_run / "run" / "consensus.mrc")
    assert volume.shape == (SMALL,) * 3
    assert voxel_size == pytest.approx(APIX * BOX / SMALL, rel=1e-5)
    assert "images Fourier-cropped from 32 to 16 px as they are read: 6 Å/px, Nyquist 12 Å" in \
        (cropped_run / "run" / "run.log").read_text()


def test_checkpoint_infers_on_the_original_stacks(cropped_run):
    """``infer --poses`` at the true poses returns them (shifts in the original px) and the training's z."""
    argv = ["infer", cropped_run / "run" / "checkpoint.pt", cropped_run / "sim" / "particles.star", "-o",
            cropped_run / "inferred", "--poses", cropped_run / "sim" / "truth" / "poses.pkl", "--device", "cpu"]
    assert main([str(a) for a in argv]) == 0
    truth = read_pose_pickle(cropped_run / "sim" / "truth" / "poses.pkl", BOX)
    inferred = read_pose_pickle(cropped_run / "inferred" / "poses.pkl", BOX)
    np.testing.assert_allclose(inferred.shift_px, truth.shift_px, atol=1e-4)
    angles = geodesic_distance_rad(torch.from_numpy(inferred.rotations), torch.from_numpy(truth.rotations))
    assert float(angles.max()) < 1e-4
    trained_z, inferred_z = (np.load(cropped_run / name / "z.npy") for name in ("run", "inferred"))
    assert np.corrcoef(trained_z[:, 0], inferred_z[:, 0])[0, 1] > 0.99


def test_training_box_choices():
    assert training_box(256, "auto", "cpu") == 64
    assert training_box(256, "auto", "cuda:0") == 128
    assert training_box(48, "auto", "cpu") == 48
    assert training_box(65, "auto", "cpu") == 64
    assert training_box(63, "auto", "cpu") == 63  # odd and small: refused later, with the remedy
    assert training_box(256, "full", "cpu") == 256
    assert training_box(256, "96", "cpu") == 96
    for bad in ("95", "300", "4", "big"):
        with pytest.raises(ValueError, match="is not an even number of px from 8 to the images' 256, nor auto or full"):
            training_box(256, bad, "cpu")


def test_large_reads_are_cropped_in_chunks(cropped_run, monkeypatch):
    """A read of more than ``READ_CHUNK`` images gives what one read per image gives, in the order asked."""
    import hetacumn.data.cropped as cropped

    monkeypatch.setattr(cropped, "READ_CHUNK", 5)
    view = fourier_cropped(load_particles(cropped_run / "sim" / "particles.star"), SMALL)
    order = np.random.default_rng(0).permutation(N_IMAGES)[:23]
    one_by_one = np.stack([view.images.read(np.array([i]))[0] for i in order])
    np.testing.assert_array_equal(view.images.read(order), one_by_one)


def test_resume_continues_a_cropped_run(cropped_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(cropped_run / "run", run)
    argv = ["train", cropped_run / "sim" / "particles.star", "-o", run, "--poses",  # --box auto: the run's own
            cropped_run / "sim" / "truth" / "poses.pkl", "--epochs", 3, "--batch-size", 32, "--zdim", 2,
            "--device", "cpu", "--resume"]
    assert main([str(a) for a in argv]) == 0
    assert "resumed from" in (run / "run.log").read_text()
    assert load_checkpoint(run / "checkpoint.pt")["progress"]["images_seen"] == 3 * N_IMAGES


def test_relion_256px_particles_train_cropped_and_keep_their_poses(interop_dir, tmp_path):
    """The RELION 3.1 fixture's 5 particles of 256 px trained at their own poses with the CPU default (cropped to
    64 px): poses.star gives back the file's rotations and shifts, with its optics (256 px, 2.806 Å)."""
    star = interop_dir / "relion31.star"
    argv = ["train", star, "-o", tmp_path / "run", "--poses", star, "--epochs", 1, "--batch-size", 5, "--zdim", 1,
            "--device", "cpu"]
    assert main([str(a) for a in argv]) == 0
    given = load_particles(star).poses
    assert np.abs(given.shift_px).max() > 0.2  # a shift scaled by 4 (or 1/4) would be 0.17 px off or more
    written = load_particles(star, poses=tmp_path / "run" / "poses.star")
    np.testing.assert_allclose(written.poses.shift_px, given.shift_px, atol=1e-3)
    np.testing.assert_allclose(written.poses.rotations, given.rotations, atol=1e-5)
    assert list(written.optics["rlnImageSize"]) == [256]
    assert read_mrc(tmp_path / "run" / "consensus.mrc")[1] == pytest.approx(2.806 * 4, rel=1e-4)


def test_real_320px_particles_train_ab_initio_cropped(interop_dir, tmp_path):
    """EMPIAR-10076's 7 experimental 320-px particles (RELION 3.0 STAR, dark) train ab initio at 64 px."""
    argv = ["train", interop_dir / "empiar_10076_7.star", "-o", tmp_path / "run", "--epochs", 2, "--batch-size", 7,
            "--zdim", 1, "--device", "cpu"]
    assert main([str(a) for a in argv]) == 0
    assert "cropped from 320 to 64 px as they are read: 6.55 Å/px, Nyquist 13.1 Å" in (tmp_path / "run" / "run.log").read_text()
    assert read_mrc(tmp_path / "run" / "consensus.mrc")[1] == pytest.approx(1.31 * 5, rel=1e-4)
    assert len(read_pose_pickle(tmp_path / "run" / "poses.pkl", 320)) == 7


def test_volumes_on_the_particles_grid(cropped_run, tmp_path):
    """``volume --box images`` writes the 16-px model's map on the 32-px grid at 3 Å; cropped back, it is the
    model's own map (the padding drops only the Nyquist planes, which the decoder leaves empty)."""
    checkpoint = cropped_run / "run" / "checkpoint.pt"
    assert main(["volume", str(checkpoint), "-o", str(tmp_path / "fine"), "--box", "images", "--device", "cpu"]) == 0
    assert main(["volume", str(checkpoint), "-o", str(tmp_path / "model"), "--device", "cpu"]) == 0
    fine, voxel = read_mrc(tmp_path / "fine" / "vol_000.mrc")
    model_map, model_voxel = read_mrc(tmp_path / "model" / "vol_000.mrc")
    assert fine.shape == (BOX,) * 3 and voxel == pytest.approx(APIX, rel=1e-5)
    assert model_map.shape == (SMALL,) * 3 and model_voxel == pytest.approx(2 * APIX, rel=1e-5)
    back = fourier_crop_volume(torch.from_numpy(fine).double(), SMALL).numpy()
    assert np.abs(back - model_map).max() < 1e-6 * np.abs(model_map).max()  # the decoder leaves them empty
