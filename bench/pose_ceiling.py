"""How accurate can per-image poses be on a dataset? Pose search against the TRUE volumes.

Every method that gives each image its best pose is bounded by what the data allow: with the true map, the
best-fitting pose of a noisy image is itself off the true pose. This script measures that floor on a
simulated dataset (``hetacumn simulate``'s truth folder) with the engine's own search
(:class:`~hetacumn.tasks.search.PoseSearch`, the training defaults: 4,608-rotation grid compared within 8 px,
8 candidates, local refinement of the best at the given radius):

- ``search, own class``: global search against each image's own true map (conformation known);
- ``search, mean map``: against the mean of the true maps (one reference for a heterogeneous set, as the
  search stage of training starts with);
- ``local from truth``: local refinement only, started at the true pose against the own map (steps from 3.7 deg
  halving over 7 levels, so within ~7 deg of it): the best-fitting pose near the truth, whose distance from it
  is the noise floor of any best-pose estimate, however good the map and the search.

Errors are geodesic angles to the true rotations (no alignment: the true maps are in the true frame).

    .venv/bin/python bench/pose_ceiling.py bench/out/peers/data/two_n20000_box64_snr0.1_seed0 --images 1000
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accuracy import code_version, machine_line
from scipy.stats import spearmanr
from tqdm import tqdm

from hetacumn.config.presets import preset
from hetacumn.config.schema import DataConfig
from hetacumn.data.images import ParticleImages
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.mrc import read_mrc
from hetacumn.io.particles import load_particles
from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.fourier import fft3_centered
from hetacumn.physics.rotations import geodesic_distance_rad
from hetacumn.tasks.base import ctf_at
from hetacumn.tasks.search import PoseSearch
from hetacumn.tasks.search_task import pose_search_from_config


LOCAL_LEVELS = 7  # from half the grid's start step (3.7 deg), halving: reaches ~7 deg from the truth, ends at 0.06 deg


def true_maps(truth: Path) -> list[torch.Tensor]:
    paths = sorted(truth.glob("vol_*.mrc"))
    return [fft3_centered(torch.as_tensor(read_mrc(path)[0], dtype=torch.float32)) for path in paths]


@dataclass
class TrueSearch:
    """A simulated dataset with its truth, prepared once: images as training sees them, true maps, the search."""

    data: ParticleImages
    rotations: np.ndarray  # (N, 3, 3) true
    shift_px: np.ndarray  # (N, 2) true
    labels: np.ndarray  # (N,) true classes
    maps: list[torch.Tensor]  # centred transforms of the true maps, one per class
    search: PoseSearch

    @classmethod
    def load(cls, data_dir: Path, whiten: bool = False, global_radius_px: float | None = None) -> TrueSearch:
        particles = load_particles(data_dir / "particles.star")
        truth = read_pose_pickle(data_dir / "truth" / "poses.pkl", particles.box_size)
        config = preset("hetacumn", particles.box_size)
        config.task.search_global_radius_px = global_radius_px or config.task.search_global_radius_px
        data = ParticleImages(particles, DataConfig().mask_radius_fraction, contrast="auto", whiten=whiten)
        return cls(data, truth.rotations, truth.shift_px,
                   np.load(data_dir / "truth" / "labels.npy"), true_maps(data_dir / "truth"),
                   pose_search_from_config(config.task, config.model.shift_range_px))

    def batches(self, n_images: int, radius_px: float, batch_size: int = 128, desc: str = "searching"):
        """``(rows, targets, ctf, half, true rotation, true shift)`` of the first ``n_images``, a batch at a time."""
        half = HalfPlane.build(self.data.box_size, radius_px)
        for start in tqdm(range(0, min(n_images, len(self.data)), batch_size), desc=desc, unit="batch"):
            rows = np.arange(start, min(start + batch_size, n_images, len(self.data)))
            batch = self.data.batch(rows, torch.device("cpu"))
            yield (rows, half.gather(batch.images_ft), ctf_at(half, batch), half,
                   torch.as_tensor(self.rotations[rows], dtype=torch.float32),
                   torch.as_tensor(self.shift_px[rows], dtype=torch.float32))


def pose_errors(truth: TrueSearch, n_images: int, radius_px: float) -> dict[str, np.ndarray]:
    """Rotation errors (deg) per image for each reference, and the shift errors (px) of the own-class search."""
    maps, search = truth.maps, truth.search
    mean_map = torch.stack(maps).mean(0)
    errors = {"search, own class": [], "search, mean map": [], "local from truth": [], "shift own class (px)": []}
    for rows, targets, ctf, half, true_rotation, true_shift in truth.batches(n_images, radius_px):
        labels = truth.labels[rows]
        own = _per_class(maps, labels, lambda volume, keep: search(volume, targets[keep], ctf[keep], half))
        errors["search, own class"].append(_degrees(own[0], true_rotation))
        errors["shift own class (px)"].append((own[1] - true_shift).norm(dim=-1).numpy())
        if len(maps) > 1:
            found = search(mean_map, targets, ctf, half)
            errors["search, mean map"].append(_degrees(found[0], true_rotation))
        local = _per_class(maps, labels, lambda volume, keep: search.refine(
            volume, targets[keep], ctf[keep], half, true_rotation[keep], true_shift[keep], search.start_step_rad / 2,
            search.shift_step_px / 2, LOCAL_LEVELS))
        errors["local from truth"].append(_degrees(local[0], true_rotation))
    return {name: np.concatenate(values) for name, values in errors.items() if values}


def misassigned(truth: TrueSearch, n_images: int, radius_px: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The images' true classes and, at the true pose and at each map's searched pose, the index of the true map
    that fits each image best (the best any hard classification of single images against the true maps can do)."""
    search, at_truth, searched = truth.search, [], []
    for _, targets, ctf, half, rotation, shift in truth.batches(n_images, radius_px, desc="classifying"):
        # one level of vanishing steps: the error at the true pose itself
        at_truth.append(torch.stack([search.refine(volume, targets, ctf, half, rotation, shift, 1e-9, 1e-9, 1)[2]
                                     for volume in truth.maps]).argmin(0).numpy())
        searched.append(torch.stack([search(volume, targets, ctf, half)[2] for volume in truth.maps]).argmin(0).numpy())
    labels = truth.labels[:min(n_images, len(truth.labels))]
    return labels, {"at the true pose": np.concatenate(at_truth), "at each map's searched pose": np.concatenate(searched)}


def _per_class(maps, labels: np.ndarray, run):
    """``run(map, keep)`` for the images of each class; rotations and shifts back in image order."""
    rotation, shift = torch.zeros(len(labels), 3, 3), torch.zeros(len(labels), 2)
    for k, volume in enumerate(maps):
        keep = torch.from_numpy(labels == k)
        if keep.any():
            found = run(volume, keep)
            rotation[keep], shift[keep] = found[0].float(), found[1].float()
    return rotation, shift


def _degrees(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.rad2deg(geodesic_distance_rad(a.double(), b.double())).numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a dataset folder of hetacumn simulate (particles.star, truth/)")
    parser.add_argument("--images", type=int, default=1000, help="the first N images")
    parser.add_argument("--radius", type=float, nargs="+", default=[8.0, 16.0, 31.0],
                        help="radii (px) of the final refinement; the grid search stays at 8 px")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--classify", action="store_true",
                        help="also the images a hard classification against the true maps gets wrong")
    parser.add_argument("--classify-only", action="store_true", help="--classify without the pose table")
    parser.add_argument("--whiten", action="store_true", help="whiten images and CTFs (train --whiten)")
    parser.add_argument("--global-radius", type=float, help="px compared in the grid search (default the preset's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    truth = TrueSearch.load(args.data, whiten=args.whiten, global_radius_px=args.global_radius)
    print(f"{args.data.name}: {args.images} images; machine: {machine_line('cpu')}; code {code_version()}; "
          f"date {datetime.date.today().isoformat()}")
    print("| radius (px) | reference | median rotation error (deg) | > 10 deg | median shift error (px) | time (s) |")
    print("|---|---|---|---|---|---|")
    for radius in [] if args.classify_only else args.radius:
        began = time.perf_counter()
        errors = pose_errors(truth, args.images, radius)
        seconds = time.perf_counter() - began
        shift = float(np.median(errors["shift own class (px)"]))
        for name, degrees in errors.items():
            if name.startswith("shift"):
                continue
            shift_cell = f"{shift:.2f}" if name == "search, own class" else ""
            print(f"| {radius:g} | {name} | {np.median(degrees):.2f} | {np.mean(degrees > 10):.1%} | {shift_cell} | "
                  f"{seconds:.0f} |", flush=True)
    if args.classify or args.classify_only:
        for radius in args.radius:
            labels, best = misassigned(truth, args.images, radius)
            for where, best_map in best.items():
                print(f"radius {radius:g} px: images whose own class's true map fits worse than another, {where}: "
                      f"{np.mean(best_map != labels):.1%}", flush=True)
                if len(truth.maps) > 2:  # states along a path: how well the best-fitting map ranks them
                    rho = abs(spearmanr(best_map, labels)[0])
                    print(f"radius {radius:g} px: |Spearman| of the best-fitting map's index with the true state, "
                          f"{where}: {rho:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
