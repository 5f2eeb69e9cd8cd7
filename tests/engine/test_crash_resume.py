"""kill -9 during training, then --resume: the run ends with the same outputs as an uninterrupted one."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import torch


def _train_command(star, outdir, *extra):
    return [sys.executable, "-m", "hetacumn.cli.main", "train", str(star), "-o", str(outdir), "--method", "cryoai",
            "--epochs", "3", "--batch-size", "32", "--checkpoint-every", "64", "--decoder", "voxel", *extra]


def _run(command):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)


def test_kill_9_then_resume_gives_the_uninterrupted_outputs(tiny_dataset, tmp_path):
    star = tiny_dataset / "particles.star"
    _run(_train_command(star, tmp_path / "whole"))

    crashed = tmp_path / "crashed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen(_train_command(star, crashed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (crashed / "checkpoint.pt").exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere after the first checkpoint, possibly during a later write
    assert child.poll() is None, "training ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    images_seen = torch.load(crashed / "checkpoint.pt", weights_only=False)["progress"]["images_seen"]
    assert 64 <= images_seen < 3 * 256  # killed mid-run, at most one interval (64 images) after its checkpoint
    _run(_train_command(star, crashed, "--resume"))

    whole_rot, whole_trans = pickle.load(open(tmp_path / "whole" / "poses.pkl", "rb"))
    rot, trans = pickle.load(open(crashed / "poses.pkl", "rb"))
    assert np.array_equal(rot, whole_rot) and np.array_equal(trans, whole_trans)
    final = torch.load(crashed / "checkpoint.pt", weights_only=False)
    expected = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    assert final["progress"] == expected["progress"]
    assert all(torch.equal(final["model"][k], expected["model"][k]) for k in expected["model"])
