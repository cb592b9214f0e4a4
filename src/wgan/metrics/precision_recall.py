"""Improved precision and recall via k-NN manifold estimates.

Naming: ``real``/``fake`` are feature arrays of shape [N, D]; ``queries``
are the points tested for membership in the manifold of ``references``.
Distances are computed in float64, ``batch_size`` query rows at a time, so
peak memory is O(batch_size * N) rather than O(N^2).

See "Improved Precision and Recall Metric for Assessing Generative Models",
Kynkäänniemi et al. 2019 (https://arxiv.org/abs/1904.06991).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["precision_recall"]


def _squared_distance_batches(
    queries: np.ndarray, references: np.ndarray, batch_size: int
) -> Iterator[np.ndarray]:
    """Yield squared Euclidean distances, ``batch_size`` query rows at a time.

    d^2(a, b) = ||a||^2 - 2 a.b + ||b||^2, clipped at 0 because round-off can
    make the expansion slightly negative. Each batch has shape
    [<=batch_size, N_references].
    """
    reference_norms = np.einsum("ij,ij->i", references, references)
    for start in range(0, queries.shape[0], batch_size):
        batch = queries[start : start + batch_size]
        distances = np.einsum("ij,ij->i", batch, batch)[:, None] - 2.0 * batch @ references.T
        distances += reference_norms[None, :]
        yield np.maximum(distances, 0.0, out=distances)


def _knn_radii_squared(points: np.ndarray, k: int, batch_size: int) -> np.ndarray:
    """Squared distance from each point to its k-th nearest *other* point, [N].

    Column 0 of the partitioned row is the point itself (distance 0), so the
    k-th neighbour sits at partition index k.
    """
    return np.concatenate(
        [
            np.partition(distances, k, axis=1)[:, k]
            for distances in _squared_distance_batches(points, points, batch_size)
        ]
    )


def _manifold_fraction(
    queries: np.ndarray, references: np.ndarray, k: int, batch_size: int
) -> float:
    """Fraction of queries inside at least one k-NN ball of the references.

    f(Q, R) = (1/|Q|) sum_{q in Q} 1[exists r in R: ||q - r|| <= NN_k(r)]
    """
    radii_squared = _knn_radii_squared(references, k, batch_size)
    inside = [
        np.any(distances <= radii_squared[None, :], axis=1)
        for distances in _squared_distance_batches(queries, references, batch_size)
    ]
    return float(np.concatenate(inside).mean())


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = 3, batch_size: int = 1000
) -> tuple[float, float]:
    """k-NN precision and recall of ``fake`` with respect to ``real``.

    precision = f(fake, real), recall = f(real, fake), where f(Q, R) is the
    fraction of points of Q inside the union of balls centred at each r in R
    with radius ||r - NN_k(r)|| (distance to its k-th nearest other point
    of R).

    See "Improved Precision and Recall Metric for Assessing Generative
    Models", Kynkäänniemi et al. 2019 (https://arxiv.org/abs/1904.06991).

    Args:
      real: real features, shape [N_r, D], N_r > k.
      fake: generated features, shape [N_f, D], N_f > k.
      k: neighbourhood size (the paper uses 3), >= 1.
      batch_size: query rows per distance batch; bounds memory to about
        3 * batch_size * max(N_r, N_f) float64 values.

    Returns:
      (precision, recall), each in [0, 1].

    Raises:
      ValueError: on mismatched shapes, k < 1, sets with <= k points, or
        batch_size < 1.
    """
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected [N_r, D] and [N_f, D], got {real.shape}, {fake.shape}")
    if k < 1 or min(real.shape[0], fake.shape[0]) <= k or batch_size < 1:
        raise ValueError(
            f"need k >= 1, more than k points per set and batch_size >= 1; got k={k}, "
            f"sizes {real.shape[0]}, {fake.shape[0]}, batch_size={batch_size}"
        )
    precision = _manifold_fraction(fake, real, k, batch_size)
    recall = _manifold_fraction(real, fake, k, batch_size)
    return precision, recall
