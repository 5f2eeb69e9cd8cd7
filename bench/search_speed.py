"""Time the pose search (global grid + local refinement) on real batches against a trained decoder.

The search is what ``train`` runs on every image in its search stage and once more at the end (the final
poses), and what ``infer --search`` runs: its cost per image sets those stages' speed. The poses found are
saved, so that two versions of the code can be checked to give the same poses (``--compare``).

Example usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/search_speed.py RUN/checkpoint.pt particles.star --images 1024 \\
        --threads 1 --save poses_new.pt --compare poses_old.pt
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import torch

from hetacumn.data.images import ParticleImages
from hetacumn.engine.run import load_trained
from hetacumn.engine.trainer import max_radius_px
from hetacumn.io.particles import load_particles
from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.rotations import geodesic_distance_rad
from hetacumn.tasks.base import ctf_at
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
    model.eval()
    data = ParticleImages(load_particles(args.particles), config.data.mask_radius_fraction,
                          scale=config.data.scale or None)
    radius = max_radius_px(config)
    half = HalfPlane.build(data.box_size, radius)
    with torch.no_grad():
        volume_ft = model.fourier_volume(torch.zeros(model.zdim) if model.zdim else None, max_radius_px=radius + 2)
    search = pose_search_from_config(config.task, config.model.shift_range_px)
    rotations, shifts, seconds = [], [], 0.0
    for start in range(0, min(args.images, len(data)), args.batch_size):
        batch = data.batch(np.arange(start, min(start + args.batch_size, args.images, len(data))), torch.device("cpu"))
        targets = half.gather(batch.images_ft)
        ctf = ctf_at(half, batch.ctf, batch.pixel_size_angstrom)
        began = time.perf_counter()
        rotation, shift_px, _ = search(volume_ft, targets, ctf, half)
        seconds += time.perf_counter() - began
        rotations.append(rotation)
        shifts.append(shift_px)
    rotation, shift_px = torch.cat(rotations), torch.cat(shifts)
    n = len(rotation)
    print(f"{n} images of {data.box_size} px, radius {radius:g} px, {search.rotation_count} grid rotations, "
          f"{len(search.shift_grid)} shifts, {search.candidates} candidates, {search.levels} levels; "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"search: {seconds:.2f} s, {1000 * seconds / n:.2f} ms per image")
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
