"""How well a conformational latent ``z`` recovers the true classes or continuous states.

Example usage::

    error = confusion_error(z, labels)            # misclassified fraction after k-means + Hungarian matching
    ari = adjusted_rand_index(z, labels)          # 1 = same partition
    predicted = cluster_latent(z, n_clusters=2)   # or cluster once and pass the integer labels to both
    error, ari = confusion_error(predicted, labels), adjusted_rand_index(predicted, labels)
    rho = spearman_pc1(z, states)                 # |Spearman rho| of PC1 of z against the true state
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

__all__ = ["cluster_latent", "confusion_error", "adjusted_rand_index", "spearman_pc1"]

_RANDOM_STATE = 0


def _as_array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
    return np.asarray(values)


def _latent_and_truth(z, truth) -> tuple[np.ndarray, np.ndarray]:
    z, truth = _as_array(z).astype(np.float64), _as_array(truth)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or truth.ndim != 1 or len(z) != len(truth):
        raise ValueError(f"need z of shape (N, d) and (N,) ground truth, got {z.shape} and {truth.shape}")
    return z, truth


def cluster_latent(z, n_clusters: int, method: str = "kmeans") -> np.ndarray:
    """Cluster labels ``(N,)`` of ``z`` ``(N, d)`` by k-means or a full-covariance GMM (fixed random state)."""
    z = _as_array(z).astype(np.float64)
    z = z[:, None] if z.ndim == 1 else z
    if method == "kmeans":
        model = KMeans(n_clusters=n_clusters, n_init=10, random_state=_RANDOM_STATE)
    elif method == "gmm":
        model = GaussianMixture(n_components=n_clusters, n_init=3, random_state=_RANDOM_STATE)
    else:
        raise ValueError(f"unknown clustering method {method!r}: use 'kmeans' or 'gmm'")
    return model.fit_predict(z)


def _predicted_and_true(z_or_predicted, labels, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer predicted labels as given, or ``z`` clustered into as many clusters as true classes."""
    values = _as_array(z_or_predicted)
    if values.ndim == 1 and np.issubdtype(values.dtype, np.integer):
        labels = _as_array(labels)
        if labels.shape != values.shape:
            raise ValueError(f"need predicted and true labels of equal length, got {values.shape} and {labels.shape}")
        return values, labels
    z, labels = _latent_and_truth(values, labels)
    return cluster_latent(z, len(np.unique(labels)), method), labels


def confusion_error(z_or_predicted, labels, method: str = "kmeans") -> float:
    """Fraction of images misclassified, after matching clusters to classes one-to-one.

    Clusters (of ``z`` into as many clusters as true classes, or the predicted labels as given) are matched
    to classes by the Hungarian algorithm on the contingency table.

    Parameters
    ----------
    z_or_predicted : numpy.ndarray or torch.Tensor, shape (N, d) or (N,)
        Latent coordinates (float), or integer predicted labels (N,).
    labels : array-like, shape (N,)
        True class of each image (any sortable values).
    method : {"kmeans", "gmm"}
        How ``z`` is clustered.
    """
    predicted, labels = _predicted_and_true(z_or_predicted, labels, method)
    _, predicted_index = np.unique(predicted, return_inverse=True)
    _, true_index = np.unique(labels, return_inverse=True)
    contingency = np.zeros((predicted_index.max() + 1, true_index.max() + 1), dtype=np.int64)
    np.add.at(contingency, (predicted_index, true_index), 1)
    rows, cols = linear_sum_assignment(contingency, maximize=True)
    return float(1.0 - contingency[rows, cols].sum() / len(labels))


def adjusted_rand_index(z_or_predicted, labels, method: str = "kmeans") -> float:
    """Adjusted Rand index between predicted and true classes (1 = identical partitions).

    ``z_or_predicted`` is integer predicted labels ``(N,)`` or a latent ``(N, d)`` (or float ``(N,)``), which
    is first clustered into as many clusters as true classes with ``method``.
    """
    predicted, labels = _predicted_and_true(z_or_predicted, labels, method)
    return float(adjusted_rand_score(labels, predicted))


def spearman_pc1(z, states) -> float:
    """``|rho|``: Spearman rank correlation between the first principal component of ``z`` and the true state.

    The sign of a principal component is arbitrary, hence the absolute value.
    """
    z, states = _latent_and_truth(z, states)
    centred = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    rho = spearmanr(centred @ vt[0], states.astype(np.float64)).statistic
    return float(abs(rho))
