"""Score generated samples against real data, each score beside its real-vs-real floor.

Protocol. The first ``evaluate.n`` generated samples are compared with a *reference*
set: the real test split (its first ``n``), or, for a dataset without one, a held-out
half of the train split. The *floor* of a metric is the same computation with a real
train subset of the same size in place of the generated samples: what a perfect
generator would score at this ``n`` (FID, for one, is biased upwards at small ``n``).
For higher-is-better metrics (precision, recall, scores, coverage) it is the ceiling.
When the train split is smaller than ``n`` (bundled MNIST: 4,500), ``n`` shrinks to it,
so score and floor always use equal sizes.

Every metric is written as ``{"value": ..., "floor": ...}`` so ``dvc metrics diff``
shows both; ``protocol`` records dataset, n, reference split, seed and each feature
network's name and file sha256 (Inception's also its resize, preprocessing, preset and
reference), or null. Reference features come from the ``reference`` stage
(:mod:`wgan.reference_stats`). Metric families:

* ``classifier`` (labelled images): FID, KID, precision/recall, classifier score, mode
  coverage and class-histogram KL in the domain classifier's feature space
  (:mod:`wgan.classifier`); nulls plus a reason when no classifier was trained.
* ``inception`` (images): FID, KID, IS (one split) and the published 10-split IS with
  the standard 2015 Inception graph or Keras' InceptionV3
  (:func:`wgan.metrics.inception.load_inception`), against the reference stage's
  statistics, a published file (``evaluate.reference_stats``) or a preset
  (``evaluate.protocol``: its own n, no floor); nulls plus a reason when no network is
  available. Never fatal.
* ``swd`` (images): sliced Wasserstein distance per Laplacian-pyramid level, and with
  ``evaluate.swd_karras`` also ``swd_karras``, the PGGAN protocol's.
* ``masks``: validity rate and length-distribution distances.

Everything is held as uint8 arrays of n samples plus their features; feature
extraction runs in batches. Only the first n samples of ``samples.npz`` are read, after
its header is checked. The plot CSVs (and the stage's JSON) are written atomically.
"""

from __future__ import annotations

import csv
import math
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from wgan.classifier import DomainClassifier, load_feature_extractor
from wgan.config import PROTOCOLS, EvaluateConfig
from wgan.files import atomic_path, npy_header, sha256_file
from wgan.metrics.classes import classifier_score, inception_score
from wgan.metrics.frechet import feature_statistics, frechet_distance
from wgan.metrics.inception import load_inception
from wgan.metrics.kid import kernel_inception_distance
from wgan.metrics.masks import length_bins, mask_lengths
from wgan.prepared.format import PreparedMeta, read_meta
from wgan.reference_stats import ReferenceStats, read_floor, read_reference, read_stats
from wgan.scoring import (
    ClassifierScorer,
    MaskScorer,
    RealSets,
    Scores,
    SwdScorer,
    real_sets,
    reference_split,
)

__all__ = ["CLASSIFIER_KEYS", "INCEPTION_KEYS", "MASK_KEYS", "evaluate", "load_samples"]

CLASSIFIER_KEYS = ("fid", "kid_mean", "kid_std", "precision", "recall", "classifier_score",
                   "mode_coverage", "class_kl")
INCEPTION_KEYS = ("fid", "kid_mean", "kid_std", "is", "is10_mean", "is10_std")
MASK_KEYS = ("validity_rate", "length_w1", "length_ks", "histogram_coverage")


def load_samples(samples_dir: str | Path, n: int, meta: PreparedMeta) -> np.ndarray:
    """The first ``n`` generated uint8 samples of ``samples.npz``, checked against ``meta``.

    Only those are read: the array's header is checked first, so neither a large file nor
    a crafted header makes this read more than ``n`` samples.

    Raises:
      FileNotFoundError: if there is no ``samples.npz``.
      ValueError: naming the file, if it is not a complete ``samples.npz`` of uint8
        samples of the prepared shape (then: re-run the sample stage).
    """
    path = Path(samples_dir) / "samples.npz"
    fix = "re-run `dvc repro sample`"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `dvc repro sample`")
    sample_bytes = math.prod(meta.shape)
    try:
        with zipfile.ZipFile(path) as archive, archive.open("x.npy") as f:
            shape, fortran_order, dtype = npy_header(f)
            count = min(n, shape[0]) if shape else 0
            wrong = dtype != np.uint8 or fortran_order or shape[1:] != meta.shape or count < 1
            data = b"" if wrong else f.read(count * sample_bytes)
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, zlib.error) as err:
        raise ValueError(f"{path} is not a complete samples file ({type(err).__name__}: "
                         f"{err}); {fix}") from err
    if wrong:
        raise ValueError(f"{path} holds {dtype} samples {list(shape)}, but the prepared "
                         f"{meta.dataset} data is uint8 [N, {', '.join(map(str, meta.shape))}] "
                         f"with N > 0; {fix}")
    if len(data) < count * sample_bytes:
        raise ValueError(f"{path} ends inside sample {len(data) // sample_bytes}; {fix}")
    return np.frombuffer(bytearray(data), np.uint8).reshape(count, *meta.shape)  # writable


def _paired(score: Callable[[Any], Scores], generated: Any, floor: Any) -> dict[str, Any]:
    """``{metric: {"value": score(generated), "floor": score(floor)}}``: one code path."""
    value, floor_value = score(generated), score(floor)
    return {k: {"value": value[k], "floor": floor_value[k]} for k in value}


def _nulls(keys: tuple[str, ...], reason: str) -> dict[str, Any]:
    return {**{k: {"value": None, "floor": None} for k in keys}, "reason": reason}


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _classifier_metrics(extractor: DomainClassifier, generated: np.ndarray, real: RealSets,
                        reference: ReferenceStats, config: EvaluateConfig, seed: int,
                        plots_dir: Path) -> dict[str, Any]:
    """Domain-classifier metrics; also writes ``class_histogram.csv`` (class fractions)."""
    scorer = ClassifierScorer(extractor, reference.features, real.reference_labels, config,
                              seed)
    generated_outputs = scorer.outputs(generated)
    metrics = _paired(scorer.scores, generated_outputs, scorer.outputs(real.floor))
    k = extractor.num_classes
    fractions = [np.bincount(y, minlength=k) / len(y)
                 for y in (real.reference_labels, generated_outputs[1].argmax(axis=1))]
    _write_csv(plots_dir / "class_histogram.csv", ["class", "real", "generated"],
               [[c, *(float(f[c]) for f in fractions)] for c in range(k)])
    return metrics


def _inception_reference(network: Any, config: EvaluateConfig, meta: PreparedMeta,
                         reference_dir: str | Path, n: int) -> tuple[ReferenceStats, dict]:
    """The statistics Inception FID is computed against, and their protocol entry: a
    published file, the preset split's or the reference split's first ``n`` images."""
    if config.reference_stats is not None:
        stats = read_stats(config.reference_stats, "give a TTUR-layout statistics file (mu, "
                                                   "sigma) as evaluate.reference_stats")
        return stats, {"published": config.reference_stats,
                       "sha256": sha256_file(config.reference_stats)}
    preset = PROTOCOLS.get(config.protocol)
    split, n = ((preset.split, min(preset.n, meta.counts.get(preset.split, 0))) if preset
                else (reference_split(meta, n)[0], n))
    return read_reference(reference_dir, "inception", network.sha256, split, n), {
        "split": split, "n": n}


def _inception_metrics(samples: np.ndarray, real: RealSets, meta: PreparedMeta,
                       config: EvaluateConfig, seed: int, reference_dir: str | Path
                       ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Inception FID/KID/IS (one split and 10) and the network's protocol entry, or nulls
    with a reason and None. A preset protocol scores its own n, without a floor; KID needs
    reference features, which published statistics and presets do not keep. The floor
    images' outputs come from the reference stage's cache when it holds these rows."""
    network, reason = load_inception(config.inception)
    if network is None:
        return _nulls(INCEPTION_KEYS, reason), None
    preset = PROTOCOLS.get(config.protocol)
    n = preset.n if preset else len(real.floor)
    try:
        if len(samples) < n:
            raise ValueError(f"evaluate.protocol {config.protocol} scores {n} samples, but "
                             f"samples.npz holds {len(samples)}; raise sample.n")
        stats, reference = _inception_reference(network, config, meta, reference_dir,
                                                len(real.reference))

        def score(features: np.ndarray, probs: np.ndarray) -> Scores:
            kid = ((None, None) if stats.features is None else kernel_inception_distance(
                features, stats.features, config.kid_subsets, config.kid_subset_size, seed))
            is10 = inception_score(probs) if len(probs) >= 10 else (None, None)
            return {"fid": frechet_distance(*feature_statistics(features), stats.mu,
                                            stats.sigma),
                    "kid_mean": kid[0], "kid_std": kid[1], "is": classifier_score(probs),
                    "is10_mean": is10[0], "is10_std": is10[1]}

        value = score(*network.features_and_probs(samples[:n]))
        cached = None if preset else read_floor(reference_dir, network.sha256,
                                                real.floor_rows, len(real.floor))
        floor = (dict.fromkeys(value) if preset
                 else score(*(cached or network.features_and_probs(real.floor))))
    except Exception as err:  # Inception is optional: any failure is recorded, never fatal.
        return _nulls(INCEPTION_KEYS, f"inception failed: {err}"), None
    return ({k: {"value": value[k], "floor": floor[k]} for k in value},
            {**network.describe(), "protocol": config.protocol or "custom", "n_samples": n,
             "reference": reference,
             "floor": None if preset else ("reference stage" if cached else "computed")})


def _swd_metrics(generated: np.ndarray, real: RealSets, config: EvaluateConfig, seed: int,
                 plots_dir: Path) -> dict[str, Any]:
    """SWD per pyramid level on equal-size sets; also writes ``swd_levels.csv``."""
    metrics = _paired(SwdScorer(real.reference, config.swd_patches, seed), generated, real.floor)
    _write_csv(plots_dir / "swd_levels.csv", ["level", "generated", "floor"],
               [[level, s["value"], s["floor"]] for level, s in metrics.items()])
    return metrics


def _mask_metrics(generated: np.ndarray, real: RealSets, plots_dir: Path) -> dict[str, Any]:
    """Validity and length-distribution metrics; also writes ``lengths.csv`` (fractions)."""
    scorer = MaskScorer.build(real.reference)
    bins = length_bins(real.reference.shape[1])
    counts = [np.histogram(lengths, bins)[0] / len(lengths)
              for lengths in (scorer.reference_lengths, mask_lengths(generated))]
    _write_csv(plots_dir / "lengths.csv", ["length", "real", "generated"],
               [[int(lo), float(r), float(g)] for lo, r, g in zip(bins[:-1], *counts, strict=True)])
    return _paired(scorer, generated, real.floor)


def evaluate(prepared_dir: str | Path, samples_dir: str | Path, classifier_dir: str | Path,
             reference_dir: str | Path, plots_dir: str | Path, config: EvaluateConfig,
             seed: int) -> dict[str, Any]:
    """All metrics that apply to the dataset, with floors and the protocol; writes plot CSVs."""
    meta = read_meta(prepared_dir)
    preset = PROTOCOLS.get(config.protocol)
    samples = load_samples(samples_dir, max(config.n, preset.n if preset else 0), meta)
    generated = samples[:config.n]
    real = real_sets(prepared_dir, meta, len(generated))
    generated = generated[:len(real.floor)]  # score and floor at equal n
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    protocol = {"dataset": meta.dataset, "n_samples": len(generated),
                "n_reference": len(real.reference), "reference_split": real.reference_split,
                "seed": seed, "feature_extractor": None, "inception": None}
    if not meta.is_image:
        return {"protocol": protocol, "masks": _mask_metrics(generated, real, plots_dir)}
    extractor = load_feature_extractor(classifier_dir)
    if extractor is None:
        classifier = _nulls(CLASSIFIER_KEYS, f"no domain classifier for {meta.dataset!r} "
                                             "(unlabelled)")
    else:
        reference = read_reference(reference_dir, "classifier", extractor.weights_sha256,
                                   reference_split(meta, len(real.reference))[0],
                                   len(real.reference))
        classifier = _classifier_metrics(extractor, generated, real, reference, config, seed,
                                         plots_dir)
        protocol["feature_extractor"] = {"name": extractor.name,
                                         "sha256": extractor.weights_sha256}
    inception, protocol["inception"] = _inception_metrics(samples, real, meta, config, seed,
                                                          reference_dir)
    metrics = {"protocol": protocol, "classifier": classifier, "inception": inception,
               "swd": _swd_metrics(generated, real, config, seed, plots_dir)}
    if config.swd_karras:
        metrics["swd_karras"] = _paired(SwdScorer(real.reference, 0, seed, karras=True),
                                        generated, real.floor)
    return metrics
