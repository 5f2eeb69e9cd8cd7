"""Latent metrics on synthetic latents with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hetacumn.metrics.latent import adjusted_rand_index, cluster_latent, confusion_error, spearman_pc1


def _two_clusters(count: int = 2000, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two unit Gaussians 10 sigma apart, half the points each."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], count // 2)
    z = rng.standard_normal((count, dim))
    z[:, 0] += 10.0 * labels
    return z, labels


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_confusion_error_counts_flipped_labels(method):
    z, labels = _two_clusters()
    flipped = labels.copy()
    chosen = np.random.default_rng(1).choice(len(labels), size=60, replace=False)  # 3 %
    flipped[chosen] = 1 - flipped[chosen]
    assert confusion_error(z, labels, method=method) == pytest.approx(0.0, abs=1e-12)
    assert confusion_error(z, flipped, method=method) == pytest.approx(0.03, abs=1e-12)
    assert confusion_error(torch.from_numpy(z).float(), flipped, method=method) == pytest.approx(0.03, abs=1e-12)


def test_confusion_error_matches_clusters_to_string_classes():
    z, labels = _two_clusters(count=600, seed=2)
    names = np.where(labels == 0, "open", "closed")
    assert confusion_error(z, names) == pytest.approx(0.0, abs=1e-12)
    # Predicted labels swapped wholesale are still a perfect classification.
    assert confusion_error(1 - labels, labels) == pytest.approx(0.0, abs=1e-12)
    half_wrong = labels.copy()
    half_wrong[:150] = 1
    assert confusion_error(half_wrong, labels) == pytest.approx(150 / 600)


def test_adjusted_rand_index():
    labels = np.random.default_rng(3).integers(0, 4, size=1000)
    permutation = np.array([2, 0, 3, 1])
    assert adjusted_rand_index(permutation[labels], labels) == pytest.approx(1.0)
    unrelated = np.random.default_rng(4).integers(0, 4, size=1000)
    assert abs(adjusted_rand_index(unrelated, labels)) < 0.01
    z, two = _two_clusters(seed=5)
    assert adjusted_rand_index(z, two) == pytest.approx(1.0)


def test_cluster_latent_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster_latent(np.zeros((4, 2)), 2, method="dbscan")


def test_spearman_of_a_monotone_latent_is_one():
    rng = np.random.default_rng(6)
    states = rng.uniform(0, 1, size=1000)
    direction = rng.standard_normal(4)
    # z moves monotonically (non-linearly) along one direction, with small off-axis noise.
    z = np.exp(3 * states)[:, None] * direction + 0.01 * rng.standard_normal((1000, 4))
    assert spearman_pc1(z, states) > 0.999
    assert spearman_pc1(-z, states) > 0.999
    assert spearman_pc1(rng.standard_normal((1000, 4)), states) < 0.1


def test_spearman_of_two_separated_classes_reaches_its_ceiling():
    # Equal classes, perfectly separated along PC1: |rho| = sqrt(1 - 1/K^2) = 0.866 for K = 2.
    z, labels = _two_clusters(seed=7)
    assert spearman_pc1(z, labels) == pytest.approx(math.sqrt(3) / 2, abs=0.005)
