"""train's CTF options: a cryoDRGN ctf.pkl for a bare stack (--ctf), or no CTF at all (--no-ctf), which the
checkpoint remembers so that infer models the images the same way."""

from __future__ import annotations

import json
import pickle

import numpy as np

from hetacumn.cli.main import main
from hetacumn.io.mrc import read_mrc


def test_a_bare_stack_with_a_ctf_pickle_trains_as_the_star_file(tiny_dataset, tmp_path):
    common = ["--epochs", "1", "--seed", "3"]
    assert main(["train", str(tiny_dataset / "particles.star"), "-o", str(tmp_path / "star"), *common]) == 0
    assert main(["train", str(tiny_dataset / "particles.mrcs"), "--ctf", str(tiny_dataset / "truth" / "ctf.pkl"),
                 "-o", str(tmp_path / "pkl"), *common]) == 0
    # the pickle holds the STAR file's CTF (in float32): the same run (measured: identical maps and poses)
    maps = [read_mrc(tmp_path / name / "consensus.mrc")[0] for name in ("star", "pkl")]
    assert np.abs(maps[0] - maps[1]).max() <= 1e-5 * np.abs(maps[0]).max()
    poses = [pickle.load(open(tmp_path / name / "poses.pkl", "rb")) for name in ("star", "pkl")]
    assert np.abs(poses[0][0] - poses[1][0]).max() < 1e-5 and np.abs(poses[0][1] - poses[1][1]).max() < 1e-6
    config = json.loads((tmp_path / "pkl" / "config.json").read_text())["config"]["data"]
    assert (config["ctf"], config["use_ctf"]) == (str(tiny_dataset / "truth" / "ctf.pkl"), True)


def test_no_ctf_is_remembered_by_infer(tiny_dataset, tmp_path, capsys):
    stack = str(tiny_dataset / "particles.mrcs")
    assert main(["train", stack, "-o", str(tmp_path / "refused"), "--epochs", "1"]) == 2
    assert "give them with --ctf ctf.pkl, or model none with --no-ctf" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    run = ["train", stack, "--no-ctf", "-o", str(tmp_path / "run"), "--epochs", "1", "--max-minutes", "0.05"]
    assert main(run) == 0
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    # with or without CTF parameters in the file, infer models none, as the run did: the same searched poses and z
    for particles, name in ((stack, "bare"), (str(tiny_dataset / "particles.star"), "star")):
        assert main(["infer", checkpoint, particles, "-o", str(tmp_path / name), "--search"]) == 0
    bare, star = (pickle.load(open(tmp_path / name / "poses.pkl", "rb")) for name in ("bare", "star"))
    assert np.array_equal(bare[0], star[0]) and np.array_equal(bare[1], star[1])
    assert np.array_equal(np.load(tmp_path / "bare" / "z.npy"), np.load(tmp_path / "star" / "z.npy"))
