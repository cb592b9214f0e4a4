"""Run health: one word for how a training run went, from its primary-metric curve.

The verdicts, in the order they take precedence:

- ``diverged``: training stopped on a NaN/Inf (or the primary metric itself went NaN/Inf).
- ``collapsed``: at the end, mode coverage is at or below half the classes, or recall is
  below ``collapse_recall``: the samples miss much of the data, whatever the curve says.
- ``degraded``: the final value is worse than the run's best by more than
  ``degrade_factor``: the run was good once and lost it.
- ``stalled``: the metric never came within ``stall_ratio`` × its floor, and it stopped
  improving over the last ``stall_window`` of the run: it got stuck far from the floor.
- ``ok``: none of the rules above fired on the evidence given.

"Worse" follows the metric's direction (``lower_is_better``): FID is lower-is-better
and its floor is the real-vs-real score; the mask validity rate is higher-is-better and
its floor is a ceiling (the real masks' rate). The rules are pure functions of the
curve and a few final numbers, so they are unit-tested on synthetic curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HealthThresholds", "VERDICTS", "run_health"]

VERDICTS = ("ok", "diverged", "collapsed", "degraded", "stalled")


@dataclass(frozen=True)
class HealthThresholds:
    """Where each rule draws its line. The defaults were set against the default run of
    the time (``make repro``: wgan-gp on MNIST, 2,500 iterations), which ends at FID 8.59
    against a floor of 1.02 (8.4× the floor), still improving, with recall 0.66 and 10/10
    classes, and must be ``ok``: a weaker run than any default since (today's, conditional
    at 5,000 iterations, ends at 1.5× the floor, ``ok``).

    Attributes:
        collapse_recall: final recall below this is ``collapsed``. Recall is the share of
            real samples inside the generated manifold; the default run has 0.66 (floor
            0.87), so 0.1 (under a tenth of the real data reached) is far outside noise.
        stall_ratio: a run that came within ``stall_ratio`` × its floor (``value/floor``
            for lower-is-better, ``floor/value`` for higher-is-better) cannot be
            ``stalled``. 10 leaves ~20% headroom above the default run's 8.4, so a run of
            the default's quality that plateaus counts as converged; weight-clipped wgan at
            500 iterations (FID 75, 63× its floor, one class covered) does not.
        stall_window: the last fraction of the run (by step) in which the metric must
            still improve. 0.25 of the default run is ~600 iterations, several evaluations.
        stall_min_gain: the relative improvement of the window's best over the best
            before it that counts as still improving. 0.05 is below the 6.4% the default
            run gains over its last 300 iterations (FID 9.18 at 2,200, 8.59 at 2,500) and
            well above the 0.5% that float rounding alone moves it (8.55 against 8.59).
        degrade_factor: a final value worse than the best by more than this factor is
            ``degraded``. 1.5 is far above evaluation noise (a few %), and below the
            2.6× between the default run at 500 and at 2,500 iterations (22.3 → 8.59).
    """

    collapse_recall: float = 0.1
    stall_ratio: float = 10.0
    stall_window: float = 0.25
    stall_min_gain: float = 0.05
    degrade_factor: float = 1.5


def _worse_by(value: float, reference: float, lower_is_better: bool) -> float:
    """How many times worse ``value`` is than ``reference`` (1 = as good; < 1 = better).

    One ratio for both directions, so every rule is written once; a zero denominator
    means infinitely worse (or, for two zeros, equal).
    """
    num, den = (value, reference) if lower_is_better else (reference, value)
    if den == 0:
        return 1.0 if num == 0 else math.inf
    return num / den


def _best(values: Sequence[float], lower_is_better: bool) -> float:
    return min(values) if lower_is_better else max(values)


def _relative_gain(before: float, after: float, lower_is_better: bool) -> float:
    """Improvement from ``before`` to ``after`` as a fraction of ``|before|``; from 0,
    any improvement is infinite (a validity rate leaving 0 is real progress)."""
    delta = before - after if lower_is_better else after - before
    if before == 0:
        return math.inf if delta > 0 else 0.0
    return delta / abs(before)


def _is_collapsed(final_coverage: float | None, num_classes: int | None,
                  final_recall: float | None, t: HealthThresholds) -> bool:
    """Coverage at or below half the classes, or recall below the threshold; each rule
    applies only when its numbers are given (unlabelled data has neither)."""
    few_modes = (final_coverage is not None and num_classes is not None
                 and final_coverage <= num_classes / 2)
    low_recall = final_recall is not None and final_recall < t.collapse_recall
    return few_modes or low_recall


def _is_degraded(values: Sequence[float], lower_is_better: bool, t: HealthThresholds) -> bool:
    return _worse_by(values[-1], _best(values, lower_is_better), lower_is_better) > t.degrade_factor


def _is_stalled(curve: Sequence[tuple[int, float]], lower_is_better: bool,
                floor: float | None, t: HealthThresholds) -> bool:
    """Far from the floor all run long, and no real gain in the last window.

    Without a positive floor a plateau at the floor cannot be told from one far from it,
    so the rule does not apply; nor does it with no point before or inside the window.
    """
    if floor is None or floor <= 0 or len(curve) < 2:
        return False
    values = [v for _, v in curve]
    if min(_worse_by(v, floor, lower_is_better) for v in values) <= t.stall_ratio:
        return False
    first, last = curve[0][0], curve[-1][0]
    start = last - t.stall_window * (last - first)
    before = [v for s, v in curve if s < start]
    inside = [v for s, v in curve if s >= start]
    if not before or not inside:
        return False
    gain = _relative_gain(_best(before, lower_is_better), _best(inside, lower_is_better),
                          lower_is_better)
    return gain < t.stall_min_gain


def run_health(curve: Sequence[tuple[int, float]], *, lower_is_better: bool,
               floor: float | None, diverged: bool, final_coverage: float | None = None,
               num_classes: int | None = None, final_recall: float | None = None,
               thresholds: HealthThresholds) -> str:
    """The run's health verdict, one of :data:`VERDICTS`.

    Precedence is diverged > collapsed > degraded > stalled > ok, from the hardest
    failure to the softest, so each run gets the one word that most changes what to do:

    - diverged first: there is no trustworthy final model to judge at all;
    - collapsed next: missing modes make the final samples unusable even when the
      curve looks fine (FID can keep improving on the modes that are left);
    - degraded before stalled: a run that fell from its best has, trivially, also
      stopped improving; "it was good at step k" (keep the best checkpoint, stop
      earlier) is the more specific diagnosis than "it never got good" (change the
      hyperparameters);
    - ok means no rule fired on the evidence given: with an empty curve only the
      first two rules can fire, with one point stalled cannot.

    Args:
        curve: (step, primary metric value) pairs in increasing step order; the last
            one is the final value.
        lower_is_better: the primary metric's direction (FID: True; validity rate: False).
        floor: the metric's real-vs-real value (a ceiling when higher is better); None
            or non-positive turns the stall rule off.
        diverged: training stopped on a NaN/Inf loss or weight.
        final_coverage, num_classes: mode coverage at the end and the number of classes
            (labelled data only).
        final_recall: recall at the end, in [0, 1].
        thresholds: the rules' lines.

    Raises:
        ValueError: the steps are not strictly increasing.
    """
    steps = [s for s, _ in curve]
    for a, b in zip(steps, steps[1:], strict=False):
        if b <= a:
            raise ValueError(f"curve steps must be strictly increasing: step {b} follows {a}")
    values = [v for _, v in curve]
    if diverged or not all(math.isfinite(v) for v in values):
        return "diverged"
    if _is_collapsed(final_coverage, num_classes, final_recall, thresholds):
        return "collapsed"
    if values and _is_degraded(values, lower_is_better, thresholds):
        return "degraded"
    if _is_stalled(curve, lower_is_better, floor, thresholds):
        return "stalled"
    return "ok"
