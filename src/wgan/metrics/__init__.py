"""Evaluation metrics on plain numpy arrays (features, labels, images, masks).

Everything except ``inception`` is pure numpy/scipy; import
``wgan.metrics.inception`` explicitly for the Keras feature extractor so
that the metrics themselves load without TensorFlow.
"""

from wgan.metrics.classes import class_histogram_kl, classifier_score, mode_coverage
from wgan.metrics.frechet import (
    RunningStatistics,
    feature_statistics,
    fid_from_features,
    frechet_distance,
)
from wgan.metrics.kid import kernel_inception_distance
from wgan.metrics.masks import (
    histogram_coverage,
    is_valid_mask,
    length_ks,
    length_wasserstein,
    mask_lengths,
    validity_rate,
)
from wgan.metrics.precision_recall import precision_recall
from wgan.metrics.swd import sliced_wasserstein_distance

__all__ = [
    "RunningStatistics",
    "class_histogram_kl",
    "classifier_score",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "histogram_coverage",
    "is_valid_mask",
    "kernel_inception_distance",
    "length_ks",
    "length_wasserstein",
    "mask_lengths",
    "mode_coverage",
    "precision_recall",
    "sliced_wasserstein_distance",
    "validity_rate",
]
