"""Class-level metrics from a domain classifier's outputs.

Naming: ``probs`` are softmax outputs [N, K] (rows sum to 1); ``*_labels``
are integer class labels [N] in [0, num_classes); a *histogram* is the
normalized class frequency vector [num_classes].
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

__all__ = ["class_histogram_kl", "classifier_score", "inception_score", "mode_coverage"]


def _class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class sample counts [num_classes] of integer labels [N].

    Raises:
      ValueError: if labels are not 1-D integers in [0, num_classes).
    """
    labels = np.asarray(labels)
    if (
        labels.ndim != 1
        or labels.size == 0
        or not np.issubdtype(labels.dtype, np.integer)
        or labels.min() < 0
        or labels.max() >= num_classes
    ):
        raise ValueError(f"labels must be non-empty 1-D integers in [0, {num_classes})")
    return np.bincount(labels, minlength=num_classes)


def _kl_divergence(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """KL(p || q) = sum p log(p / q) along ``axis``, with 0 log 0 = 0."""
    return np.sum(xlogy(p, p) - xlogy(p, q), axis=axis)


def classifier_score(probs: np.ndarray) -> float:
    """Inception-Score formula applied to a domain classifier.

    IS = exp(E_x KL(p(y|x) || p(y))),  p(y) = E_x p(y|x)

    Ranges from 1 (all predictions identical) to K (confident and uniformly
    spread over K classes). Computed on the whole set (no splits).

    See "Improved Techniques for Training GANs", Salimans et al. 2016
    (https://arxiv.org/abs/1606.03498).

    Args:
      probs: class probabilities [N, K], non-negative, rows summing to 1.

    Returns:
      The score, in [1, K].

    Raises:
      ValueError: if ``probs`` is not [N, K] or rows are not distributions.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must have shape [N>=1, K], got {probs.shape}")
    if probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("rows of probs must be probability distributions")
    marginal = probs.mean(axis=0)
    return float(np.exp(_kl_divergence(probs, marginal[None, :]).mean()))


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """The Inception Score as published: mean and std of :func:`classifier_score` over splits.

    The N rows are cut in order into ``splits`` consecutive parts, rows
    [i N // splits, (i + 1) N // splits), each scored on its own; the std is ddof 0.
    This is improved-gan's ``get_inception_score`` (Salimans et al. 2016,
    https://arxiv.org/abs/1606.03498), which published tables report as mean ± std.

    Args:
      probs: class probabilities [N >= splits, K].
      splits: number of parts, >= 1.

    Returns:
      (mean, std) over the parts.

    Raises:
      ValueError: if ``splits`` < 1 or exceeds N, or ``probs`` is not [N, K] of
        distributions.
    """
    n = np.asarray(probs).shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be in [1, N={n}], got {splits}")
    scores = [classifier_score(probs[i * n // splits:(i + 1) * n // splits])
              for i in range(splits)]
    return float(np.mean(scores)), float(np.std(scores))


def mode_coverage(pred_labels: np.ndarray, num_classes: int) -> int:
    """Number of classes receiving at least half their expected share of samples.

    coverage = #{c : count_c >= 0.5 * N / num_classes}

    Args:
      pred_labels: predicted classes of generated samples, integers [N].
      num_classes: number of classes K.

    Returns:
      An integer in [0, K].
    """
    counts = _class_counts(pred_labels, num_classes)
    return int(np.sum(counts >= 0.5 * counts.sum() / num_classes))


def class_histogram_kl(
    gen_labels: np.ndarray, real_labels: np.ndarray, num_classes: int, eps: float = 1e-6
) -> float:
    """KL divergence between generated and real class histograms.

    KL(p_gen || p_real), p = (h + eps) / sum(h + eps) with h the normalized
    class histogram; eps keeps the divergence finite when a class is
    missing from the real labels.

    Args:
      gen_labels: predicted classes of generated samples, integers [N_g].
      real_labels: classes of real samples, integers [N_r].
      num_classes: number of classes K.
      eps: additive smoothing, > 0.

    Returns:
      The divergence in nats, >= 0.
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    smoothed = []
    for labels in (gen_labels, real_labels):
        counts = _class_counts(labels, num_classes)
        histogram = counts / counts.sum() + eps
        smoothed.append(histogram / histogram.sum())
    return float(_kl_divergence(*smoothed))
