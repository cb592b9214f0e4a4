"""Fréchet distance between Gaussians fitted to feature sets (FID).

Naming: ``mu*`` are mean vectors of shape [D], ``sigma*`` covariance
matrices of shape [D, D], ``features``/``f*`` arrays of shape [N, D]. All
arithmetic is float64.

See "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", Heusel et al. 2017 (https://arxiv.org/abs/1706.08500).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
]


def _as_features(features: np.ndarray) -> np.ndarray:
    """Return ``features`` as a float64 [N, D] array with N >= 2.

    Raises:
      ValueError: if the array is not 2-D or has fewer than 2 rows (the
        unbiased covariance needs two samples).
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must have shape [N>=2, D], got {features.shape}")
    return features


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via ``eigh``.

    S^{1/2} = V diag(sqrt(max(lambda, 0))) V^T. Eigenvalues that round-off
    pushed below zero are clipped, which keeps the result real for
    rank-deficient covariances (N < D).
    """
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})

    The trace of the matrix square root uses the symmetric form
    Tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(S1^{1/2} S2 S1^{1/2})), which holds
    because S1^{1/2} S2 S1^{1/2} is similar to S1 S2 and is symmetric PSD, so
    ``eigvalsh`` gives real eigenvalues and nothing goes complex (unlike
    ``scipy.linalg.sqrtm(S1 @ S2)``). Eigenvalues below the eigensolver's
    round-off level, D * eps * lambda_max, are treated as 0: for
    rank-deficient covariances (N < D) most eigenvalues are exactly 0 and
    sqrt would inflate their +-eps noise into O(sqrt(eps)) errors each.

    See "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
    Equilibrium", Heusel et al. 2017 (https://arxiv.org/abs/1706.08500).

    Args:
      mu1: mean of the first Gaussian, shape [D].
      sigma1: covariance of the first Gaussian, shape [D, D], symmetric PSD.
      mu2: mean of the second Gaussian, shape [D].
      sigma2: covariance of the second Gaussian, shape [D, D], symmetric PSD.

    Returns:
      The squared Fréchet distance d^2 >= 0 (tiny negative round-off is
      clipped to 0).

    Raises:
      ValueError: on inconsistent shapes.
    """
    mu1, mu2 = (np.asarray(m, dtype=np.float64) for m in (mu1, mu2))
    sigma1, sigma2 = (np.asarray(s, dtype=np.float64) for s in (sigma1, sigma2))
    dim = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(
            "expected mu [D] and sigma [D, D], got "
            f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    diff = mu1 - mu2
    sqrt_sigma1 = _psd_sqrt(sigma1)
    product = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    round_off = dim * np.finfo(np.float64).eps * max(eigenvalues[-1], 0.0)
    trace_sqrt = np.sqrt(eigenvalues[eigenvalues > round_off]).sum()
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
    # Only round-off can make the exact value negative.
    return max(float(distance), 0.0)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a feature set.

    mu = (1/N) sum_i x_i,  sigma = 1/(N-1) sum_i (x_i - mu)(x_i - mu)^T

    Args:
      features: array of shape [N, D], N >= 2.

    Returns:
      (mu [D], sigma [D, D]) in float64.

    Raises:
      ValueError: if ``features`` is not [N>=2, D].
    """
    features = _as_features(features)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet Inception Distance between two feature sets.

    FID = frechet_distance(mean(f1), cov(f1), mean(f2), cov(f2))
    (Heusel et al. 2017, https://arxiv.org/abs/1706.08500).

    Args:
      f1: features of shape [N1, D], N1 >= 2.
      f2: features of shape [N2, D], N2 >= 2.

    Returns:
      The FID (a squared distance), >= 0.
    """
    return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))

