"""Run health on synthetic curves: each verdict, each rule's boundary and the precedence,
for a lower-is-better metric (FID-like) and a higher-is-better one (validity-rate-like).

Curves are written as "times worse than the floor" factors and turned into values per
direction (floor × f, or floor / f), so one curve shape tests both. Factors, floors and
thresholds are powers of two or dyadic fractions, so each boundary is hit exactly.
"""

import math
from dataclasses import dataclass, replace

import pytest

from wgan.health import HealthThresholds, run_health


@dataclass(frozen=True)
class Metric:
    lower_is_better: bool
    floor: float

    def value(self, worse: float) -> float:
        """The value that is ``worse`` times worse than the floor."""
        return self.floor * worse if self.lower_is_better else self.floor / worse

    def improved(self, value: float, gain: float) -> float:
        """``value`` improved by the relative ``gain``."""
        return value * (1 - gain) if self.lower_is_better else value * (1 + gain)

    def worsened(self, value: float, factor: float) -> float:
        """``value`` made ``factor`` times worse."""
        return value * factor if self.lower_is_better else value / factor


FID = Metric(lower_is_better=True, floor=2.0)
VALIDITY = Metric(lower_is_better=False, floor=1.0)
METRICS = pytest.mark.parametrize("m", [FID, VALIDITY], ids=["fid", "validity"])

# The boundary tests set lines at exactly representable values of their own.
LINES = HealthThresholds(collapse_recall=0.25, stall_ratio=16.0, stall_window=0.25,
                         stall_min_gain=0.125, degrade_factor=2.0)
NUDGE = 1 + 2**-20  # "just past a line", far above float rounding


def curve(m: Metric, factors: list[float], every: int = 100) -> list[tuple[int, float]]:
    """Evaluations at steps every, 2·every, … with the given worse-than-floor factors."""
    return [(every * (i + 1), m.value(f)) for i, f in enumerate(factors)]


def health(m: Metric, points, thresholds=LINES, **kwargs) -> str:
    kwargs.setdefault("diverged", False)
    return run_health(points, lower_is_better=m.lower_is_better, floor=m.floor,
                      thresholds=thresholds, **kwargs)


IMPROVING_FAR = [64, 56, 48, 40, 36, 32, 28, 24]  # far from the floor, still gaining
CONVERGED = [64, 16, 8, 8, 8, 8, 8, 8]            # a plateau near the floor
STUCK_FAR = [64, 40, 32, 32, 32, 32, 32, 32]      # a plateau far from the floor
FELL_BACK = [64, 16, 8, 8, 8, 16, 32, 32]         # near the floor once, then worse


@METRICS
@pytest.mark.parametrize("factors", [IMPROVING_FAR, CONVERGED], ids=["improving", "converged"])
def test_ok(m, factors):
    assert health(m, curve(m, factors)) == "ok"


@METRICS
def test_diverged_by_flag_or_by_a_non_finite_value(m):
    assert health(m, curve(m, CONVERGED), diverged=True) == "diverged"
    for bad in (math.nan, math.inf):
        points = curve(m, CONVERGED)
        points[3] = (points[3][0], bad)
        assert health(m, points) == "diverged"


@METRICS
def test_collapsed_at_half_the_classes_or_fewer(m):
    points = curve(m, CONVERGED)
    assert health(m, points, final_coverage=6, num_classes=10) == "ok"
    assert health(m, points, final_coverage=5, num_classes=10) == "collapsed"
    assert health(m, points, final_coverage=5, num_classes=9) == "ok"  # 5 > 4.5
    assert health(m, points, final_coverage=5) == "ok"  # no class count: rule off


@METRICS
def test_collapsed_below_the_recall_line(m):
    points = curve(m, CONVERGED)
    line = LINES.collapse_recall
    assert health(m, points, final_recall=line) == "ok"
    assert health(m, points, final_recall=line / NUDGE) == "collapsed"


@METRICS
def test_degraded_past_the_factor(m):
    points = curve(m, CONVERGED)
    best = points[-1][1]
    at_line = points[:-1] + [(points[-1][0] + 100, m.worsened(best, LINES.degrade_factor))]
    assert health(m, at_line) == "ok"
    past = points[:-1] + [(points[-1][0] + 100,
                           m.worsened(best, LINES.degrade_factor * NUDGE))]
    assert health(m, past) == "degraded"
    assert health(m, curve(m, FELL_BACK)) == "degraded"


@METRICS
def test_stalled_far_from_the_floor_without_gain(m):
    assert health(m, curve(m, STUCK_FAR)) == "stalled"


@METRICS
def test_stall_ratio_boundary(m):
    """A plateau exactly at stall_ratio × floor came within it: not stalled."""
    at_line = [64, 40] + [LINES.stall_ratio] * 6
    assert health(m, curve(m, at_line)) == "ok"
    past = [64, 40] + [LINES.stall_ratio * NUDGE] * 6
    assert health(m, curve(m, past)) == "stalled"


@METRICS
def test_stall_gain_boundary(m):
    """Steps 100..800, window 0.25: the window starts at step 625 (points 700 and 800)."""
    before = curve(m, [64, 48, 40, 32, 32, 32])
    best_before = before[-1][1]
    enough = m.improved(best_before, LINES.stall_min_gain)
    assert health(m, before + [(700, enough), (800, enough)]) == "ok"
    short = m.improved(best_before, LINES.stall_min_gain / NUDGE)
    assert health(m, before + [(700, short), (800, short)]) == "stalled"


@METRICS
def test_stall_window_is_the_last_fraction_of_the_run(m):
    """The same gain counts only when it falls inside the window."""
    gain_at_the_end = [128, 80, 64, 64, 64, 64, 64, 32]
    assert health(m, curve(m, gain_at_the_end)) == "ok"
    gain_long_ago = [128, 80, 32, 32, 32, 32, 32, 32]
    assert health(m, curve(m, gain_long_ago)) == "stalled"


@METRICS
def test_stall_needs_a_floor_and_two_points(m):
    points = curve(m, STUCK_FAR)
    for floor in (None, 0.0):
        assert run_health(points, lower_is_better=m.lower_is_better, floor=floor,
                          diverged=False, thresholds=LINES) == "ok"
    assert health(m, points[-1:]) == "ok"


@METRICS
def test_precedence(m):
    """diverged > collapsed > degraded > stalled."""
    both = [64, 40, 32, 32, 32, 32, 64, 64]  # worse than its best by 2× and stuck far
    assert health(m, curve(m, both), thresholds=replace(LINES, degrade_factor=1.5)) \
        == "degraded"
    assert health(m, curve(m, FELL_BACK), final_recall=0.0) == "collapsed"
    assert health(m, curve(m, FELL_BACK), final_recall=0.0, diverged=True) == "diverged"


@METRICS
def test_an_empty_curve_can_only_diverge_or_collapse(m):
    assert health(m, []) == "ok"
    assert health(m, [], final_coverage=1, num_classes=10) == "collapsed"
    assert health(m, [], diverged=True) == "diverged"


def test_steps_must_increase():
    with pytest.raises(ValueError, match="step 100 follows 200"):
        health(FID, [(100, 8.0), (200, 7.0), (100, 6.0)])
    with pytest.raises(ValueError, match="step 200 follows 200"):
        health(FID, [(100, 8.0), (200, 7.0), (200, 6.0)])


def test_the_default_run_is_ok_with_the_default_thresholds():
    """make repro's run: FID 22.3 at 500 iterations, 9.18 at 2,200, 8.59 at 2,500 (floor
    1.02), recall 0.66, 10/10 classes. A power law through 8.59 at 2,500 fits the two
    earlier points within 2%; evaluations every 250 iterations."""
    def fid_at(step: int) -> float:
        return 8.59 * (2500 / step) ** 0.6

    assert abs(fid_at(500) - 22.3) / 22.3 < 0.02 and abs(fid_at(2200) - 9.18) / 9.18 < 0.02
    fid = [(s, fid_at(s)) for s in range(250, 2501, 250)]
    kwargs = {"lower_is_better": True, "floor": 1.02, "diverged": False,
              "final_coverage": 10, "num_classes": 10, "final_recall": 0.66,
              "thresholds": HealthThresholds()}
    assert run_health(fid, **kwargs) == "ok"
    # Had it plateaued at its final quality (8.4× the floor), it would still be ok; the
    # same plateau at weight-clipped wgan's 500-iteration FID (75) is stalled.
    plateau = fid[:4] + [(s, 8.59) for s, _ in fid[4:]]
    assert run_health(plateau, **kwargs) == "ok"
    stuck = [(s, max(v, 75.0)) for s, v in plateau]
    assert run_health(stuck, **kwargs) == "stalled"
