"""Final poses of a trained run with a search stage: the refined poses of its pose table, a search against the
final decoder, and what ``train`` now writes (per image, whichever of the two the decoder renders closer).

    .venv/bin/python bench/final_poses.py RUN_FOLDER DATASET_FOLDER

RUN_FOLDER holds checkpoint.pt and pose_table.npy of ``hetacumn train``; DATASET_FOLDER is the simulated set it
was trained on (particles.star, truth/poses.pkl). Median rotation errors after the global alignment.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accuracy import code_version, machine_line

from hetacumn.data.pose_table import PoseTable
from hetacumn.engine.inference import FIT_RADIUS_PX, infer
from hetacumn.engine.run import load_trained, trained_images
from hetacumn.engine.trainer import max_radius_px
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.particles import load_particles
from hetacumn.metrics.pose import rotation_errors
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.search_task import pose_search_from_config


def median_error_deg(rotations: np.ndarray, truth: np.ndarray) -> float:
    return rotation_errors(rotations, truth)["median_angle_deg"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fit-radius", type=float, nargs="+", default=[FIT_RADIUS_PX],
                        help="radii (px) at which the table's pose competes with the searched one")
    parser.add_argument("--global-radius", type=float,
                        help="px compared in the grid search against the final decoder (default the run's final radius)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, config = load_trained(args.run / "checkpoint.pt")
    particles = load_particles(args.data / "particles.star")
    truth = read_pose_pickle(args.data / "truth" / "poses.pkl", particles.box_size).rotations
    if args.global_radius:
        config.task.search_final_radius_px = args.global_radius
    data = trained_images(particles, config)
    task = ImageReconstructionTask(config.task, config.model.z_mode)
    search = pose_search_from_config(config.task, config.model.shift_range_px, final=True)
    table = PoseTable.open(args.run / "pose_table.npy", len(particles))
    radius, device = max_radius_px(config), torch.device("cpu")
    began = time.perf_counter()
    searched = infer(model, data, task, radius, device, search=search)
    search_s = time.perf_counter() - began
    table_rows = table.read(np.arange(len(particles))).rotation.numpy()
    print(f"{args.run.name} on {args.data.name} ({len(particles)} images); machine: {machine_line('cpu')}; "
          f"code {code_version()}")
    print(f"| pose table (refined) | {median_error_deg(table_rows, truth):.2f} |")
    print(f"| searched against the final decoder | {median_error_deg(searched.rotations, truth):.2f} | "
          f"{1000 * search_s / len(particles):.1f} ms per image |")
    for fit_radius in args.fit_radius:
        began = time.perf_counter()
        kept = infer(model, data, task, radius, device, search=search, known=table, fit_radius_px=fit_radius)
        kept_s = time.perf_counter() - began
        kept_from_table = np.isclose(kept.rotations, table_rows, atol=1e-9).all(axis=(1, 2))
        print(f"| the better fit of the two within {fit_radius:g} px (train's output) | "
              f"{median_error_deg(kept.rotations, truth):.2f} | {kept_from_table.mean():.1%} from the table | "
              f"{1000 * kept_s / len(particles):.1f} ms per image in all |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
