"""Training throughput of each preset: images/s of full training steps at a given marching radius.

Run:  .venv/bin/python bench/train_speed.py [--box 64] [--device cpu] [--radii 6,16,31] [--search-stage]
Prints one Markdown row per (method, radius), for BENCHMARKS.md. ``--search-stage``: steps of the pose search
stage of ``hetacumn train``'s default schedule (hetacumn only) instead of the presets' amortized steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hetacumn.config.presets import METHODS, preset, with_search_stage
from hetacumn.data.images import ParticleImages
from hetacumn.engine.trainer import Trainer
from hetacumn.io.particles import load_particles
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--radii", default="6,16,31")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--search-stage", action="store_true")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="hetacumn_speed_"))
    simulate_dataset(SimulationConfig(n_images=512, box_size=args.box, snr=0.1, shift_px=4.0), out, overwrite=True)
    data = ParticleImages(load_particles(out / "particles.star"))
    for method in ("hetacumn",) if args.search_stage else METHODS:
        for radius in (int(r) for r in args.radii.split(",")):
            config = preset(method, box_size=args.box, device=args.device)
            if args.search_stage:
                config = with_search_stage(config)
            config.train = dataclasses.replace(config.train, marching_images_per_px=0, max_radius_px=radius)
            trainer = Trainer(config, data, out)
            # past every warm-up and consensus phase, or (search stage) its seeding
            trainer.progress["images_seen"] = 1_000 if args.search_stage else 10**7
            batch = np.arange(config.train.batch_size)
            trainer.train_step(batch)
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step(batch)
            rate = args.steps * len(batch) / (time.perf_counter() - start)
            stage = " (search stage)" if args.search_stage else ""
            print(f"| {method}{stage} | {args.box} px | radius {radius} px | {rate:,.0f} images/s | "
                  f"{torch.get_num_threads()} threads, {args.device} |", flush=True)


if __name__ == "__main__":
    main()
