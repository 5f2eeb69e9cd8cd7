"""``hetacumn simulate``: arguments to files, and an existing output folder refused."""

from __future__ import annotations

import json

import numpy as np
import starfile

from hetacumn.cli.main import main
from hetacumn.io.mrc import read_mrc
from hetacumn.simulate.volumes import toy_molecule

ARGS = ["--n-images", "24", "--box", "32", "--apix", "4", "--snr", "inf", "--proportions", "0.25,0.5,0.25",
        "--shift", "2", "--shift-dist", "gaussian", "--defocus-min", "12000", "--defocus-max", "14000",
        "--seed", "3", "--device", "cpu"]


def test_simulate_writes_what_the_arguments_ask(tmp_path):
    out = tmp_path / "sim"
    assert main(["simulate", "-o", str(out), *ARGS]) == 0
    particles = starfile.read(out / "particles.star", always_dict=True)["particles"]
    assert len(particles) == 24
    assert particles["rlnDefocusU"].between(12000, 14000).all()
    config = json.loads((out / "truth" / "config.json").read_text())
    assert (config["proportions"], config["shift_distribution"], config["seed"]) == ([0.25, 0.5, 0.25], "gaussian", 3)
    # Three proportions: three states of the built-in molecule, evenly spaced along its path.
    states = np.load(out / "truth" / "states.npy")
    assert set(np.unique(states)) <= {0.0, 0.5, 1.0}
    np.testing.assert_allclose(read_mrc(out / "truth" / "vol_001.mrc")[0], toy_molecule(32, 4.0, 0.5))


def test_existing_output_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "-o", str(out), *ARGS]) == 0
    stack_bytes = (out / "particles.mrcs").read_bytes()
    assert main(["simulate", "-o", str(out), *ARGS, "--seed", "4"]) == 2
    assert "output directory exists" in capsys.readouterr().err
    assert (out / "particles.mrcs").read_bytes() == stack_bytes  # untouched
    assert main(["simulate", "-o", str(out), *ARGS, "--seed", "4", "--overwrite"]) == 0
    assert (out / "particles.mrcs").read_bytes() != stack_bytes


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["simulate", "-o", str(tmp_path / "a"), *ARGS, "--continuous"]) == 2
    assert "proportions do not apply to continuous mode" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path / "missing.mrc"), "-o", str(tmp_path / "b"), "--box", "32"]) == 2
    assert "no such file" in capsys.readouterr().err
