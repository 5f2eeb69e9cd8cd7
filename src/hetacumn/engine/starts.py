"""Several starts of the search stage; the one whose model fits its images best goes on (``task.search_starts``).

The search stage starts its reference from a few images at random poses, and a start can lock a wrong structure
in: on one of three simulated 64-px SNR-0.1 sets the run ended at 30.6 deg. There, after 8,000 images, that
start's searched poses were still random (95 deg) where another seed's were at 23 deg, and its model's mean image
error was 4.7 % higher (BENCHMARKS.md, "Several starts of the search stage"). So each start trains the first
``search_start_images`` images in ``OUT/starts/start_K`` with its own seeds (:class:`Trainer` ``seed_offset``);
the start with the lowest mean image error (each step's global-batch ``mse``, at the same marching radius for
all) over the second half of those images is resumed into the run's folder, its metrics.jsonl records first;
the starts' folders are then removed. The starts' time counts against ``train.max_minutes``.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np

from hetacumn.config.schema import RunConfig
from hetacumn.data.images import ParticleImages
from hetacumn.engine import distributed
from hetacumn.engine.trainer import Trainer
from hetacumn.io.particle_set import PoseTable as IOPoseTable

log = logging.getLogger(__name__)

STARTS_FOLDER = "starts"


def fit_error(step_errors: list[tuple[int, float]], images: int) -> float:
    """Mean ``mse`` of the steps that ended after ``images / 2`` and up to ``images`` images seen (inf: none)."""
    window = [mse for seen, mse in step_errors if images / 2 < seen <= images]
    return float(np.mean(window)) if window else math.inf


def train_starts(config: RunConfig, data: ParticleImages, outdir: Path,
                 given_poses: IOPoseTable | None = None) -> tuple[int, list[float]]:
    """Train every start for ``task.search_start_images`` images; return the best start and every start's error."""
    task, errors = config.task, []
    for k in range(task.search_starts):
        folder = outdir / STARTS_FOLDER / f"start_{k}"
        if distributed.is_main():
            folder.mkdir(parents=True, exist_ok=True)
        distributed.barrier()
        trainer = Trainer(config, data, folder, given_poses, seed_offset=k)
        trainer.fit(stop_at_images=task.search_start_images)
        errors.append(fit_error(trainer.step_errors, task.search_start_images))  # global means: alike in all processes
        log.info("start %d of %d (seed %d): mean image error %.5g over images %d-%d", k + 1, task.search_starts,
                 trainer.seed, errors[-1], task.search_start_images // 2, task.search_start_images)
    return distributed.rank_zero_index(int(np.argmin(errors))), errors


def continue_best_start(trainer: Trainer, given_poses: IOPoseTable | None = None) -> None:
    """Train the starts, then resume ``trainer`` (the run's own, in its folder) from the best one."""
    began, outdir = time.time(), trainer.outdir
    best, errors = train_starts(trainer.config, trainer.data, outdir, given_poses)
    folder = outdir / STARTS_FOLDER / f"start_{best}"
    if distributed.is_main():
        shutil.copyfile(folder / "metrics.jsonl", outdir / "metrics.jsonl")
        if trainer.pose_table is not None:
            shutil.copyfile(folder / "pose_table.checkpoint.npy", trainer.pose_table.snapshot_path())
    distributed.barrier()
    trainer.resume(folder / "checkpoint.pt")
    log.info("start %d of %d goes on (lowest image error; the others were %s higher)", best + 1, len(errors),
             ", ".join(f"{100 * (e / errors[best] - 1):.1f} %" for k, e in enumerate(errors) if k != best))
    distributed.barrier()
    if distributed.is_main():
        shutil.rmtree(outdir / STARTS_FOLDER)
    trainer.time_spent_s = time.time() - began
