"""Particle subsets by class: RELION 3.1 STAR files and index pickles, and class selection.

A subset STAR points at the original stacks, keeps the input's optics and CTF columns and carries the
poses of the particle set it is cut from (the run's poses when that set was read from ``poses.star``).
An index pickle holds the 0-based particle indices as a pickled ``np.int64`` array (cryoDRGN's
``--ind`` format); ``labels.npy`` holds the class of every particle.

Example usage::

    labels = read_labels("run/analyze/labels.npy", n_particles=len(particles))
    keep = select_classes(labels, [3, 7], invert=False)
    write_subset("subset.star", particles, keep)          # subset.star + subset.pkl
    written = write_class_subsets("run/analyze/subsets", particles, labels)
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from hetacumn.errors import InputError
from hetacumn.io.particles import ParticleSet
from hetacumn.io.star import write_particles_star
from hetacumn.outputs import check_output_file

__all__ = ["class_indices", "select_classes", "read_labels", "write_index_pickle", "write_subset",
           "write_class_subsets"]


def class_indices(labels: np.ndarray, n_classes: int | None = None) -> list[np.ndarray]:
    """Sorted 0-based indices (int64) of the particles of each class ``0 .. n_classes - 1``.

    ``n_classes`` defaults to ``labels.max() + 1``; classes without particles give empty arrays.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max(initial=-1)) + 1 if n_classes is None else n_classes
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_classes + 1))
    return [order[bounds[k] : bounds[k + 1]].astype(np.int64) for k in range(n_classes)]


def select_classes(labels: np.ndarray, classes, invert: bool = False) -> np.ndarray:
    """Sorted indices (int64) of the particles whose label is in ``classes`` (or not in it, ``invert``).

    Raises InputError for a class that no particle has.
    """
    labels = np.asarray(labels, dtype=np.int64)
    classes = np.asarray(sorted(set(int(c) for c in classes)), dtype=np.int64)
    present = np.unique(labels)
    missing = np.setdiff1d(classes, present)
    if missing.size:
        raise InputError(None, f"class {missing[0]} not found: the labels have classes {present.tolist()}")
    keep = np.isin(labels, classes)
    return np.flatnonzero(~keep if invert else keep).astype(np.int64)


def read_labels(path: str | Path, n_particles: int | None = None) -> np.ndarray:
    """Integer class labels ``(N,)`` from a ``.npy`` file; InputError if unreadable or of the wrong length."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "labels file not found (run hetacumn analyze first, or give --labels)")
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(path, f"cannot read labels ({error})") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(path, f"labels must be integers of shape (N,), got {labels.dtype} {labels.shape}")
    if n_particles is not None and len(labels) != n_particles:
        raise InputError(path, f"{len(labels)} labels but {n_particles} particles")
    return labels.astype(np.int64)


def write_index_pickle(path: str | Path, indices: np.ndarray, overwrite: bool = False) -> Path:
    """Pickle the 0-based ``indices`` as an ``np.int64`` array (cryoDRGN ``--ind``). Returns the path."""
    path = check_output_file(path, overwrite)
    with open(path, "wb") as handle:
        pickle.dump(np.asarray(indices, dtype=np.int64), handle)
    return path


def write_subset(star_path: str | Path, particles: ParticleSet, indices: np.ndarray,
                 overwrite: bool = False) -> tuple[Path, Path]:
    """Write the particles at ``indices`` to ``star_path`` and their indices beside it (``.pkl``)."""
    star_path = Path(star_path)
    pickle_path = star_path.with_suffix(".pkl")
    check_output_file(pickle_path, overwrite)
    write_particles_star(star_path, particles, indices=np.asarray(indices, dtype=np.int64), overwrite=overwrite)
    return star_path, write_index_pickle(pickle_path, indices, overwrite=True)


def write_class_subsets(outdir: str | Path, particles: ParticleSet, labels: np.ndarray,
                        overwrite: bool = False) -> list[dict]:
    """One STAR file and index pickle per class: ``class_000.star``, ``class_000.pkl``, ... in ``outdir``.

    Returns
    -------
    list of dict, one per class: ``class``, ``n_particles``, ``star``, ``indices`` (file paths as str).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(particles):
        raise ValueError(f"{len(labels)} labels for {len(particles)} particles")
    outdir = Path(outdir)
    written = []
    for k, indices in enumerate(class_indices(labels)):
        star, pkl = write_subset(outdir / f"class_{k:03d}.star", particles, indices, overwrite)
        written.append({"class": k, "n_particles": int(len(indices)), "star": str(star), "indices": str(pkl)})
    return written
