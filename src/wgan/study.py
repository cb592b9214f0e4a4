"""Studies: the repository's DVC experiments grouped by a param, summarised and drawn.

A study is many runs of the pipeline as DVC experiments, e.g. every variant × three
seeds (``dvc exp run --queue -S train.variant=gan,wgan -S seed=0,1,2``), perhaps run on
several machines and gathered with ``dvc exp push`` / ``dvc exp pull``. ::

    python -m wgan.study [NAME ...] [--by train.variant] [--out reports/study] [-A]

lists the finished experiments (``dvc exp show --json``; derived from HEAD, or from every
commit with ``-A``; only the NAMEs when given), groups them by the ``--by`` param and
writes to ``--out``:

- ``study.json`` and ``study.md``: per group, the number of runs, statistics of the final
  and best primary metric and of the time to the target, and the count of each health
  verdict; one row per run;
- ``<metric>_vs_step.png`` and ``<metric>_vs_seconds.png``: the primary metric against
  generator iterations and training seconds, a thin line per run, each group's median bold.

Every number is read from the experiment's own commit (``git show <rev>:<path>``), not
from ``dvc exp show``'s metrics, which drop null values: a null ``target_step`` ("never
reached") must stay distinct from a missing one ("not recorded"). The primary metric and
its final value, best, target and health come from ``metrics/train.json``; for runs whose
train.json predates them, the final value falls back to ``metrics/eval.json`` and the
rest is null (health "unknown"). Curves come from ``metrics/eval_curves.tsv``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter

from wgan.files import write_json

__all__ = ["Curve", "Run", "list_experiments", "read_curve", "load_run", "describe",
           "group_runs", "summarize", "median_curve", "curve_figure", "write_study", "main"]

# Where the pipeline writes them (dvc.yaml); all three are git-tracked, so each is in
# its experiment's commit.
TRAIN_JSON = "metrics/train.json"
EVAL_JSON = "metrics/eval.json"
CURVES_TSV = "metrics/eval_curves.tsv"

# Runs from before train.json named its primary metric: where eval.json holds it, and
# its direction. The first one present wins (labelled images, then masks).
EVAL_FALLBACK = {"fid": (("classifier", "fid", "value"), True),
                 "validity_rate": (("masks", "validity_rate", "value"), False)}

X_AXES = {"step": "generator iterations", "train_seconds": "training seconds"}
STATISTICS = ("n is the number of runs with a value; median; mean ± std, the sample standard "
              "deviation (ddof = 1); null (–) when n = 0, std null when n < 2")


@dataclass(frozen=True)
class Curve:
    """A run's evaluations during training: parallel arrays in step order."""

    step: np.ndarray
    train_seconds: np.ndarray
    value: np.ndarray


@dataclass(frozen=True)
class Run:
    """One finished experiment, as the study sees it (None: not recorded)."""

    name: str
    rev: str
    group: Any
    metric: str
    lower_is_better: bool
    final: float | None
    best: float | None
    best_step: int | None
    target_step: int | None
    target_train_seconds: float | None
    target_recorded: bool
    health: str
    curve: Curve | None


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"variant": "gan"}}`` → ``{"train.variant": "gan"}``, as ``-S`` names them."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def list_experiments(show: list[dict]) -> tuple[list[dict], list[dict]]:
    """Finished experiments in ``dvc exp show --json`` output, and the rest with a reason.

    dvc 3 lists baselines (the first is the workspace), each with ``experiments``: entries
    with ``revs`` (the experiment's commit first) and an ``executor`` whose ``state`` is
    queued, running, failed or success; pulled experiments have no executor. Only
    finished ones have a commit with outputs to read.

    Returns:
        ``[{"name", "rev", "params"}]`` (params flattened from params.yaml) and
        ``[{"name", "reason"}]``.
    """
    finished, skipped = [], []
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            tip = exp["revs"][0]
            name = exp.get("name") or tip["rev"][:7]
            state = (exp.get("executor") or {}).get("state", "success")
            if state != "success":
                skipped.append({"name": name, "reason": f"experiment is {state}"})
                continue
            params = tip["data"]["params"].get("params.yaml", {}).get("data", {})
            finished.append({"name": name, "rev": tip["rev"], "params": _flatten(params)})
    return finished, skipped


def read_curve(text: str, metric: str) -> Curve:
    """Parse ``eval_curves.tsv`` (header ``step  train_seconds  eval_seconds  <metrics…>``).

    Raises:
        ValueError: a needed column is missing, or a row has the wrong number of fields.
    """
    lines = [line.split("\t") for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{CURVES_TSV}: empty")
    header, *rows = lines
    for column in ("step", "train_seconds", metric):
        if column not in header:
            raise ValueError(f"{CURVES_TSV}: no column {column!r} in {header}")
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"{CURVES_TSV}: row {i + 2} has {len(row)} fields, "
                             f"the header {len(header)}")
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(header))
    return Curve(*(table[:, header.index(c)] for c in ("step", "train_seconds", metric)))


def _dig(tree: dict, path: Sequence[str]) -> Any:
    for key in path:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _primary(train: dict, evaluation: dict) -> tuple[str, bool, float | None] | None:
    """(metric, lower_is_better, final value), from train.json, else from eval.json."""
    if "primary_metric" in train:
        metric = train["primary_metric"]
        final = train.get(f"final_{metric}")
        if final is None and metric in EVAL_FALLBACK:
            final = _dig(evaluation, EVAL_FALLBACK[metric][0])
        return metric, bool(train["primary_lower_is_better"]), final
    for metric, (path, lower_is_better) in EVAL_FALLBACK.items():
        value = _dig(evaluation, path)
        if isinstance(value, int | float):
            return metric, lower_is_better, value
    return None


def _git_file(repo: Path, rev: str, path: str) -> str | None:
    """``path`` at commit ``rev``, or None when the commit has no such file."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              check=True).stdout

    if not git("ls-tree", "--name-only", rev, "--", path):
        return None
    return git("show", f"{rev}:{path}")


def load_run(repo: Path, exp: dict, by: str) -> Run | str:
    """The study's view of one experiment from :func:`list_experiments`, or the reason
    it cannot be studied."""
    texts = {p: _git_file(repo, exp["rev"], p) for p in (TRAIN_JSON, EVAL_JSON, CURVES_TSV)}
    train = json.loads(texts[TRAIN_JSON]) if texts[TRAIN_JSON] else {}
    evaluation = json.loads(texts[EVAL_JSON]) if texts[EVAL_JSON] else {}
    primary = _primary(train, evaluation)
    if primary is None:
        return f"no primary metric in {TRAIN_JSON} or {EVAL_JSON}"
    metric, lower_is_better, final = primary
    curve = read_curve(texts[CURVES_TSV], metric) if texts[CURVES_TSV] else None
    return Run(name=exp["name"], rev=exp["rev"], group=exp["params"].get(by), metric=metric,
               lower_is_better=lower_is_better, final=final, best=train.get(f"best_{metric}"),
               best_step=train.get("best_step"), target_step=train.get("target_step"),
               target_train_seconds=train.get("target_train_seconds"),
               target_recorded="target_step" in train, health=train.get("health", "unknown"),
               curve=curve)


def describe(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """n, median, mean and std (ddof = 1) of the values that are not None.

    A study has a handful of runs per group, so the median is given beside the mean and
    std is the sample estimate; neither pretends to exist for too few runs.
    """
    x = np.array([v for v in values if v is not None], dtype=np.float64)
    return {"n": int(x.size),
            "median": float(np.median(x)) if x.size else None,
            "mean": float(np.mean(x)) if x.size else None,
            "std": float(np.std(x, ddof=1)) if x.size > 1 else None}


def _label(value: Any) -> str:
    """A param value as the study names its group: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs by their ``--by`` value: numbers in numeric order, then the rest by name."""
    def order(value: Any) -> tuple:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return (0, value, "") if is_number else (1, 0, _label(value))

    groups: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: (order(r.group), r.name)):
        groups.setdefault(_label(run.group), []).append(run)
    return groups


def _group_summary(runs: Sequence[Run]) -> dict[str, Any]:
    reached = [r for r in runs if r.target_step is not None]
    return {
        "runs": len(runs),
        "experiments": [r.name for r in runs],
        "final": describe([r.final for r in runs]),
        "best": describe([r.best for r in runs]),
        "target_recorded": sum(r.target_recorded for r in runs),
        "target_reached": len(reached),
        "target_step": describe([r.target_step for r in reached]),
        "target_train_seconds": describe([r.target_train_seconds for r in reached]),
        "health": dict(sorted(Counter(r.health for r in runs).items())),
    }


def summarize(runs: Sequence[Run], by: str, skipped: Sequence[dict]) -> dict[str, Any]:
    """``study.json``: the groups' statistics, each run's numbers, and what was skipped.

    Raises:
        ValueError: no runs, the runs disagree on the primary metric, or none has the param.
    """
    if not runs:
        raise ValueError("no finished experiment to study" + "".join(
            f"\n  {s['name']}: {s['reason']}" for s in skipped))
    metrics = Counter((r.metric, r.lower_is_better) for r in runs)
    if len(metrics) > 1:
        raise ValueError(f"the runs have different primary metrics {dict(metrics)}; "
                         "study them separately (name the experiments)")
    if all(r.group is None for r in runs):
        raise ValueError(f"no experiment has the param {by!r}")
    metric, lower_is_better = next(iter(metrics))
    groups = group_runs(runs)
    return {
        "by": by,
        "primary_metric": metric,
        "lower_is_better": lower_is_better,
        "statistics": STATISTICS,
        "groups": {label: _group_summary(g) for label, g in groups.items()},
        "runs": [{"name": r.name, "rev": r.rev, "group": label, "final": r.final,
                  "best": r.best, "best_step": r.best_step, "target_step": r.target_step,
                  "target_train_seconds": r.target_train_seconds, "health": r.health,
                  "curve": r.curve is not None}
                 for label, g in groups.items() for r in g],
        "skipped": list(skipped),
    }


def median_curve(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """The pointwise median of (x, y) curves, over the x range they all cover.

    Runs are evaluated at the same steps but at different seconds, so each curve is
    interpolated linearly onto the union of their x values inside the common range: at
    shared steps that is the exact median; outside the common range a median of fewer
    runs would jump. Non-finite points are dropped first (a diverged run's last value).
    """
    finite = [(x[np.isfinite(y)], y[np.isfinite(y)]) for x, y in curves]
    finite = [(x, y) for x, y in finite if x.size]
    if not finite:
        return np.array([]), np.array([])
    lo, hi = max(x[0] for x, _ in finite), min(x[-1] for x, _ in finite)
    grid = np.unique(np.concatenate([x for x, _ in finite]))
    grid = grid[(grid >= lo) & (grid <= hi)]
    return grid, np.median([np.interp(grid, x, y) for x, y in finite], axis=0)


def curve_figure(groups: dict[str, list[Run]], x: str, by: str) -> Figure:
    """The primary metric against ``x`` (a :class:`Curve` field): thin lines per run in
    its group's colour, the group's median bold. A positive lower-is-better metric (FID)
    gets a log axis, since early values are orders of magnitude above late ones."""
    fig = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    runs = [r for g in groups.values() for r in g]
    for i, (label, group) in enumerate(groups.items()):
        colour = f"C{i % 10}"
        curves = [(getattr(r.curve, x), r.curve.value) for r in group if r.curve is not None]
        if not curves:
            continue
        for cx, cy in curves:
            ax.plot(cx, cy, color=colour, linewidth=0.7, alpha=0.5)
        mx, my = median_curve(curves)
        ax.plot(mx, my, color=colour, linewidth=2.5, label=f"{label} (median of {len(curves)})")
    metric, lower_is_better = runs[0].metric, runs[0].lower_is_better
    values = np.concatenate([r.curve.value for r in runs if r.curve is not None])
    if lower_is_better and np.all(values[np.isfinite(values)] > 0):
        ax.set_yscale("log")
        for axis_format in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis_format(FormatStrFormatter("%g"))  # 20, not 2×10¹
    ax.set_xlabel(X_AXES[x])
    ax.set_ylabel(f"{metric} ({'lower' if lower_is_better else 'higher'} is better)")
    ax.set_title(f"{metric} by {by}: one thin line per run, the median bold")
    ax.legend(title=by, fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _num(value: float | None) -> str:
    """A table entry: – for none, integers whole (steps), floats to 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _cell(stats: dict[str, Any]) -> str:
    """``median / mean ± std (n)``; – alone when there is no value."""
    if not stats["n"]:
        return "–"
    return (f"{_num(stats['median'])} / {_num(stats['mean'])} ± {_num(stats['std'])} "
            f"({stats['n']})")


def _markdown(summary: dict[str, Any], figures: list[str]) -> str:
    metric, by = summary["primary_metric"], summary["by"]
    direction = "lower" if summary["lower_is_better"] else "higher"
    lines = [f"# Study: {metric} by {by}", "",
             f"{len(summary['runs'])} experiments; primary metric `{metric}` ({direction} is "
             "better). Each statistic is median / mean ± std (n): " + STATISTICS + ". Best, "
             "target and health come from metrics/train.json (– and unknown for runs from "
             "before it recorded them); target statistics are over the runs that reached it.",
             "", f"| {by} | runs | final | best | target reached | target step | "
             "target seconds | health |", "|---|---|---|---|---|---|---|---|"]
    for label, g in summary["groups"].items():
        health = ", ".join(f"{k} {v}" for k, v in g["health"].items())
        lines.append(f"| {label} | {g['runs']} | {_cell(g['final'])} | {_cell(g['best'])} | "
                     f"{g['target_reached']}/{g['target_recorded']} | "
                     f"{_cell(g['target_step'])} | {_cell(g['target_train_seconds'])} | "
                     f"{health} |")
    lines += ["", "| experiment | rev | " + by + " | final | best | best step | target step | "
              "health |", "|---|---|---|---|---|---|---|---|"]
    for r in summary["runs"]:
        cells = [r["final"], r["best"], r["best_step"], r["target_step"]]
        lines.append(f"| {r['name']} | {r['rev'][:7]} | {r['group']} | "
                     + " | ".join(map(_num, cells)) + f" | {r['health']} |")
    lines.append("")
    if figures:
        lines += [f"![{f}]({f})" for f in figures]
    else:
        lines.append(f"No figures: no run has {CURVES_TSV} (evaluation during training off, "
                     "or runs from before it).")
    if summary["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{s['name']} ({s['reason']})"
                                              for s in summary["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def write_study(out: Path, runs: Sequence[Run], by: str, skipped: Sequence[dict]) -> dict:
    """Write study.json, study.md and the two figures to ``out``; return the summary.

    A figure a previous study left there is removed when this one has no curves, so
    nothing in ``out`` describes other runs.
    """
    summary = summarize(runs, by, skipped)
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    have_curves = any(r.curve is not None for r in runs)
    figures = []
    for x, suffix in (("step", "step"), ("train_seconds", "seconds")):
        path = out / f"{summary['primary_metric']}_vs_{suffix}.png"
        if have_curves:
            curve_figure(groups, x, by).savefig(path)
            figures.append(path.name)
        else:
            path.unlink(missing_ok=True)
    write_json(out / "study.json", summary)
    (out / "study.md").write_text(_markdown(summary, figures))
    return summary


def _exp_show(repo: Path, all_commits: bool) -> list[dict]:
    """``dvc exp show --json`` of ``repo``, run by this interpreter's dvc."""
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json"] + (["-A"] if all_commits else [])
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"dvc exp show failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m wgan.study", description=__doc__.split(
        "\n")[0], epilog="Writes study.json, study.md and <metric>_vs_{step,seconds}.png.")
    parser.add_argument("names", nargs="*", help="experiments to study (default: all)")
    parser.add_argument("--by", default="train.variant", help="param to group by")
    parser.add_argument("--out", type=Path, default=Path("reports/study"))
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("-A", "--all-commits", action="store_true",
                        help="experiments of every commit, not only of HEAD")
    args = parser.parse_args(argv)
    finished, skipped = list_experiments(_exp_show(args.repo, args.all_commits))
    if args.names:
        unknown = set(args.names) - {e["name"] for e in finished} - {
            s["name"] for s in skipped}
        if unknown:
            raise ValueError(f"no such experiment: {', '.join(sorted(unknown))}")
        finished = [e for e in finished if e["name"] in args.names]
        skipped = [s for s in skipped if s["name"] in args.names]
    runs = []
    for exp in finished:
        run = load_run(args.repo, exp, args.by)
        if isinstance(run, str):
            skipped.append({"name": exp["name"], "reason": run})
        else:
            runs.append(run)
    summary = write_study(args.out, runs, args.by, skipped)
    for label, g in summary["groups"].items():
        print(f"{args.by}={label}: runs {g['runs']}, final {summary['primary_metric']} "
              f"{_cell(g['final'])}, health {g['health']}")
    print(f"wrote {args.out}/study.md")
    return summary


if __name__ == "__main__":
    try:
        main()
    except (ValueError, RuntimeError, OSError) as err:
        sys.exit(f"error: {err}")
