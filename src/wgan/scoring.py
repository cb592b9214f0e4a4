"""Scorers: one metric family each, built once against real reference data, then applied
to any number of sample sets.

The ``evaluate`` stage scores the final samples (and a real train subset, the floor)
with them, and training scores its periodic samples with the very same objects
(:mod:`wgan.monitor`), so a curve's last point and ``metrics/eval.json`` agree when
they see the same samples. Reference features come from the ``reference`` stage
(:mod:`wgan.reference`).
Every scorer maps uint8 samples in the prepared layout to ``{metric: float}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wgan.classifier import DomainClassifier
from wgan.config import EvaluateConfig
from wgan.metrics.classes import class_histogram_kl, classifier_score, mode_coverage
from wgan.metrics.frechet import fid_from_features
from wgan.metrics.kid import kernel_inception_distance
from wgan.metrics.masks import (
    histogram_coverage,
    length_ks,
    length_wasserstein,
    mask_lengths,
    validity_rate,
)
from wgan.metrics.precision_recall import precision_recall
from wgan.metrics.swd import sliced_wasserstein_distance, sliced_wasserstein_karras
from wgan.prepared.format import PreparedMeta, to_float
from wgan.prepared.read import read_numpy

__all__ = ["Scores", "RealSets", "real_sets", "read_split", "reference_split",
           "ClassifierScorer", "SwdScorer", "MaskScorer", "classifier_outputs", "fid_kid"]

Scores = dict[str, float]
_BATCH = 1000


@dataclass(frozen=True)
class RealSets:
    """The real uint8 samples of one evaluation: reference and floor (train) subsets."""

    reference: np.ndarray
    reference_labels: np.ndarray | None
    reference_split: str
    floor: np.ndarray
    floor_rows: str  # which train rows the floor is, e.g. ``train[:100]``: its cache key


def read_split(prepared_dir: str | Path, split: str,
               limit: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``limit`` uint8 samples of ``split`` and their labels (None: unlabelled)."""
    batches = list(read_numpy(prepared_dir, split, limit))
    x = np.concatenate([b[0] for b in batches])
    return x, (None if batches[0][1] is None else np.concatenate([b[1] for b in batches]))


def reference_split(meta: PreparedMeta, n: int) -> tuple[str, int]:
    """The reference split and its size for ``n`` samples: the test split's first ``n``,
    else the first ``min(n, train // 2)`` of train (the rest of train gives the floor).
    A larger ``n`` only appends images, so references of smaller ``n`` are its prefixes."""
    if "test" in meta.counts:
        return "test", min(n, meta.counts["test"])
    return "train", min(n, meta.counts["train"] // 2)


def real_sets(prepared_dir: str | Path, meta: PreparedMeta, n: int) -> RealSets:
    """Reference (:func:`reference_split`) and up to ``n`` floor samples of train."""
    split, n_reference = reference_split(meta, n)
    if split == "test":
        reference, labels = read_split(prepared_dir, "test", n)
        floor = read_split(prepared_dir, "train", n)[0]
        return RealSets(reference, labels, "test", floor, f"train[:{len(floor)}]")
    x, y = read_split(prepared_dir, "train", n_reference + n)
    return RealSets(x[:n_reference], None if y is None else y[:n_reference],
                    f"train[:{n_reference}]", x[n_reference:], f"train[{n_reference}:{len(x)}]")


def fid_kid(features: np.ndarray, reference: np.ndarray, config: EvaluateConfig,
            seed: int) -> Scores:
    """FID and KID of a feature set against the reference features."""
    kid_mean, kid_std = kernel_inception_distance(
        features, reference, config.kid_subsets, config.kid_subset_size, seed)
    return {"fid": fid_from_features(features, reference), "kid_mean": kid_mean,
            "kid_std": kid_std}


def classifier_outputs(extractor: DomainClassifier,
                       images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features and class probabilities of uint8 images, ``_BATCH`` at a time (the
    ``reference`` stage featurises real data with this very function)."""
    if extractor.shape != images.shape[1:]:
        raise ValueError(f"the domain classifier was trained on {list(extractor.shape)} "
                         f"samples, not {list(images.shape[1:])}; re-run its stage")
    parts = [extractor(to_float(images[i:i + _BATCH], True))
             for i in range(0, len(images), _BATCH)]
    return np.concatenate([f for f, _ in parts]), np.concatenate([p for _, p in parts])


@dataclass(frozen=True)
class ClassifierScorer:
    """FID, KID, precision/recall, classifier score, mode coverage and class-histogram KL
    in the domain classifier's feature space, against the reference stage's features."""

    extractor: DomainClassifier
    reference_features: np.ndarray
    reference_labels: np.ndarray
    config: EvaluateConfig
    seed: int
    with_kid: bool = True  # KID's subsets cost more than everything else together

    def outputs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return classifier_outputs(self.extractor, images)

    def scores(self, outputs: tuple[np.ndarray, np.ndarray]) -> Scores:
        """The metrics of :meth:`outputs` of a sample set."""
        features, probs = outputs
        labels, k = probs.argmax(axis=1), self.extractor.num_classes
        precision, recall = precision_recall(self.reference_features, features,
                                             k=self.config.pr_k)
        fids = (fid_kid(features, self.reference_features, self.config, self.seed)
                if self.with_kid else {"fid": fid_from_features(features,
                                                                self.reference_features)})
        return {**fids, "precision": precision, "recall": recall,
                "classifier_score": classifier_score(probs),
                "mode_coverage": mode_coverage(labels, k),
                "class_kl": class_histogram_kl(labels, self.reference_labels, k)}

    def __call__(self, images: np.ndarray) -> Scores:
        return self.scores(self.outputs(images))


@dataclass(frozen=True)
class SwdScorer:
    """Sliced Wasserstein distance per Laplacian-pyramid level, on equal-size sets: this
    pipeline's (``patches`` per image) or, with ``karras``, the PGGAN protocol's."""

    reference: np.ndarray
    patches: int
    seed: int
    karras: bool = False

    def __call__(self, images: np.ndarray) -> Scores:
        m = min(len(images), len(self.reference))
        if self.karras:
            return sliced_wasserstein_karras(images[:m], self.reference[:m], seed=self.seed)
        return sliced_wasserstein_distance(images[:m], self.reference[:m],
                                           patches_per_image=self.patches, seed=self.seed)


@dataclass(frozen=True)
class MaskScorer:
    """Validity rate and the distances between real and generated mask lengths."""

    reference_lengths: np.ndarray

    @classmethod
    def build(cls, reference: np.ndarray) -> MaskScorer:
        return cls(mask_lengths(reference))

    def __call__(self, masks: np.ndarray) -> Scores:
        lengths = mask_lengths(masks)
        ref = self.reference_lengths
        return {"validity_rate": validity_rate(masks),
                "length_w1": length_wasserstein(ref, lengths),
                "length_ks": length_ks(ref, lengths),
                "histogram_coverage": histogram_coverage(ref, lengths)}
