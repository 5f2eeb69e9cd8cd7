"""The run log's schedule line names each stage with its image counts."""

from __future__ import annotations

import dataclasses

from hetacumn.config.describe import describe_schedule
from hetacumn.config.presets import preset, with_search_stage


def test_default_schedule_in_words():
    config = with_search_stage(preset("hetacumn", box_size=64), 40_000)
    config.train = dataclasses.replace(config.train, epochs=5, max_minutes=20)
    assert describe_schedule(config, n_train=4000) == (
        "hetacumn, 5 epochs of 4,000 images (20,000 images); poses searched (grid radius 8 px, 12 px from 20,000 images; "
        "soft assignment auto) from 3 starts (the one fitting its images best after 8,000 images goes on) "
        "for the first 40,000 images, then a pose per particle refined by 1 Adam step(s) per visit from 40,000 images "
        "seen, then a last search against the trained decoder (grid radius 12 px); consensus phase (z from the prior) "
        "for the first 40,000 images; conditional pose prediction not run (no stage takes the encoder's poses; --set "
        "task.pose_prediction_in_refinement=true runs it in the refinement stage); frequency marching from 6 px, +1 "
        "px per 1,500 images; time limit 20 min")


def test_the_search_radii_and_the_refinement_from_a_search_in_words():
    config = with_search_stage(preset("hetacumn", box_size=64), 40_000)
    config.task = dataclasses.replace(config.task, search_widen_images=20_000, search_final_radius_px=14.0,
                                      refine_from_search=True)
    assert ("poses searched (grid radius 8 px, 14 px from 20,000 images; soft assignment auto) from 3 starts (the one "
            "fitting its images best after 8,000 images goes on) for the first 40,000 images, then a pose per particle searched against the decoder and refined by 1 Adam step(s) per visit "
            "from 40,000 images seen, then a last search against the trained decoder (grid radius 14 px);"
            in describe_schedule(config, n_train=4000))


def test_amortized_and_given_pose_schedules_in_words():
    assert describe_schedule(preset("cryoai"), n_train=100) == (
        "cryoai, 20 epochs of 100 images (2,000 images); poses from the encoder (purely amortized); frequency "
        "marching from 6 px, +1 px per 20,000 images")
    given = preset("hetacumn")
    given.data.poses, given.task.consensus_images, given.task.refine_steps = "run_data.star", 0, 3
    assert describe_schedule(given, n_train=10).startswith(
        "hetacumn, 20 epochs of 10 images (200 images); poses given by run_data.star, refined by 3 Adam steps per "
        "visit; conditional pose prediction not run (no stage takes the encoder's poses;")


def test_where_the_pose_task_runs_in_words():
    amortized = preset("hetacumn")
    assert ("conditional pose prediction every 1 step(s) from 20,000 images seen, in the encoder's stage;"
            in describe_schedule(amortized, n_train=100))
    searched = with_search_stage(preset("acehetem", box_size=64), 40_000)
    searched.task = dataclasses.replace(searched.task, pose_prediction_in_refinement=True, pose_prediction_every=4,
                                        loss_space="real")
    line = describe_schedule(searched, n_train=4000)
    assert "conditional pose prediction every 4 step(s) from 20,000 images seen, in the refinement stage;" in line
    assert "loss in real space within the particle's disk" in line
    assert "conditional pose prediction" not in describe_schedule(preset("cryofire"), n_train=100)
