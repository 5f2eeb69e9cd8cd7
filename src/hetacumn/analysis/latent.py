"""Latent-space analysis of ``z`` (N x zdim latent means): PCA, UMAP, k-means, GMM-BIC, PC traversals.

Pure numpy / scikit-learn. Everything scales to a million particles: models are fitted on seeded
subsamples where that is enough (UMAP, GMM), k-means switches to mini-batches above
``MINIBATCH_ABOVE`` particles, and predictions are made in chunks of ``CHUNK`` rows.

Example usage::

    projected, components, explained_ratio = pca(z, n_components=2)
    embedding = umap_embedding(z)                        # (N, 2)
    labels, centres = kmeans(z, k=20, seed=0)
    nearest = centre_particles(z, centres)               # particle index nearest each centre
    best_k, bic_curve, gmm_labels = gmm_bic(z, k_max=10, seed=0)
    z_path = pc_traversal(projected, components, z.mean(0), pc=1)   # (10, zdim) from p5 to p95 of PC1
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.mixture import GaussianMixture

__all__ = ["pca", "umap_embedding", "kmeans", "centre_particles", "gmm_bic", "pc_traversal",
           "MINIBATCH_ABOVE", "CHUNK"]

MINIBATCH_ABOVE = 200_000
CHUNK = 100_000
_MINIBATCH_SIZE = 4096


def _as_latent(z) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim != 2 or len(z) == 0 or not np.issubdtype(z.dtype, np.number):
        raise ValueError(f"need latents of shape (N, zdim) with N >= 1, got {z.dtype} {z.shape}")
    return z


def _subsample(n: int, max_points: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` rows, drawn without replacement (seeded)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def _chunks(n: int, size: int = CHUNK):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def pca(z, n_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal components of ``z`` from its covariance (exact, one pass over the data).

    Parameters
    ----------
    z : (N, zdim) array
    n_components : number of components kept (at most zdim).

    Returns
    -------
    projected : (N, n_components) float64, ``(z - mean) @ components.T``.
    components : (n_components, zdim) float64, orthonormal rows by decreasing variance; each row's
        largest-magnitude entry is positive, so the signs are reproducible.
    explained_ratio : (n_components,) fraction of the total variance along each component.
    """
    z = _as_latent(z)
    if not 1 <= n_components <= z.shape[1]:
        raise ValueError(f"n_components must be in 1..{z.shape[1]}, got {n_components}")
    mean = z.mean(axis=0, dtype=np.float64)
    covariance = np.zeros((z.shape[1], z.shape[1]))
    for rows in _chunks(len(z)):
        centred = z[rows].astype(np.float64) - mean
        covariance += centred.T @ centred
    covariance /= max(len(z) - 1, 1)
    variances, vectors = np.linalg.eigh(covariance)
    order = np.argsort(variances)[::-1]
    variances, components = np.clip(variances[order], 0.0, None), vectors[:, order].T
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    explained_ratio = variances / variances.sum() if variances.sum() > 0 else np.zeros_like(variances)
    components = components[:n_components]
    projected = np.empty((len(z), n_components))
    for rows in _chunks(len(z)):
        projected[rows] = (z[rows].astype(np.float64) - mean) @ components.T
    return projected, components, explained_ratio[:n_components]


def umap_embedding(z, max_fit: int = 50_000, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """2D UMAP embedding of ``z``: fitted on a seeded subsample of ``max_fit`` rows, the rest transformed.

    Returns
    -------
    embedding : (N, 2) float32; rows of the subsample keep their fitted coordinates.
    """
    import umap  # imported here: umap-learn takes seconds to import (numba)

    z = _as_latent(z).astype(np.float32)
    fit_rows = _subsample(len(z), max_fit, seed)
    model = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(fit_rows) - 1), random_state=seed,
                      n_jobs=1)
    embedding = np.empty((len(z), 2), dtype=np.float32)
    embedding[fit_rows] = model.fit_transform(z[fit_rows])
    rest = np.setdiff1d(np.arange(len(z)), fit_rows, assume_unique=True)
    for rows in _chunks(len(rest)):
        embedding[rest[rows]] = model.transform(z[rest[rows]])
    return embedding


def kmeans(z, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means clusters of ``z`` (mini-batch k-means above ``MINIBATCH_ABOVE`` particles).

    Returns
    -------
    labels : (N,) int64 class of each particle, 0..k-1.
    centres : (k, zdim) float64 cluster centres.
    """
    z = _as_latent(z)
    if not 1 <= k <= len(z):
        raise ValueError(f"k must be in 1..{len(z)} (the number of particles), got {k}")
    if len(z) > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(n_clusters=k, batch_size=_MINIBATCH_SIZE, n_init=3, random_state=seed)
    else:
        model = KMeans(n_clusters=k, n_init=10, random_state=seed)
    model.fit(z.astype(np.float64))
    return model.labels_.astype(np.int64), model.cluster_centers_.astype(np.float64)


def centre_particles(z, centres: np.ndarray) -> np.ndarray:
    """Index of the particle whose ``z`` is nearest (Euclidean) each centre, ``(K,)`` int64."""
    z = _as_latent(z)
    centres = np.asarray(centres, dtype=np.float64)
    best_index = np.zeros(len(centres), dtype=np.int64)
    best_distance = np.full(len(centres), np.inf)
    for rows in _chunks(len(z)):
        block = z[rows].astype(np.float64)
        distances = (block**2).sum(1)[:, None] - 2 * block @ centres.T + (centres**2).sum(1)[None]  # (chunk, K)
        nearest = distances.argmin(axis=0)
        closer = distances[nearest, np.arange(len(centres))] < best_distance
        best_distance[closer] = distances[nearest, np.arange(len(centres))][closer]
        best_index[closer] = nearest[closer] + rows.start
    return best_index


def gmm_bic(z, k_max: int = 10, seed: int = 0, max_fit: int = 100_000) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of Gaussian clusters by the Bayesian information criterion.

    Full-covariance Gaussian mixtures with 1..k_max components are fitted on a seeded subsample of
    ``max_fit`` rows; the one with the lowest BIC labels every particle.

    Returns
    -------
    best_k : the number of components with the lowest BIC.
    bic_curve : (k_max,) BIC of 1..k_max components (on the subsample).
    labels : (N,) int64 component of each particle under the best mixture.
    """
    z = _as_latent(z).astype(np.float64)
    fit_rows = _subsample(len(z), max_fit, seed)
    k_max = min(k_max, len(fit_rows))
    models, bic_curve = [], np.zeros(k_max)
    for k in range(1, k_max + 1):
        model = GaussianMixture(n_components=k, covariance_type="full", n_init=2, reg_covar=1e-6,
                                random_state=seed).fit(z[fit_rows])
        models.append(model)
        bic_curve[k - 1] = model.bic(z[fit_rows])
    best = int(np.argmin(bic_curve))
    labels = np.empty(len(z), dtype=np.int64)
    for rows in _chunks(len(z)):
        labels[rows] = models[best].predict(z[rows])
    return best + 1, bic_curve, labels


def pc_traversal(projected: np.ndarray, components: np.ndarray, mean: np.ndarray, pc: int,
                 n: int = 10) -> np.ndarray:
    """Latent points along principal component ``pc`` (1-based: PC1 = 1) from its 5th to 95th percentile.

    Parameters
    ----------
    projected : (N, n_components) output of :func:`pca`.
    components : (n_components, zdim) output of :func:`pca`.
    mean : (zdim,) mean of ``z`` (the PCA centre).
    pc : component number, 1..n_components.
    n : number of points, evenly spaced in PC value.

    Returns
    -------
    z_points : (n, zdim) float64, ``mean + t * components[pc - 1]`` for ``t`` from p5 to p95.
    """
    if not 1 <= pc <= len(components):
        raise ValueError(f"pc must be in 1..{len(components)}, got {pc}")
    low, high = np.percentile(projected[:, pc - 1], [5, 95])
    values = np.linspace(low, high, n)
    return np.asarray(mean, dtype=np.float64)[None] + values[:, None] * components[pc - 1][None]
