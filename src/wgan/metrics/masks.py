"""Metrics for 1-D prefix masks (the WGAN_GP_MASK criterion).

Naming: ``masks`` are float or uint8 arrays [N, L] binarized at 0.5
(value >= 0.5 means 1); a *valid* mask is a single run of ones starting
at index 0 followed only by zeros, with at least one 1 (e.g. 1110000);
``*_lengths`` are the numbers of ones per mask, shape [N].
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = [
    "histogram_coverage",
    "is_valid_mask",
    "length_bins",
    "length_ks",
    "length_wasserstein",
    "mask_lengths",
    "validity_rate",
]


def _binarize(masks: np.ndarray) -> np.ndarray:
    """Threshold masks [N, L] at 0.5 into a boolean array.

    Raises:
      ValueError: if ``masks`` is not a non-empty 2-D array.
    """
    masks = np.asarray(masks)
    if masks.ndim != 2 or masks.shape[1] == 0:
        raise ValueError(f"masks must have shape [N, L>=1], got {masks.shape}")
    return masks >= 0.5


def is_valid_mask(masks: np.ndarray) -> np.ndarray:
    """Row-wise validity of prefix masks.

    valid_i = m_i0 = 1 and m_ij >= m_i(j+1) for all j (non-increasing), i.e.
    ones first, then only zeros, at least one 1.

    Args:
      masks: float or uint8 array [N, L].

    Returns:
      Boolean array [N].
    """
    binary = _binarize(masks)
    return binary[:, 0] & np.all(binary[:, 1:] <= binary[:, :-1], axis=1)


def mask_lengths(masks: np.ndarray) -> np.ndarray:
    """Number of ones per row after binarizing at 0.5, integer array [N]."""
    return _binarize(masks).sum(axis=1)


def length_bins(length: int) -> np.ndarray:
    """Fixed histogram edges over [0, L] for mask lengths, so runs compare bin by bin."""
    return np.linspace(0, length, 51)


def validity_rate(masks: np.ndarray) -> float:
    """Fraction of valid rows, (1/N) sum_i valid_i, in [0, 1]."""
    return float(is_valid_mask(masks).mean())


def length_wasserstein(real_lengths: np.ndarray, gen_lengths: np.ndarray) -> float:
    """Wasserstein-1 distance W1 = integral |F_real(t) - F_gen(t)| dt between length samples."""
    return float(stats.wasserstein_distance(real_lengths, gen_lengths))


def length_ks(real_lengths: np.ndarray, gen_lengths: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic D = sup_t |F_real(t) - F_gen(t)|."""
    return float(stats.ks_2samp(real_lengths, gen_lengths).statistic)


def histogram_coverage(
    real_lengths: np.ndarray, gen_lengths: np.ndarray, bins: int | np.ndarray = 10
) -> float:
    """Fraction of real-occupied histogram bins that generated lengths also occupy.

    coverage = #{b : real_b > 0 and gen_b > 0} / #{b : real_b > 0}, with bin
    edges from ``np.histogram_bin_edges(real_lengths, bins)``; generated
    lengths outside the real range fall in no bin.

    Args:
      real_lengths: lengths of real masks [N_r], non-empty.
      gen_lengths: lengths of generated masks [N_g].
      bins: number of equal-width bins over the real range, or explicit edges.

    Returns:
      Coverage in [0, 1].
    """
    edges = np.histogram_bin_edges(real_lengths, bins=bins)
    real_counts, _ = np.histogram(real_lengths, bins=edges)
    gen_counts, _ = np.histogram(gen_lengths, bins=edges)
    occupied = real_counts > 0
    return float(np.mean(gen_counts[occupied] > 0))
