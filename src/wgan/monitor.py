"""Evaluation during training: how good the samples are, every ``train.eval_every`` steps.

The generator a run samples from (the EMA one when there is one) draws ``train.eval_n``
samples from the same noise each time, and the :mod:`wgan.scoring` scorers of the
``evaluate`` stage score them against real reference data read once per run, with the
features the ``reference`` stage computed (the protocol of :mod:`wgan.evaluate` at
``n = eval_n``). Each evaluation is a row
of ``metrics/eval_curves.tsv``. The *primary* metric decides the best checkpoint and
the time to target:

* labelled images: ``fid`` in the domain classifier's feature space (lower is better);
* unlabelled images: ``swd``, the sliced Wasserstein distance averaged over levels
  (lower is better);
* masks: ``validity_rate`` (higher is better).

Each row's values also go to DVCLive (``dvclive/train/metrics.json``), so ``dvc exp
show`` shows a running experiment's latest values and DVC Studio can follow it.

Its *floor* is the same score of a real train subset of the same size: what a perfect
generator would reach at this ``n``. KID is left out here: its subsets would cost more
than all the other metrics together (``evaluate`` reports it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from dvclive import Live

from wgan.classifier import load_feature_extractor
from wgan.config import EvaluateConfig, TrainConfig
from wgan.generation import generate
from wgan.health import HealthThresholds, run_health
from wgan.prepared.format import PreparedMeta
from wgan.reference_stats import read_reference
from wgan.scoring import (
    ClassifierScorer,
    MaskScorer,
    Scores,
    SwdScorer,
    real_sets,
    reference_split,
)
from wgan.training_log import CurveFile, TrainingLog
from wgan.training_setup import BestSoFar

__all__ = ["Monitor", "Evaluations", "build_monitor", "start_evaluations"]

_SAMPLE_BATCH = 500


@dataclass(frozen=True)
class Monitor:
    """Scores a generator's samples; knows the primary metric, its direction and floor."""

    scorers: tuple[Callable[[np.ndarray], Scores], ...]
    primary: str
    lower_is_better: bool
    floors: Scores  # every metric of a real train subset of eval_n samples
    n: int
    seed: int
    is_image: bool
    num_classes: int | None = None  # labelled data: mode coverage is out of this many

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.floors)

    def score(self, generator: keras.Model) -> Scores:
        """Every metric of ``n`` samples of ``generator`` (the same noise every time)."""
        samples = generate(generator, self.n, _SAMPLE_BATCH, self.seed, self.is_image)
        return _all_scores(self.scorers, samples)

    def better(self, value: float, than: float) -> bool:
        """Whether primary ``value`` beats ``than`` (NaN: nothing yet)."""
        if math.isnan(than):
            return not math.isnan(value)
        return value < than if self.lower_is_better else value > than

    def within(self, value: float, ratio: float) -> bool:
        """Whether primary ``value`` is within ``ratio`` × its floor (for a higher-is-better
        metric: at least floor / ratio)."""
        floor = self.floors[self.primary]
        return value <= ratio * floor if self.lower_is_better else value >= floor / ratio


def _all_scores(scorers, samples: np.ndarray) -> Scores:
    out: Scores = {}
    for scorer in scorers:
        out.update(scorer(samples))
    return out


def build_monitor(prepared_dir: str | Path, classifier_dir: str | Path | None,
                  reference_dir: str | Path | None, meta: PreparedMeta, n: int,
                  seed: int) -> Monitor:
    """Read the real reference data and its features (the ``reference`` stage's) once;
    score the floor."""
    real = real_sets(prepared_dir, meta, n)
    config = EvaluateConfig(n=len(real.floor))
    if not meta.is_image:
        scorers: tuple = (MaskScorer.build(real.reference),)
        primary, lower = "validity_rate", False
    else:
        swd = _SwdAverage(SwdScorer(real.reference, config.swd_patches, seed))
        extractor = load_feature_extractor(classifier_dir) if classifier_dir else None
        if extractor is None:
            scorers, primary = (swd,), "swd"
        else:
            reference = read_reference(reference_dir, "classifier", extractor.weights_sha256,
                                       reference_split(meta, n)[0], len(real.reference))
            classifier = ClassifierScorer(extractor, reference.features,
                                          real.reference_labels, config, seed, with_kid=False)
            scorers, primary = (classifier, swd), "fid"
        lower = True
    floors = _all_scores(scorers, real.floor)
    return Monitor(scorers, primary, lower, floors, len(real.floor), seed, meta.is_image,
                   meta.num_classes if "mode_coverage" in floors else None)


@dataclass(frozen=True)
class _SwdAverage:
    """SWD averaged over pyramid levels, the one SWD figure a curve shows."""

    scorer: SwdScorer

    def __call__(self, images: np.ndarray) -> Scores:
        return {"swd": self.scorer(images)["avg"]}


class Evaluations:
    """The evaluations of one run: their curve file, TensorBoard scalars and DVCLive
    values, the best so far and the first time the target was reached (both kept in the
    checkpoint). Without a monitor (``train.eval_every: null``) it only writes DVCLive's
    (empty) metrics file, an output of the stage either way."""

    def __init__(self, monitor: Monitor | None, every: int | None, curves: Path,
                 best: BestSoFar, target_ratio: float, resume_at: int,
                 live_dir: Path | None) -> None:
        """``live_dir`` is None on the non-chief workers of a cluster, which write nothing."""
        self.monitor, self.every, self.best, self.target_ratio = monitor, every, best, target_ratio
        columns = ("step", "train_seconds", "eval_seconds", *(monitor.columns if monitor else ()))
        self.curves = CurveFile(curves, columns, resume_at,
                                write=live_dir is not None and monitor is not None)
        self.live = None if live_dir is None else Live(
            str(live_dir), resume=resume_at > 0, save_dvc_exp=False, dvcyaml=False)

    def due(self, step: int, last: bool) -> bool:
        """Whether to evaluate after ``step`` (every ``train.eval_every`` and the last)."""
        return self.monitor is not None and (step % self.every == 0 or last)

    def run(self, step: int, train_seconds: float, sampler: keras.Model,
            log: TrainingLog) -> float:
        """Score ``sampler`` at ``step``; return the seconds it took."""
        t0 = time.perf_counter()
        scores = self.monitor.score(sampler)
        seconds = time.perf_counter() - t0
        self.curves.append([{"step": step, "train_seconds": train_seconds,
                             "eval_seconds": seconds, **scores}])
        log.scalars(step, scores, "eval")
        if self.live is not None:
            self.live.step = step
            for name, value in {"train_seconds": train_seconds, **scores}.items():
                self.live.log_metric(f"eval/{name}", value, plot=False)  # the TSV plots them
            self.live.next_step()
        value = scores[self.monitor.primary]
        if self.monitor.better(value, float(self.best.value.numpy())):
            self.best.record(step, train_seconds, value, sampler)
        if self.monitor.within(value, self.target_ratio):
            self.best.reach_target(step, train_seconds)
        return seconds

    def health(self, thresholds: HealthThresholds, diverged: bool) -> str:
        """The run's verdict (:func:`wgan.health.run_health`) from its curve and last row."""
        p, rows = self.monitor.primary, self.curves.rows
        last = rows[-1] if rows else {}
        return run_health([(int(r["step"]), r[p]) for r in rows],
                          lower_is_better=self.monitor.lower_is_better,
                          floor=self.monitor.floors[p], diverged=diverged,
                          final_coverage=last.get("mode_coverage"),
                          num_classes=self.monitor.num_classes,
                          final_recall=last.get("recall"), thresholds=thresholds)

    def close(self) -> None:
        if self.live is not None:
            self.live.end()

    def summary(self, thresholds: HealthThresholds, diverged: bool = False) -> dict:
        """The ``metrics/train.json`` keys of the evaluations: the primary metric's final,
        best and floor values, when the best and the target came, and the run's health
        (without evaluations, only ``diverged`` can be judged)."""
        if self.monitor is None:
            return {"primary_metric": None, "primary_lower_is_better": None,
                    "best_step": None, "best_train_seconds": None, "target_step": None,
                    "target_train_seconds": None, "eval_seconds": 0.0,
                    "health": "diverged" if diverged else None}
        p, best = self.monitor.primary, self.best
        last = self.curves.rows[-1] if self.curves.rows else {}
        return {"primary_metric": p, "primary_lower_is_better": self.monitor.lower_is_better,
                f"final_{p}": last.get(p), f"best_{p}": _or_none(best.value),
                f"floor_{p}": self.monitor.floors[p], "best_step": _or_none(best.step),
                "best_train_seconds": _or_none(best.seconds),
                "target_step": _or_none(best.target_step),
                "target_train_seconds": _or_none(best.target_seconds),
                "eval_seconds": round(sum(r["eval_seconds"] for r in self.curves.rows), 3),
                "health": self.health(thresholds, diverged)}


def start_evaluations(train: TrainConfig, prepared_dir: str | Path,
                      classifier_dir: str | Path | None, reference_dir: str | Path | None,
                      meta: PreparedMeta, seed: int, best: BestSoFar, curves: Path,
                      live_dir: Path | None, resume_at: int) -> Evaluations:
    """The evaluations ``train`` asks for, their reference data and features read."""
    monitor = (None if train.eval_every is None else
               build_monitor(prepared_dir, classifier_dir, reference_dir, meta, train.eval_n,
                             seed))
    return Evaluations(monitor, train.eval_every, curves, best, train.target_ratio, resume_at,
                       live_dir)


def _or_none(variable) -> float | int | None:
    """A checkpointed record as JSON: None while unset (NaN or step -1)."""
    value = variable.numpy().item()
    unset = math.isnan(value) if isinstance(value, float) else value == -1
    return None if unset else value
