"""A run's schedule in words, for the run log: which stage gives the poses when, and what else changes.

Example usage::

    log.info("schedule: %s", describe_schedule(config, n_train=20_000))
"""

from __future__ import annotations

from hetacumn.config.schema import RunConfig, uses_search_starts


def describe_schedule(config: RunConfig, n_train: int) -> str:
    """One line: epochs and images, the pose stages with their image counts, consensus, marching, time limit."""
    task, train = config.task, config.train
    total = train.epochs * n_train
    parts = [f"{config.method}, {train.epochs} epochs of {n_train:,} images ({total:,} images)"]
    if config.data.poses:
        refined = f", refined by {task.refine_steps} Adam steps per visit" if task.refine_steps else ""
        parts.append(f"poses given by {config.data.poses}{refined}")
    else:
        parts.append(_pose_stages(config))
    if config.model.z_mode != "none" and task.consensus_images:
        parts.append(f"consensus phase (z from the prior) for the first {task.consensus_images:,} images")
    if task.pose_prediction:
        parts.append(_pose_task(config))
    if task.loss_space == "real":
        parts.append("loss in real space within the particle's disk")
    if task.search_classes > 1 and task.pose_search_images:
        parts.append(f"{task.search_classes} search classes")
    if train.marching_images_per_px:
        parts.append(f"frequency marching from {train.marching_start_px} px, +1 px per "
                     f"{train.marching_images_per_px:,} images")
    if train.max_minutes:
        parts.append(f"time limit {train.max_minutes:g} min")
    return "; ".join(parts)


def _pose_stages(config: RunConfig) -> str:
    task = config.task
    search, refine = task.pose_search_images, task.refine_start_images
    stages = []
    if search:
        radius = f"grid radius {task.search_global_radius_px:g} px"
        if task.search_widen_images:
            radius += f", {task.search_final_radius_px:g} px from {task.search_widen_images:,} images"
        starts = ""
        if uses_search_starts(config):
            starts = (f" from {task.search_starts} starts (the one fitting its images best after "
                      f"{task.search_start_images:,} images goes on)")
        stages.append(f"poses searched ({radius}; soft assignment {task.search_soft}){starts} "
                      f"for the first {search:,} images")
    if refine:
        origin = " searched against the decoder and" if task.refine_from_search else ""
        stages.append(f"a pose per particle{origin} refined by {task.refine_steps} Adam step(s) per visit from "
                      f"{refine:,} images seen")
    if _has_encoder_stage(config):
        stages.append("poses from the encoder" + (f" from {search:,} images" if search else " (purely amortized)"))
    if search:  # engine/run.py
        stages.append(f"a last search against the trained decoder (grid radius {task.search_final_radius_px:g} px)")
    return ", then ".join(stages)


def _pose_task(config: RunConfig) -> str:
    """Where the conditional pose prediction task runs: the encoder's stage, and the refinement stage if asked."""
    task = config.task
    refine_stage = bool(config.data.poses or task.refine_start_images) and task.pose_prediction_in_refinement
    stages = [name for name, runs in (("the encoder's stage", _has_encoder_stage(config)),
                                      ("the refinement stage", refine_stage)) if runs]
    if not stages:
        return ("conditional pose prediction not run (no stage takes the encoder's poses; "
                "--set task.pose_prediction_in_refinement=true runs it in the refinement stage)")
    return (f"conditional pose prediction every {task.pose_prediction_every} step(s) from "
            f"{task.pose_prediction_start_images:,} images seen, in {' and '.join(stages)}")


def _has_encoder_stage(config: RunConfig) -> bool:
    """Whether some images' poses come from the encoder: no given poses, and no table from the search's end on."""
    task = config.task
    return not config.data.poses and (not task.refine_start_images or task.refine_start_images > task.pose_search_images)
