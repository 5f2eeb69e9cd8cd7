"""Particle contrast: dark particles (the opposite of RELION's convention) are detected and inverted, so the
maps keep positive density; the real EMPIAR-10076 particles of the interop fixtures are dark."""

from __future__ import annotations

import dataclasses
import shutil

import mrcfile
import numpy as np
import pytest
import torch

from hetacumn.cli.main import main
from hetacumn.data.contrast import DECISIVE_SCORE, contrast_decision, particles_contrast_score
from hetacumn.engine.run import train
from hetacumn.errors import InputError
from hetacumn.io.mrc import read_mrc
from hetacumn.io.particles import load_particles

from .conftest import small_config


@pytest.fixture(scope="module")
def dark_dataset(tiny_dataset, tmp_path_factory):
    """The tiny dataset with every image negated: what a cryoDRGN-sign simulation or an uninverted stack looks like."""
    out = tmp_path_factory.mktemp("dark")
    shutil.copytree(tiny_dataset, out, dirs_exist_ok=True)
    with mrcfile.open(out / "particles.mrcs", mode="r+") as stack:
        stack.data[...] = -stack.data
    return out


def test_contrast_score_of_simulated_real_and_foreign_stacks(tiny_dataset, dark_dataset, interop_dir):
    scores = {name: particles_contrast_score(load_particles(path)) for name, path in {
        "ours": tiny_dataset / "particles.star", "ours negated": dark_dataset / "particles.star",
        "cryoDRGN toy": interop_dir / "toy_projections.star", "cryoDRGN hand": interop_dir / "hand.mrcs",
        "EMPIAR-10076": interop_dir / "empiar_10076_7.star"}.items()}
    # measured: ours +47.7, negated -47.7, toy +278, hand +473, EMPIAR-10076 (7 real 320-px particles) -6.95
    assert scores["ours"] > DECISIVE_SCORE and scores["ours negated"] == pytest.approx(-scores["ours"])
    assert scores["cryoDRGN toy"] > DECISIVE_SCORE and scores["cryoDRGN hand"] > DECISIVE_SCORE
    assert scores["EMPIAR-10076"] < -DECISIVE_SCORE  # deposited without inversion: dark on a light background
    assert [contrast_decision("auto", s) for s in (scores["ours"], scores["ours negated"], 0.5)] == [False, True, False]
    assert contrast_decision("invert", 30.0) and not contrast_decision("as-is", -30.0)
    with pytest.raises(InputError, match="unknown mode"):
        contrast_decision("flip", 1.0)


def _volume(path) -> torch.Tensor:
    return torch.as_tensor(read_mrc(path)[0]).double()


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def _map_correlation(run_dir, truth_dir) -> float:
    true = sum(_volume(truth_dir / "truth" / f"vol_00{k}.mrc") for k in (0, 1))
    return _correlation(_volume(run_dir / "consensus.mrc"), true)


@pytest.mark.parametrize("contrast, sign", [("auto", 1), ("as-is", -1)])
def test_dark_particles_train_to_a_map_of_positive_density(dark_dataset, tiny_dataset, tmp_path, contrast, sign):
    particles = load_particles(dark_dataset / "particles.star", poses=dark_dataset / "truth" / "poses.pkl")
    config = small_config("cryoai")
    config.train = dataclasses.replace(config.train, epochs=4, log_every_steps=100)
    config.task = dataclasses.replace(config.task, refine_steps=0)
    config.data.poses, config.data.contrast = str(dark_dataset / "truth" / "poses.pkl"), contrast
    (tmp_path / "run").mkdir()
    train(config, particles, tmp_path / "run")
    correlation = _map_correlation(tmp_path / "run", tiny_dataset)
    assert sign * correlation > 0.5  # measured: +0.88 (auto), -0.91 (as-is)
    assert (config.data.scale < 0) == (contrast == "auto")


def test_reconstruct_negates_the_map_of_dark_particles(dark_dataset, tiny_dataset, tmp_path):
    maps = {}
    for contrast in ("auto", "as-is"):
        out = tmp_path / f"{contrast}.mrc"
        assert main(["reconstruct", str(dark_dataset / "particles.star"), "--poses",
                     str(dark_dataset / "truth" / "poses.pkl"), "-o", str(out), "--contrast", contrast]) == 0
        maps[contrast] = _volume(out)
    true = _volume(tiny_dataset / "truth" / "vol_000.mrc")
    correlation = {k: _correlation(v, true) for k, v in maps.items()}  # measured: +0.94 and -0.94
    assert correlation["auto"] > 0.5 and correlation["as-is"] == pytest.approx(-correlation["auto"])


def test_analyze_half_maps_follow_the_runs_contrast(dark_dataset, tiny_dataset, tmp_path):
    from hetacumn.analysis.run import TrainedRun, _halfmap_fsc
    from hetacumn.config.schema import RunConfig

    particles = load_particles(dark_dataset / "particles.star", poses=dark_dataset / "truth" / "poses.pkl")
    true = _volume(tiny_dataset / "truth" / "vol_000.mrc")
    correlation = {}
    for scale in (-1.0, 1.0):  # a run that inverted its images (auto on dark particles), and one that did not
        config = RunConfig()
        config.data.scale = scale
        run = TrainedRun(tmp_path, config, np.zeros((len(particles), 1)), particles, 4.0)
        _halfmap_fsc(run, tmp_path / f"halfmaps{scale:+.0f}", torch.device("cpu"))
        correlation[scale] = _correlation(_volume(tmp_path / f"halfmaps{scale:+.0f}" / "full.mrc"), true)
    assert correlation[-1.0] > 0.5 and correlation[1.0] == pytest.approx(-correlation[-1.0])  # measured: +0.94


def test_infer_turns_a_stack_of_the_opposite_contrast_the_training_way(tiny_dataset, dark_dataset, tmp_path):
    from hetacumn.engine.run import infer_particles

    config = small_config("cryoai")
    config.task = dataclasses.replace(config.task, refine_steps=0)
    (tmp_path / "run").mkdir()
    train(config, load_particles(tiny_dataset / "particles.star"), tmp_path / "run")
    assert config.data.scale > 0  # white particles: used as they are
    results = [infer_particles(tmp_path / "run" / "checkpoint.pt", load_particles(folder / "particles.star"),
                               tmp_path / name) for folder, name in ((tiny_dataset, "white"), (dark_dataset, "dark"))]
    # the dark stack is inverted before the encoder: exactly the white stack's poses
    assert np.array_equal(results[0].rotations, results[1].rotations)
    assert np.array_equal(results[0].shift_px, results[1].shift_px)
