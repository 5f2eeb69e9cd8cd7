"""Probe: the encoder's own poses after ``train``, and after more encoder-only training by conditional pose
prediction (CPP: the frozen decoder renders random poses, noise at the data's SNR) or by distillation of the
run's final poses.

    .venv/bin/python bench/encoder_poses.py RUN_FOLDER DATASET_FOLDER [--held-out DATASET2] [--steps 300]

RUN_FOLDER: a finished ``hetacumn train`` run; DATASET_FOLDER: the simulated set it was trained on; --held-out:
another set of the same molecule (images the encoder never saw). Each arm starts from the run's weights and
trains the encoder alone (Adam, batches of 64, the run's latents z.npy for the decoder); median rotation error of
``infer`` without a search (the encoder alone, both symmetrized paths decoded as ``hetacumn infer`` does), after
the global alignment, on the first --images images of each set.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accuracy import code_version, machine_line

from hetacumn.engine.inference import infer
from hetacumn.engine.run import load_trained_state, trained_images
from hetacumn.engine.trainer import max_radius_px
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.particles import load_particles
from hetacumn.metrics.pose import rotation_errors
from hetacumn.models.lattice import HalfPlane
from hetacumn.tasks.base import StepContext, ctf_at, pose_regression
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.pose import PosePredictionTask

BATCH = 64


def encoder_error_deg(model, config, data, truth: np.ndarray, count: int) -> float:
    task = ImageReconstructionTask(config.task, config.model.z_mode)
    images = np.arange(min(count, len(data)))
    result = infer(model, data, task, max_radius_px(config), torch.device("cpu"), images=images)
    return rotation_errors(result.rotations, truth[images])["median_angle_deg"]


def train_encoder(model, config, data, z: np.ndarray, poses, arm: str, steps: int, lr: float, report=None) -> float:
    """``steps`` Adam steps on the encoder alone; ``report(step, seconds)`` after every ``steps // 4`` with
    ``--progress``; returns the seconds taken."""
    half = HalfPlane.build(config.model.box_size, max_radius_px(config))
    pose_task = PosePredictionTask(config.task, data.stats.snr, data.window_images)
    optimizer = torch.optim.Adam(model.encoder.parameters(), lr=lr)
    generator, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    began = time.perf_counter()
    for step in range(steps):
        if report is not None and step and step % max(steps // 4, 1) == 0:
            report(step, time.perf_counter() - began)
        index = np.sort(rng.choice(len(data), BATCH, replace=False))
        batch = data.batch(index, torch.device("cpu"))
        context = StepContext(half, ctf_at(half, batch), 10**9, generator)
        z_batch = torch.from_numpy(z[index]).float()
        loss = torch.zeros(())
        if arm in ("cpp", "both"):
            loss = loss + pose_task.step(model, batch, context, z_batch).loss
        if arm in ("distill", "both"):
            enc = model.encode(batch.images)
            rotation = torch.from_numpy(poses.rotations[index]).float()
            shift = torch.from_numpy(poses.shift_px[index]).float()
            loss = loss + pose_regression(enc.rotation, enc.shift_px, rotation, shift, config.task.pose_shift_weight)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        model.decoder.zero_grad(set_to_none=True)  # the decoder stays as trained
        optimizer.step()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--held-out", type=Path)
    parser.add_argument("--arms", nargs="*", default=["cpp", "distill", "both"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--images", type=int, default=1000, help="images scored per set")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true", help="also score after each quarter of the steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    model, config, _ = load_trained_state(args.run / "checkpoint.pt")
    sets = {"trained": args.data} | ({"held out": args.held_out} if args.held_out else {})
    loaded = {}
    for name, folder in sets.items():
        particles = load_particles(folder / "particles.star")
        truth = read_pose_pickle(folder / "truth" / "poses.pkl", particles.box_size).rotations
        loaded[name] = (trained_images(particles, config), truth)
    data = loaded["trained"][0]
    z, poses = np.load(args.run / "z.npy"), read_pose_pickle(args.run / "poses.pkl", config.model.box_size)
    print(f"{args.run.name}; {args.steps} steps of {BATCH} images, lr {args.lr:g}; machine: {machine_line('cpu')}; "
          f"code {code_version()}")
    print("| encoder | " + " | ".join(f"{name} (deg)" for name in loaded) + " | training s |")
    print("|---|" + "---|" * (len(loaded) + 1))
    for arm in ["as trained", *args.arms]:
        trained = copy.deepcopy(model)

        def report(step: int, seconds: float, label: str = arm) -> None:
            errors = [encoder_error_deg(trained, config, d, truth, args.images) for d, truth in loaded.values()]
            print(f"| {label} | " + " | ".join(f"{e:.1f}" for e in errors) + f" | {seconds:.0f} |", flush=True)
            trained.train()

        if arm == "as trained":
            report(0, 0.0)
            continue
        progress = (lambda step, s: report(step, s, f"{arm}, {step} steps")) if args.progress else None
        seconds = train_encoder(trained, config, data, z, poses, arm, args.steps, args.lr, progress)
        report(args.steps, seconds, f"{arm}, {args.steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
