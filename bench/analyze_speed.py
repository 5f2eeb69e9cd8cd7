"""Latent-analysis speed at scale: PCA, UMAP, k-means, GMM-BIC and class subsets on synthetic z.

z is ``--n`` x ``--zdim`` float32 drawn from ``--clusters`` Gaussian clusters (seeded). Each step of
:func:`hetacumn.analysis.run.analyze_latent` is timed as ``hetacumn analyze`` runs it, then the class
index lists and a ``select``-style selection. Prints a Markdown table for BENCHMARKS.md and the
adjusted Rand index of the k-means and GMM labels against the true clusters (a sanity check that the
fast paths still cluster).

Run:  OMP_NUM_THREADS=1 .venv/bin/python bench/analyze_speed.py [--n 1000000] [--zdim 8] [--ksample 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from importlib.metadata import version

import numpy as np
import sklearn
from sklearn.metrics import adjusted_rand_score

from hetacumn.analysis.run import analyze_latent
from hetacumn.analysis.subsets import class_indices, select_classes


def synthetic_latents(n: int, zdim: int, clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, zdim)`` float32 latents from ``clusters`` unit Gaussians with centres 4 apart, and their labels."""
    rng = np.random.default_rng(seed)
    centres = 4.0 * rng.standard_normal((clusters, zdim))
    labels = rng.integers(0, clusters, size=n)
    z = (centres[labels] + rng.standard_normal((n, zdim))).astype(np.float32)
    return z, labels


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--zdim", type=int, default=8)
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--ksample", type=int, default=20)
    parser.add_argument("--skip-umap", action="store_true")
    args = parser.parse_args()
    z, truth = synthetic_latents(args.n, args.zdim, args.clusters)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    latent = analyze_latent(z, args.ksample, timings, seed=0, skip_umap=args.skip_umap)
    subsets_start = time.perf_counter()
    parts = class_indices(latent.labels, args.ksample)
    select_classes(latent.labels, [0, 1], invert=True)
    timings["class index lists + select"] = round(time.perf_counter() - subsets_start, 3)
    total = time.perf_counter() - start
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={threads}, "
               f"sklearn {sklearn.__version__}, umap-learn {version('umap-learn')}")
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"z: {args.n:,} x {args.zdim}, {args.clusters} clusters; K = {args.ksample}; {machine}")
    print("| step | seconds |\n|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"| total | {total:.1f} |")
    print(f"peak resident memory {peak_gib:.2f} GiB; GMM-BIC chose {latent.gmm_k} (true {args.clusters}); "
          f"ARI k-means {adjusted_rand_score(truth, latent.labels):.3f} (K = {args.ksample}), "
          f"ARI GMM {adjusted_rand_score(truth, latent.gmm_labels):.3f}; "
          f"{sum(len(p) for p in parts):,} particles in {len(parts)} classes")


if __name__ == "__main__":
    main()
