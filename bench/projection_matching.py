"""Probe: rounds of projection matching after ``train``, against backprojections instead of the decoder.

    .venv/bin/python bench/projection_matching.py RUN_FOLDER DATASET_FOLDER [--rounds 3] [--true-classes]

Each round: the images are split into two halves; each half's images, at their current poses, are
backprojected per class (Wiener, the images' CTFs); each image is then searched (``train``'s final search:
global grid, local refinement) against the OTHER half's reference of its class, as in a gold-standard
refinement. Classes: k-means of the run's z.npy into the true class count (or the true labels,
``--true-classes``); ``--reassign`` gives each image the class whose reference it fits best each round.
Prints the median rotation error after global alignment and the class agreement per round.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accuracy import code_version, machine_line
from sklearn.cluster import KMeans

from hetacumn.engine.run import load_trained_state, trained_images
from hetacumn.engine.trainer import max_radius_px
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.particles import load_particles
from hetacumn.metrics.latent import confusion_error
from hetacumn.metrics.pose import rotation_errors
from hetacumn.models.lattice import HalfPlane
from hetacumn.physics.fourier import fft3_centered
from hetacumn.physics.reconstruct import BackprojectionAccumulator
from hetacumn.tasks.base import ctf_at
from hetacumn.tasks.search_task import _expanded, pose_search_from_config

BATCH = 256


def references(data, rotations, shift_px, groups: np.ndarray, count: int, soft=None) -> list[torch.Tensor]:
    """Centred 3-D transforms of the Wiener backprojection of each group ``0..count-1``; ``soft``: each image's
    candidate rotations ``(N, K, 3, 3)``, shifts ``(N, K, 2)`` and posterior weights ``(N, K)`` instead."""
    accumulators = [BackprojectionAccumulator(data.box_size, oversampling=1) for _ in range(count)]
    for start in range(0, len(data), BATCH):
        index = np.arange(start, min(start + BATCH, len(data)))
        batch = data.batch(index, torch.device("cpu"))
        ctf = batch.ctf_images()
        for group in range(count):
            rows = torch.from_numpy(np.flatnonzero(groups[index] == group))
            if not len(rows):
                continue
            chosen = index[rows.numpy()]
            ctf_rows = None if ctf is None else ctf[rows]
            if soft is None:
                accumulators[group].add(batch.images[rows], torch.from_numpy(rotations[chosen]).float(),
                                        ctf=ctf_rows, shift_px=torch.from_numpy(shift_px[chosen]).float())
                continue
            images, ctf_rows, rotation, shift, weights = _expanded(
                batch.images[rows], ctf_rows, *(torch.from_numpy(a[chosen]).float() for a in soft))
            accumulators[group].add(images, rotation, ctf=ctf_rows, shift_px=shift, weights=weights)
    return [fft3_centered(a.volume()) for a in accumulators]


def sharpening(box_size: int, gain_at_16px: float) -> torch.Tensor:
    """``(D, D, D)`` factors ``G ** ((r / 16)**2)`` on the centred Fourier grid, ``r`` in px."""
    axis = torch.arange(box_size) - box_size // 2
    r2 = axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2
    return torch.tensor(float(gain_at_16px)) ** (r2 / 256.0)


def search_round(data, search, half, volumes, reference_of: np.ndarray, classes: int, reassign: bool):
    """Each image searched against ``volumes[reference_of[i] * classes + c]`` for its class ``c`` (or every
    class with ``reassign``): new rotations, shifts, each image's errors against each class ``(N, classes)`` (inf
    where not searched) and its candidates with their posteriors (for ``references``' ``soft``)."""
    rotations, shifts = np.zeros((len(data), 3, 3)), np.zeros((len(data), 2))
    errors = np.full((len(data), classes), np.inf)
    soft = [np.zeros((len(data), search.candidates, 3, 3)), np.zeros((len(data), search.candidates, 2)),
            np.zeros((len(data), search.candidates))]
    for start in range(0, len(data), BATCH):
        index = np.arange(start, min(start + BATCH, len(data)))
        batch = data.batch(index, torch.device("cpu"))
        targets, ctf = half.gather(batch.images_ft), ctf_at(half, batch)
        for c in range(classes):
            for part in (0, 1):
                rows = np.flatnonzero(reference_of[index] // classes == part) if reassign else \
                    np.flatnonzero(reference_of[index] == part * classes + c)
                if not len(rows):
                    continue
                volume, target = volumes[part * classes + c], targets[rows]
                ctf_rows = None if ctf is None else ctf[rows]
                candidates = search.coarse_candidates(volume, target, ctf_rows, half)
                weights = search.posteriors(target, half, *candidates)
                r, s, e = search.refine_best(volume, target, ctf_rows, half, *candidates)
                better = e.numpy() < errors[index[rows]].min(1) if reassign else np.ones(len(rows), bool)
                errors[index[rows], c] = e.numpy()
                keep = index[rows][better] if reassign else index[rows]
                rotations[keep], shifts[keep] = r.double().numpy()[better], s.double().numpy()[better]
                cand_r, cand_s = candidates[0].clone(), candidates[1].clone()
                best = (torch.arange(len(rows)), candidates[2].argmin(1))
                cand_r[best], cand_s[best] = r, s  # the best candidate at its refined pose
                for array, values in zip(soft, (cand_r, cand_s, weights)):
                    array[keep] = values.double().numpy()[better]
    return rotations, shifts, errors, soft


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--true-classes", action="store_true", help="the TRUE classes instead of k-means of z")
    parser.add_argument("--reassign", action="store_true", help="each round, each image to its best-fitting class")
    parser.add_argument("--soft", action="store_true", help="insert each image at its candidates by posterior")
    parser.add_argument("--start-truth", choices=["none", "rotations", "shifts", "both"], default="none",
                        help="start from the TRUE rotations and/or shifts instead of train's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sharpen", type=float, default=1.0,
                        help="multiply each reference's transform by G**((r / 16 px)**2): gain G at 16 px")
    parser.add_argument("--radius", type=float, help="largest Fourier radius compared (px; default the run's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, config, _ = load_trained_state(args.run / "checkpoint.pt")
    particles = load_particles(args.data / "particles.star")
    labels = np.unique(np.load(args.data / "truth" / "labels.npy"), return_inverse=True)[1]
    classes = labels.max() + 1
    data = trained_images(particles, config)
    poses = read_pose_pickle(args.run / "poses.pkl", particles.box_size)
    true_poses = read_pose_pickle(args.data / "truth" / "poses.pkl", particles.box_size)
    truth = true_poses.rotations
    rotations = (true_poses if args.start_truth in ("rotations", "both") else poses).rotations.copy()
    shift_px = (true_poses if args.start_truth in ("shifts", "both") else poses).shift_px.copy()
    z = np.load(args.run / "z.npy")
    assigned = labels if args.true_classes else KMeans(classes, n_init=10, random_state=0).fit(z).labels_
    halves = np.random.default_rng(0).permutation(len(data)) % 2
    search = pose_search_from_config(config.task, config.model.shift_range_px, final=True)
    half = HalfPlane.build(data.box_size, args.radius or max_radius_px(config))
    gain = sharpening(data.box_size, args.sharpen)
    print(f"{args.run.name} on {args.data.name}; {machine_line('cpu')}; code {code_version()}")
    print(f"round 0 (start, --start-truth {args.start_truth}): "
          f"{rotation_errors(rotations, truth)['median_angle_deg']:.2f} deg, "
          f"confusion {confusion_error(assigned, labels):.3f}", flush=True)
    for round_ in range(1, args.rounds + 1):
        began = time.perf_counter()
        volumes = references(data, rotations, shift_px, halves * classes + assigned, 2 * classes,
                             soft if args.soft and round_ > 1 else None)
        volumes = [v * gain for v in volumes]
        # each image against the other half's references
        rotations, shift_px, errors, soft = search_round(data, search, half, volumes, (1 - halves) * classes + assigned,
                                                   classes, args.reassign)
        if args.reassign:
            assigned = errors.argmin(1)
        print(f"round {round_}: {rotation_errors(rotations, truth)['median_angle_deg']:.2f} deg, "
              f"confusion {confusion_error(assigned, labels):.3f}, {time.perf_counter() - began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
