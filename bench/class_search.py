"""Final poses searched against one volume per conformation class instead of the decoder at z = 0.

    .venv/bin/python bench/class_search.py RUN_FOLDER DATASET_FOLDER [--classes K ...] [--images N]

RUN_FOLDER: a finished ``hetacumn train`` run (checkpoint.pt, pose_table.npy, z.npy); DATASET_FOLDER: the
simulated set it was trained on (particles.star, truth/poses.pkl, truth/labels.npy). The latents z.npy are
clustered by k-means into K classes; each image is searched against the decoder's volume at its class's mean z,
and the searched pose competes with the pose table's as in ``train``'s final pass (the better fit at the image's
own z is kept). K = 0 is ``train``'s pass as it is (one volume, z = 0). Median rotation errors after the global
alignment; "images in their true class's cluster": 1 - the confusion error of the clusters (Hungarian-matched).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from accuracy import code_version, machine_line
from sklearn.cluster import KMeans

from hetacumn.data.pose_table import PoseTable
from hetacumn.engine.inference import infer
from hetacumn.engine.run import load_trained_state, trained_images
from hetacumn.engine.trainer import max_radius_px
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.particles import load_particles
from hetacumn.metrics.latent import confusion_error
from hetacumn.metrics.pose import rotation_errors
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.search_task import pose_search_from_config


@contextmanager
def decoded_at(model, z: torch.Tensor):
    """``infer`` searches against ``model.fourier_volume`` at z = 0: within the block, at ``z`` instead."""
    original = model.fourier_volume
    model.fourier_volume = lambda _z, **kwargs: original(z, **kwargs)
    try:
        yield
    finally:
        del model.fourier_volume


def final_poses(model, data, task, config, table, z, images, classes: int,
                true_labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rotations ``(len(images), 3, 3)`` of the final pass, and the class of each image (-1 for K = 0): by k-means
    of z, or the ``true_labels`` (an oracle: each true class searched against the decoder at its mean z)."""
    search = pose_search_from_config(config.task, config.model.shift_range_px, final=True)
    radius, device = max_radius_px(config), torch.device("cpu")
    known_z0 = z[:, 0].copy()
    if classes == 0:
        result = infer(model, data, task, radius, device, search=search, known=table, known_z0=known_z0,
                       images=images)
        return result.rotations, np.full(len(images), -1)
    if true_labels is None:
        kmeans = KMeans(classes, n_init=10, random_state=0).fit(z[images])
        assigned, centres = kmeans.labels_, kmeans.cluster_centers_
    else:
        assigned = np.unique(true_labels[images], return_inverse=True)[1]
        centres = np.stack([z[images][assigned == k].mean(axis=0) for k in range(assigned.max() + 1)])
    rotations = np.zeros((len(images), 3, 3))
    for k, centre in enumerate(centres):
        members = np.flatnonzero(assigned == k)
        with decoded_at(model, torch.from_numpy(centre).float()):
            result = infer(model, data, task, radius, device, search=search, known=table, known_z0=known_z0,
                           images=images[members])
        rotations[members] = result.rotations
    return rotations, assigned


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--classes", type=int, nargs="*", default=[0, 2])
    parser.add_argument("--images", type=int, help="the first N images only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--true-classes", action="store_true",
                        help="also search each TRUE class against the decoder at its mean z (an oracle)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, config, _ = load_trained_state(args.run / "checkpoint.pt")
    particles = load_particles(args.data / "particles.star")
    truth = read_pose_pickle(args.data / "truth" / "poses.pkl", particles.box_size).rotations
    labels = np.load(args.data / "truth" / "labels.npy")
    data = trained_images(particles, config)
    task = ImageReconstructionTask(config.task, config.model.z_mode)
    table = PoseTable.open(args.run / "pose_table.npy", len(particles))
    z = np.load(args.run / "z.npy")
    images = np.arange(args.images or len(particles))
    print(f"{args.run.name} on {args.data.name} ({len(images)} images); machine: {machine_line('cpu')}; "
          f"code {code_version()}")
    print("| classes searched | median rotation error (deg) | images in their true class's cluster | ms per image |")
    print("|---|---|---|---|")
    for classes in args.classes:
        began = time.perf_counter()
        rotations, assigned = final_poses(model, data, task, config, table, z, images, classes)
        ms = 1000 * (time.perf_counter() - began) / len(images)
        error = rotation_errors(rotations, truth[images])["median_angle_deg"]
        share = "—" if classes == 0 else f"{1 - confusion_error(assigned, labels[images]):.3f}"
        print(f"| {classes or 'none (z = 0, train now)'} | {error:.2f} | {share} | {ms:.1f} |", flush=True)
    if args.true_classes:
        rotations, _ = final_poses(model, data, task, config, table, z, images, 1, labels)
        error = rotation_errors(rotations, truth[images])["median_angle_deg"]
        print(f"| true classes, decoder at each one's mean z (oracle) | {error:.2f} | 1 | |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
