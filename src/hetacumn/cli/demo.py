"""Run the built-in example end to end, with no download: the main job on simulated data.

Simulates a small two-conformation dataset from the built-in molecule (CTF, shifts, noise), trains
``hetacumn`` on it ab initio (the pose search stage first, ending as a 3-D classification into two classes,
then per-particle pose refinement while the conformations are learned), analyses the run against the truth (``hetacumn analyze --truth``: k-means
classes, class maps, report.html) and prints the pose errors, the confusion error and each class map's
resolution beside that of a backprojection with the true poses and CTFs (what the data allow).

Example usage:
    hetacumn demo -o demo_out
    hetacumn demo -o demo_small --n-images 1000 --epochs 10
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from hetacumn.analysis.run import run_analysis
from hetacumn.cli.common import default_device, parse_device
from hetacumn.config.presets import preset, with_search_stage
from hetacumn.data.backproject import backproject_particles
from hetacumn.engine.run import train
from hetacumn.errors import InputError
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.mrc import read_mrc, write_mrc
from hetacumn.io.particles import load_particles
from hetacumn.metrics.fsc import fourier_shell_correlation, resolution_at
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset
from hetacumn.tasks.search_task import split_images

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--outdir", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--n-images", type=int, default=3000)
    parser.add_argument("--box", type=int, default=32, help="box size in px")
    parser.add_argument("--apix", type=float, default=4.0, help="pixel size in Å")
    parser.add_argument("--snr", type=float, default=10.0)
    parser.add_argument("--epochs", type=int, default=30, help="training epochs")
    parser.add_argument("--search-images", type=int, default=30_000,
                        help="images seen in the pose search stage (two classes from a third of it on), before "
                             "refinement with conformations")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="training time limit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=default_device(), help="cpu or cuda[:N] (default: cuda when present)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def demo_config(args: argparse.Namespace):
    """The hetacumn preset with the demo's schedule: search ending as a 3-D classification into two classes
    (the consensus phase ends where the classes start), then refinement with z; frequency marching fast
    enough to reach Nyquist within the search stage."""
    config = with_search_stage(preset("hetacumn", box_size=args.box, device=args.device), args.search_images)
    config.train = dataclasses.replace(config.train, epochs=args.epochs, max_minutes=args.max_minutes, seed=args.seed)
    config.task = dataclasses.replace(config.task, search_classes=2, consensus_images=split_images(config.task))
    return config


def _true_pose_resolutions(particles, out: Path, apix: float) -> list[tuple[int, float, float]]:
    """Per true class: images, FSC=0.5 and 0.143 resolution (px) of the backprojection at the true poses."""
    poses = read_pose_pickle(out / "truth" / "poses.pkl", particles.box_size)
    labels = np.load(out / "truth" / "labels.npy")
    rows = []
    for k in range(labels.max() + 1):
        indices = np.flatnonzero(labels == k)
        volume = backproject_particles(particles, poses, indices)[0].volume()
        write_mrc(out / f"reconstruction_class{k}.mrc", volume.numpy(), apix, overwrite=True)
        truth, _ = read_mrc(out / "truth" / f"vol_{k:03d}.mrc")
        freqs, fsc = fourier_shell_correlation(volume, torch.from_numpy(truth))
        rows.append((len(indices), resolution_at(freqs, fsc, 0.5), resolution_at(freqs, fsc, 0.143)))
    return rows


def main(args: argparse.Namespace) -> int:
    if args.epochs < 1 or args.search_images < 0 or args.max_minutes <= 0:
        raise InputError(None, "--epochs must be at least 1, --search-images 0 or more, --max-minutes positive")
    args.device = str(parse_device(args.device))
    config = SimulationConfig(n_images=args.n_images, box_size=args.box, pixel_size_angstrom=args.apix, snr=args.snr,
                              shift_px=3.0, proportions=[0.5, 0.5], seed=args.seed)
    summary = simulate_dataset(config, args.outdir, overwrite=args.overwrite)
    out = Path(args.outdir)
    particles = load_particles(out / "particles.star")
    print(f"simulated {len(particles)} images of {particles.box_size} px at {args.apix} Å/px, SNR {args.snr}: "
          f"{summary['class_counts']} per class")
    reference = _true_pose_resolutions(particles, out, args.apix)
    (out / "run").mkdir()
    train(demo_config(args), particles, out / "run")
    analysis = run_analysis(out / "run", out / "analyze", ksample=2, truth_dir=out / "truth", device=args.device,
                            skip_umap=True, seed=args.seed)["truth"]
    rotation, latent = analysis["rotation"], analysis["latent"]
    print(f"ab initio: median rotation error {rotation['median_angle_deg']:.2f} deg ({rotation['hand']} hand), "
          f"median shift error {analysis['translation']['offset_removed_median_px']:.2f} px, "
          f"confusion error {latent['confusion_error']:.3f}")
    print("class  images  true poses: FSC=0.5 / 0.143 (px)  ab initio class map: FSC=0.5 (px / Å)")
    ab_initio = {c["true_class"]: c["resolution_fsc0.5_px"] for c in analysis["class_volumes"]}
    for k, (count, r05, r0143) in enumerate(reference):
        mine = ab_initio.get(k)
        mine_text = "   (no k-means class)" if mine is None else f"{mine:5.2f} / {mine * args.apix:5.1f}"
        print(f"{k:5d}  {count:6d}  {r05:5.2f} / {r0143:5.2f}                  {mine_text}")
    print(f"outputs in {out}/: particles.star + .mrcs, truth/, run/ (poses, z, checkpoint), analyze/report.html")
    return 0
