"""PCA, UMAP, k-means, GMM-BIC and PC traversals on latents with known structure."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from sklearn.metrics import adjusted_rand_score

from hetacumn.analysis import latent
from hetacumn.analysis.latent import centre_particles, gmm_bic, kmeans, pc_traversal, pca, umap_embedding


def _clusters(n_per_cluster: int, centres: list[list[float]], seed: int = 0, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=np.float64)
    z = np.concatenate([c + spread * rng.standard_normal((n_per_cluster, centres.shape[1])) for c in centres])
    labels = np.repeat(np.arange(len(centres)), n_per_cluster)
    order = rng.permutation(len(z))
    return z[order].astype(np.float32), labels[order]


def test_gmm_bic_counts_two_and_three_clusters():
    z2, labels2 = _clusters(200, [[0, 0, 0, 0], [4, 0, 0, 0]])
    best_k, bic, gmm_labels = gmm_bic(z2, k_max=6, seed=0)
    assert best_k == 2 and bic.shape == (6,) and np.argmin(bic) == 1
    assert adjusted_rand_score(labels2, gmm_labels) == 1.0
    z3, labels3 = _clusters(200, [[0, 0, 0, 0], [4, 0, 0, 0], [0, 4, 0, 0]], seed=1)
    best_k, _, gmm_labels = gmm_bic(z3, k_max=6, seed=0, max_fit=300)  # fitted on a subsample, predicts all
    assert best_k == 3 and len(gmm_labels) == 600
    assert adjusted_rand_score(labels3, gmm_labels) == 1.0


def test_kmeans_centre_particles_are_nearest():
    z, labels = _clusters(150, [[0, 0], [3, 0], [0, 3], [3, 3]], seed=2)
    found, centres = kmeans(z, 4, seed=0)
    assert adjusted_rand_score(labels, found) == 1.0 and centres.shape == (4, 2)
    nearest = centre_particles(z, centres)
    distances = ((z[:, None, :].astype(np.float64) - centres[None]) ** 2).sum(-1)
    assert np.array_equal(nearest, distances.argmin(axis=0))
    assert np.allclose(distances[nearest, np.arange(4)], distances.min(axis=0))


def test_minibatch_kmeans_above_threshold(monkeypatch):
    monkeypatch.setattr(latent, "MINIBATCH_ABOVE", 100)
    monkeypatch.setattr(latent, "CHUNK", 64)  # chunked nearest-particle search over several blocks
    z, labels = _clusters(150, [[0, 0], [5, 0], [0, 5]], seed=3)
    found, centres = kmeans(z, 3, seed=0)
    assert adjusted_rand_score(labels, found) == 1.0
    distances = ((z[:, None, :].astype(np.float64) - centres[None]) ** 2).sum(-1)
    assert np.array_equal(centre_particles(z, centres), distances.argmin(axis=0))


def test_pca_recovers_axes_and_variances():
    rng = np.random.default_rng(4)
    axes = Rotation.from_euler("ZYZ", [30, 50, 70], degrees=True).as_matrix()  # rows: true principal axes
    z = (rng.standard_normal((20000, 3)) * [3.0, 1.0, 0.1]) @ axes + [1.0, -2.0, 0.5]
    projected, components, explained = pca(z, 3)
    assert np.abs(np.abs((components * axes).sum(1)) - 1).max() < 1e-3
    assert np.allclose(explained, np.array([9.0, 1.0, 0.01]) / 10.01, atol=0.01)
    assert np.allclose(projected, (z - z.mean(0)) @ components.T)
    assert np.allclose(projected.var(0, ddof=1), [9.0, 1.0, 0.01], rtol=0.05)


def test_pc_traversal_spans_5th_to_95th_percentile():
    rng = np.random.default_rng(5)
    z = rng.standard_normal((5000, 4)) * [2.0, 1.0, 0.5, 0.2]
    projected, components, _ = pca(z, 4)
    mean = z.mean(0)
    for pc in (1, 2):
        points = pc_traversal(projected, components, mean, pc, n=10)
        along = (points - mean) @ components.T
        low, high = np.percentile(projected[:, pc - 1], [5, 95])
        assert points.shape == (10, 4)
        assert along[0, pc - 1] == pytest.approx(low) and along[-1, pc - 1] == pytest.approx(high)
        assert np.all(np.diff(along[:, pc - 1]) > 0)
        assert np.abs(np.delete(along, pc - 1, axis=1)).max() < 1e-10


def test_umap_embedding_subsample_and_transform_keep_clusters():
    z, labels = _clusters(150, [[0] * 8, [3] + [0] * 7], seed=6)
    embedding = umap_embedding(z, max_fit=200, seed=0)  # 200 fitted, 100 transformed
    assert embedding.shape == (300, 2) and np.isfinite(embedding).all()
    found, _ = kmeans(embedding, 2, seed=0)
    assert adjusted_rand_score(labels, found) == 1.0
