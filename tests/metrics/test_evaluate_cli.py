"""``hetacumn evaluate`` in-process on small files: the JSON holds the numbers the metrics give."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hetacumn.cli.main import main
from hetacumn.io.mrc import write_mrc
from hetacumn.metrics.fsc import au_fsc, fourier_shell_correlation, resolution_at
from hetacumn.metrics.latent import adjusted_rand_index
from hetacumn.metrics.pose import MIRROR

BOX = 32
VOXEL_SIZE_ANGSTROM = 2.0
N_IMAGES = 300


def _write_pose_pickle(path, rotations: np.ndarray, shift_px: np.ndarray) -> str:
    with open(path, "wb") as handle:
        pickle.dump((rotations, shift_px / BOX), handle)
    return str(path)


@pytest.fixture()
def volumes(tmp_path):
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((BOX,) * 3)
    volume = reference + 0.8 * rng.standard_normal((BOX,) * 3)
    paths = [tmp_path / "reference.mrc", tmp_path / "volume.mrc"]
    write_mrc(paths[0], reference, VOXEL_SIZE_ANGSTROM)
    write_mrc(paths[1], volume, VOXEL_SIZE_ANGSTROM)
    return [str(p) for p in paths], (volume.astype(np.float32), reference.astype(np.float32))


@pytest.fixture()
def poses(tmp_path):
    """True poses, and predictions from a mirrored, rotated map offset by (1, -2, 0.5) px."""
    true_rotations = Rotation.random(N_IMAGES, random_state=1).as_matrix()
    true_shift_px = np.random.default_rng(2).uniform(-3, 3, size=(N_IMAGES, 2))
    g = Rotation.random(random_state=3).as_matrix()
    pred_rotations = MIRROR @ (true_rotations @ g) @ MIRROR
    pred_shift_px = true_shift_px + (true_rotations @ np.array([1.0, -2.0, 0.5]))[:, :2]
    return (
        _write_pose_pickle(tmp_path / "pred.pkl", pred_rotations, pred_shift_px),
        _write_pose_pickle(tmp_path / "true.pkl", true_rotations, true_shift_px),
    )


@pytest.fixture()
def latent(tmp_path):
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1], N_IMAGES // 2)
    z = rng.standard_normal((N_IMAGES, 4))
    z[:, 0] += 12.0 * labels
    flipped = labels.copy()
    flipped[:9] = 1  # 9 of 300 images (3 %) labelled wrongly
    states = np.exp(z[:, 0])
    paths = [tmp_path / name for name in ("z.npy", "labels.npy", "states.npy")]
    for path, array in zip(paths, (z, flipped, states)):
        np.save(path, array)
    return [str(p) for p in paths], (z, flipped)


def test_evaluate_writes_every_metric(tmp_path, volumes, poses, latent, capsys):
    (reference_path, volume_path), (volume, reference) = volumes
    (z_path, labels_path, states_path), (z, labels) = latent
    output = tmp_path / "metrics.json"
    argv = ["evaluate", "--volume", volume_path, "--reference", reference_path, "--poses", poses[0],
            "--true-poses", poses[1], "--z", z_path, "--labels", labels_path, "--states", states_path,
            "-o", str(output)]
    assert main(argv) == 0
    metrics = json.loads(output.read_text())

    pair = metrics["volumes"][0]
    freqs_px, fsc = fourier_shell_correlation(volume, reference)
    # Signal power 1, noise 0.64 in one map: FSC = 1 / sqrt(1.64) = 0.781 in every shell.
    assert np.median(pair["fsc"][1:]) == pytest.approx(1 / math.sqrt(1.64), abs=0.03)
    np.testing.assert_allclose(pair["fsc"], fsc, atol=1e-9)
    assert pair["resolution_fsc0.5_px"] == pytest.approx(2.0)  # never crossed: Nyquist
    assert pair["resolution_fsc0.143_angstrom"] == pytest.approx(2.0 * VOXEL_SIZE_ANGSTROM)
    assert pair["voxel_size_angstrom"] == pytest.approx(VOXEL_SIZE_ANGSTROM)
    assert pair["au_fsc"] == pytest.approx(au_fsc(freqs_px, fsc))

    rotation, translation = metrics["poses"]["rotation"], metrics["poses"]["translation"]
    assert metrics["poses"]["box_size_px"] == BOX
    assert rotation["hand"] == "mirrored"
    assert rotation["median_angle_deg"] < 1e-4 and rotation["mean_view_deg"] < 1e-4
    assert translation["median_px"] > 0.5
    assert translation["offset_removed_median_px"] < 1e-6
    np.testing.assert_allclose(translation["offset_px"], [1.0, -2.0, 0.5], atol=1e-6)

    assert metrics["latent"]["confusion_error"] == pytest.approx(0.03, abs=1e-12)
    assert metrics["latent"]["adjusted_rand_index"] == pytest.approx(adjusted_rand_index(z, labels))
    assert metrics["latent"]["spearman_pc1"] > 0.99
    table = capsys.readouterr().out
    assert "resolution at FSC 0.143" in table and "hand mirrored" in table


def test_evaluate_resolution_of_a_lowpassed_map(tmp_path, volumes):
    """A map zeroed beyond shell 8 crosses every threshold between shells 8 and 9 (at 0.5 halfway)."""
    (reference_path, _), (_, reference) = volumes
    spectrum = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(reference)))
    radius = np.linalg.norm(np.indices((BOX,) * 3) - BOX // 2, axis=0)
    spectrum[radius >= 8.5] = 0
    lowpassed = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(spectrum))).real
    write_mrc(tmp_path / "lowpassed.mrc", lowpassed, VOXEL_SIZE_ANGSTROM)
    output = tmp_path / "lowpassed.json"
    assert main(["evaluate", "--volume", str(tmp_path / "lowpassed.mrc"), "--reference", reference_path,
                 "-o", str(output)]) == 0
    pair = json.loads(output.read_text())["volumes"][0]
    assert pair["resolution_fsc0.5_px"] == pytest.approx(BOX / 8.5, rel=1e-4)
    assert pair["resolution_fsc0.5_angstrom"] == pytest.approx(BOX / 8.5 * VOXEL_SIZE_ANGSTROM, rel=1e-4)
    assert pair["resolution_fsc0.143_px"] == pytest.approx(BOX / (8 + 0.857), rel=1e-4)
    freqs_px, fsc = np.array(pair["freqs_px"]), np.array(pair["fsc"])
    assert resolution_at(freqs_px, fsc, 0.5) == pytest.approx(pair["resolution_fsc0.5_px"])


def test_evaluate_rejects_mismatched_inputs(tmp_path, poses, latent, capsys):
    (z_path, _, _), _ = latent
    short_labels = tmp_path / "short.npy"
    np.save(short_labels, np.zeros(10, dtype=int))
    assert main(["evaluate", "--z", z_path, "--labels", str(short_labels)]) == 2
    assert f"{short_labels}: expected {N_IMAGES} values" in capsys.readouterr().err

    few = Rotation.random(5, random_state=5).as_matrix()
    few_path = _write_pose_pickle(tmp_path / "few.pkl", few, np.zeros((5, 2)))
    assert main(["evaluate", "--poses", few_path, "--true-poses", poses[1], "--box", str(BOX)]) == 2
    assert f"{few_path}: 5 poses but" in capsys.readouterr().err

    existing = tmp_path / "exists.json"
    existing.write_text("{}")
    assert main(["evaluate", "--poses", poses[0], "--true-poses", poses[1], "-o", str(existing)]) == 2
    assert "use --overwrite" in capsys.readouterr().err
    assert main(["evaluate"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_pose_shifts_without_a_box_are_fractions(poses):
    assert main(["evaluate", "--poses", poses[0], "--true-poses", poses[1]]) == 0
