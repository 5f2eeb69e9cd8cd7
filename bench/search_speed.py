"""Time the pose search (global grid + local refinement) on real batches against a trained decoder.

The search is what ``train`` runs on every image in its search stage and once more at the end (the final
poses), and what ``infer --search`` runs: its cost per image sets those stages' speed. The time is the
search part of :func:`~hetacumn.engine.inference.infer` on the first ``--images`` particles. The poses found are
saved, so that two versions of the code can be checked to give the same poses (``--compare``).

Example usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/search_speed.py RUN/checkpoint.pt particles.star --images 1024 \\
        --threads 1 --save poses_new.pt --compare poses_old.pt
"""

from __future__ import annotations

import argparse
import math
import platform

import numpy as np
import torch

from hetacumn.engine.inference import infer
from hetacumn.engine.run import load_trained, trained_images
from hetacumn.engine.trainer import max_radius_px
from hetacumn.io.particles import load_particles
from hetacumn.physics.rotations import geodesic_distance_rad
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.search_task import pose_search_from_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("particles")
    parser.add_argument("--images", type=int, default=1024, help="images searched (from the first)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", help="write the poses found (torch.save) to this file")
    parser.add_argument("--compare", help="poses saved by an earlier --save: largest differences")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, config = load_trained(args.checkpoint)
    particles = load_particles(args.particles)
    particles = particles.subset(np.arange(min(args.images, len(particles))))
    data = trained_images(particles, config)
    search = pose_search_from_config(config.task, config.model.shift_range_px)
    radius = max_radius_px(config)
    task = ImageReconstructionTask(config.task, config.model.z_mode)
    result = infer(model, data, task, radius, torch.device("cpu"), args.batch_size, search=search)
    rotation, shift_px, n = torch.as_tensor(result.rotations), torch.as_tensor(result.shift_px), len(particles)
    print(f"{n} images of {data.box_size} px, radius {radius:g} px, {search.rotation_count} grid rotations, "
          f"{len(search.shift_grid)} shifts, {search.candidates} candidates, {search.levels} levels; "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"search: {result.seconds['search']:.2f} s, {result.cost_ms_per_image()['search']:.2f} ms per image")
    if args.save:
        torch.save({"rotation": rotation, "shift_px": shift_px}, args.save)
    if args.compare:
        earlier = torch.load(args.compare)
        degrees = geodesic_distance_rad(earlier["rotation"], rotation) * 180 / math.pi
        print(f"against {args.compare}: rotations differ by at most {float(degrees.max()):.3g} deg "
              f"({int((degrees > 0.01).sum())} of {n} by > 0.01 deg), shifts by at most "
              f"{float((earlier['shift_px'] - shift_px).abs().max()):.3g} px")


if __name__ == "__main__":
    main()
