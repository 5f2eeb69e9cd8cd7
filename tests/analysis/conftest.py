"""A tiny simulated dataset (32 px, two states), a one-epoch run trained on it, and its analysis."""

from __future__ import annotations

import pytest

from hetacumn.cli.main import main as cli
from hetacumn.engine.run import train
from hetacumn.io.particles import load_particles
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset
from tests.engine.conftest import small_config

N_IMAGES = 192
PIXEL_SIZE_ANGSTROM = 4.0
KSAMPLE = 3


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis_sim")
    config = SimulationConfig(n_images=N_IMAGES, box_size=32, pixel_size_angstrom=PIXEL_SIZE_ANGSTROM, snr=100.0,
                              shift_px=2.0, proportions=[0.5, 0.5], seed=3)
    simulate_dataset(config, out, overwrite=True)
    return out


@pytest.fixture(scope="session")
def trained_run(sim_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("analysis_run")
    config = small_config("hetacumn")
    config.data.particles = str(sim_dataset / "particles.star")
    train(config, load_particles(sim_dataset / "particles.star"), run)
    return run


@pytest.fixture(scope="session")
def analyzed_run(trained_run, sim_dataset):
    """The run analysed by the command line (with UMAP and the truth); returns the run folder."""
    args = ["analyze", str(trained_run), "--ksample", str(KSAMPLE), "--truth", str(sim_dataset / "truth"),
            "--device", "cpu"]
    assert cli(args) == 0
    return trained_run
