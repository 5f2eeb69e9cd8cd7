"""Probe: the mean pose error of each true state, in the body frame (does the search turn conformations into poses?).

    .venv/bin/python bench/pose_bias_by_state.py RUN_FOLDER DATASET_FOLDER

After the global alignment (``align_rotations``), each image's error ``E = A_true^T A`` as a rotation vector
(degrees, volume frame); per true state: the mean vector, its length, the median error and the median distance
of the vectors from their state's mean (the scatter left once the state's common rotation is removed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.metrics.pose import align_rotations


def main() -> int:
    run, data = Path(sys.argv[1]), Path(sys.argv[2])
    true = read_pose_pickle(data / "truth" / "poses.pkl", 1).rotations
    aligned, alignment = align_rotations(read_pose_pickle(run / "poses.pkl", 1).rotations, true)
    vectors = Rotation.from_matrix(np.einsum("nji,njk->nik", true, aligned)).as_rotvec(degrees=True)
    angles = np.linalg.norm(vectors, axis=1)
    labels = np.load(data / "truth" / "labels.npy")
    print(f"{run.name}: hand {alignment.hand}, median error {np.median(angles):.2f} deg")
    print("| state | images | mean error vector (deg) | its length (deg) | median error (deg) | median scatter (deg) |")
    print("|---|---|---|---|---|---|")
    for state in np.unique(labels):
        members = vectors[labels == state]
        mean = members.mean(axis=0)
        scatter = np.median(np.linalg.norm(members - mean, axis=1))
        print(f"| {state} | {len(members)} | ({mean[0]:.1f}, {mean[1]:.1f}, {mean[2]:.1f}) | {np.linalg.norm(mean):.1f} "
              f"| {np.median(angles[labels == state]):.1f} | {scatter:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
