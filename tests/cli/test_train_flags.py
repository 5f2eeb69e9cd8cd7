"""hetacumn train's stage flags land in the run configuration; negative counts are refused by name."""

from __future__ import annotations

import argparse

import pytest

from hetacumn.cli.train import add_args, build_config
from hetacumn.errors import InputError


def _config(*flags: str, n_images: int = 5000):
    parser = argparse.ArgumentParser()
    add_args(parser)
    return build_config(parser.parse_args(["particles.star", "-o", "out", *flags]), box_size=32, n_images=n_images)


def test_stage_flags_set_the_task_config():
    task = _config("--pose-search", "5000", "--soft-assignment", "on", "--refine-from", "9000", "--refine-steps", "4",
                   "--consensus", "6000").task
    assert (task.pose_search_images, task.search_soft, task.refine_start_images, task.refine_steps,
            task.consensus_images) == (5000, "on", 9000, 4, 6000)
    assert _config("--search-radius", "12").task.search_global_radius_px == 12.0
    task = _config("--search-radius", "6", "14", "--search-widen", "20000").task
    assert (task.search_global_radius_px, task.search_final_radius_px, task.search_widen_images) == (6.0, 14.0, 20000)
    # the default widens half-way through the search stage; 0 never
    assert (_config().task.search_final_radius_px, _config().task.search_widen_images) == (12.0, 20_000)
    assert _config("--pose-search", "9000").task.search_widen_images == 4500
    assert _config("--search-widen", "0").task.search_widen_images == 0
    # three starts of 8,000 images for a stage of 40,000 or more; one for the 9,000 of a small set
    assert (_config().task.search_starts, _config().task.search_start_images) == (3, 8000)
    assert _config("--pose-search", "9000").task.search_starts == 1
    task = _config("--search-starts", "2", "500").task
    assert (task.search_starts, task.search_start_images) == (2, 500)
    assert (_config().task.loss_space, _config("--loss-space", "real").task.loss_space) == ("fourier", "real")


def test_search_radius_beyond_half_the_box_is_refused():
    with pytest.raises(InputError, match=r"^--search-radius: must be from 1 to half the training box \(16 px\), got 17$"):
        _config("--search-radius", "17")
    with pytest.raises(InputError, match=r"^--search-radius: must be from 1 to half the training box \(16 px\), got 20$"):
        _config("--search-radius", "8", "20")
    with pytest.raises(InputError, match=r"^--search-radius: takes one or two radii \(PX \[FINAL_PX\]\), got 3$"):
        _config("--search-radius", "8", "12", "16")
    with pytest.raises(InputError, match=r"^--search-starts: takes K \[IMAGES\], K and IMAGES at least 1, got 0$"):
        _config("--search-starts", "0")
    with pytest.raises(InputError, match=r"^--search-widen: must be 0 or more, got -1$"):
        _config("--search-widen", "-1")
    assert _config("--whiten").data.whiten is True and _config().data.whiten is False

def test_the_default_schedule_searches_then_refines_and_zero_is_the_published_method():
    default = _config()
    assert (default.task.pose_search_images, default.task.search_soft, default.task.refine_start_images,
            default.task.refine_steps, default.task.consensus_images,
            default.train.marching_images_per_px) == (40_000, "auto", 40_000, 1, 40_000, 1500)
    short = _config("--pose-search", "9000", "--method", "cryofire").task
    assert (short.pose_search_images, short.refine_start_images, short.consensus_images) == (9000, 9000, 9000)
    amortized = _config("--pose-search", "0")
    assert (amortized.task.pose_search_images, amortized.task.refine_start_images, amortized.task.consensus_images,
            amortized.train.marching_images_per_px) == (0, 0, 60_000, 20_000)
    assert _config("--marching", "700", "--refine-from", "0").train.marching_images_per_px == 700
    # every image is searched twice when the set is larger than 20,000 (also when training on a subset of it)
    assert _config(n_images=90_000).task.pose_search_images == 180_000
    assert _config("--train-subset", "30000", n_images=90_000).task.refine_start_images == 60_000
    # ... and the search takes at most half of the run
    assert _config("--epochs", "10", n_images=3000).task.pose_search_images == 15_000


@pytest.mark.parametrize("flag", ["--pose-search", "--refine-from", "--refine-steps", "--consensus"])
def test_negative_counts_are_refused_by_name(flag):
    with pytest.raises(InputError, match=f"^{flag}: must be 0 or more, got -1$"):
        _config(flag, "-1")


def test_given_poses_end_the_search_and_consensus_and_fix_the_poses():
    config = _config("--poses", "consensus.star")
    assert (config.data.poses, config.task.consensus_images, config.task.refine_steps,
            config.train.marching_images_per_px) == ("consensus.star", 0, 0, 4000)
    refined = _config("--poses", "consensus.star", "--refine-steps", "3", "--consensus", "500", "--marching", "900")
    assert (refined.task.refine_steps, refined.task.consensus_images, refined.train.marching_images_per_px) == (3, 500, 900)
    with pytest.raises(InputError, match="^--pose-search: does not apply with --poses"):
        _config("--poses", "consensus.star", "--pose-search", "1000")


def test_default_epochs_make_at_least_80000_images_so_the_search_stage_runs_whole():
    small = _config(n_images=1000)
    assert (small.train.epochs, small.task.pose_search_images, small.task.refine_start_images) == (80, 40_000, 40_000)
    assert _config(n_images=3000).train.epochs == 27  # ceil(80,000 / 3,000)
    assert _config("--train-subset", "500", n_images=90_000).train.epochs == 160
    assert _config(n_images=5000).train.epochs == 20  # the preset's, already over 80,000 images
    assert _config("--epochs", "7", n_images=1000).train.epochs == 7


def test_set_reaches_any_setting_of_the_configuration():
    config = _config("--set", "model.encoder.backbone=vgg", "--set", "task.pose_prediction_every=4",
                     "--set", "train.grad_clip=0.5", "--set", "task.loss_space=real", "--set", "data.whiten=true")
    assert (config.model.encoder.backbone, config.task.pose_prediction_every, config.train.grad_clip,
            config.task.loss_space, config.data.whiten) == ("vgg", 4, 0.5, "real", True)
    # after the other flags
    assert _config("--refine-steps", "3", "--set", "task.refine_steps=5").task.refine_steps == 5


@pytest.mark.parametrize("item, message", [
    ("task.no_such_field=1", r"^--set: task\.no_such_field: no such field \(fields: symmetrize, loss_space, "),
    ("nowhere.x=1", r"^--set: nowhere\.x: no such section 'nowhere' \(sections: data, model, model\.encoder, "),
    ("task.refine_steps=two", r"^--set: config\.task\.refine_steps: expected int, got 'two'$"),
    ("model.encoder.backbone=alexnet", r"^--set: config\.model\.encoder\.backbone: 'alexnet' is not one of "),
    ("refine_steps=2", r"^--set: 'refine_steps=2': expected SECTION\.FIELD=VALUE"),
])
def test_set_refuses_unknown_fields_and_wrong_values_by_name(item, message):
    with pytest.raises(InputError, match=message):
        _config("--set", item)
