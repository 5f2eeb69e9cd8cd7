"""``hetacumn analyze`` and ``hetacumn select`` on a one-epoch run trained on a tiny simulated dataset."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from hetacumn.cli.main import main as cli
from hetacumn.io.mrc import read_mrc
from hetacumn.io.particles import load_particles
from tests.analysis.conftest import KSAMPLE, N_IMAGES, PIXEL_SIZE_ANGSTROM


def test_analyze_writes_volumes_subsets_and_summary(analyzed_run):
    out = analyzed_run / "analyze"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_particles"] == N_IMAGES and summary["pixel_size_angstrom"] == pytest.approx(PIXEL_SIZE_ANGSTROM)
    for folder, count in ((f"kmeans{KSAMPLE}", KSAMPLE), ("pc1", 10), ("pc2", 10)):
        for i in range(count):
            volume, voxel = read_mrc(out / folder / f"vol_{i:03d}.mrc")
            assert voxel == pytest.approx(PIXEL_SIZE_ANGSTROM, rel=1e-6) and volume.shape == (32, 32, 32)
    z = np.load(analyzed_run / "z.npy")
    centres = np.loadtxt(out / f"kmeans{KSAMPLE}" / "centre_indices.txt", dtype=int)
    assert np.allclose(np.loadtxt(out / f"kmeans{KSAMPLE}" / "z_values.txt"), z[centres], atol=1e-6)

    halfmap = summary["halfmap"]
    assert 2.0 <= halfmap["resolution_fsc0.143_px"] <= 32.0
    assert halfmap["resolution_fsc0.143_angstrom"] == pytest.approx(halfmap["resolution_fsc0.143_px"] * 4.0)
    assert sum(halfmap["n_particles"]) == N_IMAGES
    _, voxel = read_mrc(out / "halfmaps" / "full.mrc")
    assert voxel == pytest.approx(PIXEL_SIZE_ANGSTROM, rel=1e-6)

    labels = np.load(out / "labels.npy")
    assert labels.shape == (N_IMAGES,) and summary["kmeans"]["class_sizes"] == np.bincount(labels).tolist()
    subsets = [pickle.load(open(entry["indices"], "rb")) for entry in summary["subsets"]]
    assert np.array_equal(np.sort(np.concatenate(subsets)), np.arange(N_IMAGES))
    assert np.load(out / "umap.npy").shape == (N_IMAGES, 2)
    assert 1 <= summary["gmm"]["best_k"] <= 10 and len(summary["gmm"]["bic"]) == 10

    truth = summary["truth"]
    assert 0.0 <= truth["latent"]["confusion_error"] <= 0.5
    assert 0.0 <= truth["rotation"]["median_angle_deg"] <= 180.0
    assert [c["class"] for c in truth["class_volumes"]] == list(range(KSAMPLE))
    assert all(2.0 <= c["resolution_fsc0.143_px"] <= 32.0 for c in truth["class_volumes"])
    assert set(summary["timings_s"]) >= {"pca", "umap", "kmeans", "gmm_bic", "subsets", "volumes", "halfmap_fsc"}
    report = (out / "report.html").read_text()
    assert "Resolution" in report and report.count("data:image/png;base64,") >= KSAMPLE + 6


def test_select_and_invert_are_complementary_subsets(analyzed_run, tmp_path):
    labels = np.load(analyzed_run / "analyze" / "labels.npy")
    run_particles = load_particles(analyzed_run / "poses.star")
    assert cli(["select", str(analyzed_run), "--classes", "0,2", "-o", str(tmp_path / "keep.star")]) == 0
    assert cli(["select", str(analyzed_run), "--classes", "0,2", "--invert", "-o", str(tmp_path / "drop.star")]) == 0
    keep = pickle.load(open(tmp_path / "keep.pkl", "rb"))
    drop = pickle.load(open(tmp_path / "drop.pkl", "rb"))
    assert np.array_equal(keep, np.flatnonzero(np.isin(labels, [0, 2])))
    assert np.array_equal(np.sort(np.concatenate([keep, drop])), np.arange(N_IMAGES))
    kept = load_particles(tmp_path / "keep.star")
    assert np.array_equal(kept.images.read(np.arange(len(kept))), run_particles.images.read(keep))
    assert np.abs(kept.poses.rotations - run_particles.poses.rotations[keep]).max() < 1e-5


def test_select_refuses_unknown_class(analyzed_run, tmp_path, capsys):
    assert cli(["select", str(analyzed_run), "--classes", "7", "-o", str(tmp_path / "x.star")]) == 2
    assert "class 7 not found" in capsys.readouterr().err
    assert not (tmp_path / "x.star").exists()


def test_analyze_refuses_a_homogeneous_run_and_its_own_folder(analyzed_run, tmp_path, capsys):
    assert cli(["analyze", str(tmp_path), "--device", "cpu"]) == 2
    assert "config.json: not found" in capsys.readouterr().err
    for name in ("config.json", "checkpoint.pt", "poses.star"):
        shutil.copy(analyzed_run / name, tmp_path / name)
    assert cli(["analyze", str(tmp_path), "--device", "cpu"]) == 2
    assert "z.npy: no latents" in capsys.readouterr().err
    assert cli(["analyze", str(analyzed_run), "-o", str(analyzed_run.parent), "--overwrite", "--device", "cpu"]) == 2
    assert "is the run folder or contains it" in capsys.readouterr().err
    assert (analyzed_run / "checkpoint.pt").is_file()
