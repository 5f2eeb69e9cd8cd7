"""Several starts of the search stage (task.search_starts): the best-fitting start goes on."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from hetacumn.data.images import ParticleImages
from hetacumn.engine.checkpoint import load_checkpoint
from hetacumn.engine.run import train
from hetacumn.engine.starts import fit_error
from hetacumn.engine.trainer import Trainer

from .conftest import small_config


def test_fit_error_is_the_mean_image_error_of_the_second_half():
    steps = [(32, 9.0), (64, 5.0), (96, 1.0), (128, 2.0), (160, 7.0)]
    assert fit_error(steps, 128) == pytest.approx(1.5)  # the steps ending at images 65..128
    assert fit_error(steps, 20) == float("inf")


def test_fit_stops_at_the_images_asked(tiny_particles, tmp_path):
    config = small_config("hetacumn")
    trainer = Trainer(config, ParticleImages(tiny_particles), tmp_path)
    trainer.fit(stop_at_images=96)
    assert trainer.progress["images_seen"] == 96 and trainer.progress["epoch"] == 0


def test_the_start_with_the_lowest_image_error_goes_on(tiny_particles, tmp_path):
    config = small_config("hetacumn")
    config.task = dataclasses.replace(config.task, pose_search_images=10_000, search_rotations=512,
                                      search_starts=3, search_start_images=96)
    train(config, tiny_particles, tmp_path)
    log = (tmp_path / "run.log").read_text()
    errors = [float(e) for e in re.findall(r"start \d of 3 \(seed \d+\): mean image error ([\d.e+-]+)", log)]
    chosen = int(re.search(r"start (\d) of 3 goes on", log).group(1)) - 1
    assert len(errors) == 3 and chosen == int(np.argmin(errors))
    # the run's checkpoint carries the chosen start's seeds; its metrics begin with that start's records
    assert load_checkpoint(tmp_path / "checkpoint.pt")["progress"]["seed_offset"] == chosen
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert first["images_seen"] <= 96 and not (tmp_path / "starts").exists()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["progress"]["images_seen"] == len(tiny_particles)
