"""Issue 19's search for the default run: what a generator iteration of each candidate
costs, and its FID against estimated quiet seconds (docs/performance.md, "Default run
(issue 19)").

The machine is shared, so the training runs' own seconds are inflated by other work and
differ from run to run. Candidates are therefore compared by FID against generator
iterations (the runs' ``metrics/eval_curves.tsv``), and iterations are turned into quiet
seconds with each candidate's iteration cost *relative to the default's*, measured here
in one process, in rounds that alternate between the candidates (same machine speed for
all), times the default's quiet iteration inside ``make repro`` (training wall time ÷
steps of ``repro.default_s`` in ``benchmarks/results.json``, from ``python -m
benchmarks.run --full --only dvc_pipeline``: compilation and evaluations included).

    python -m benchmarks.default_candidates ratios > docs/data/default_candidates_ratios.json
    python -m benchmarks.default_candidates table [--ratios JSON] [--out TSV] \\
        LABEL=COST_KEY=RUN/metrics/eval_curves.tsv ...
    python -m benchmarks.default_candidates plot [--table TSV] [--figure PNG]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

from benchmarks.common import ROOT
from benchmarks.train_steps import _alternating, _build

SHAPE = (28, 28, 1)
BASELINE = "wgan-gp c2 b32 extra1 conditional"  # the default run's own iteration
# name -> (variant, model params, batch, train params): only what changes a step's cost
# (learning rates, betas and the EMA decay do not; every candidate keeps the EMA).
COSTS = {
    "wgan-gp c2": ("wgan-gp", {}, 64, {"n_critic": 2}),
    "wgan-gp c1": ("wgan-gp", {}, 64, {"n_critic": 1}),
    "wgan-gp c2 b32": ("wgan-gp", {}, 32, {"n_critic": 2}),
    "wgan-gp c2 b16": ("wgan-gp", {}, 16, {"n_critic": 2}),
    "wgan-gp c1 b32": ("wgan-gp", {}, 32, {"n_critic": 1}),
    "wgan-sn c2": ("wgan-sn", {}, 64, {"n_critic": 2}),
    "wgan-gp c2 b32 layer-norm": ("wgan-gp", {"critic_norm": "layer"}, 32, {"n_critic": 2}),
    "wgan-gp c2 b32 extra1": ("wgan-gp", {"extra_layers": 1}, 32, {"n_critic": 2}),
    "wgan-gp c2 b32 extra2": ("wgan-gp", {"extra_layers": 2}, 32, {"n_critic": 2}),
    "wgan-gp c2 b32 extra1 layer-norm": ("wgan-gp", {"extra_layers": 1, "critic_norm": "layer"},
                                         32, {"n_critic": 2}),
    "wgan-gp c2 b32 extra1 conditional": ("wgan-gp", {"extra_layers": 1, "conditional": True},
                                          32, {"n_critic": 2}),
}
RATIOS = ROOT / "docs" / "data" / "default_candidates_ratios.json"
TABLE = ROOT / "docs" / "data" / "default_candidates.tsv"  # the first search (EPYC, c5 anchor)
COLUMNS = ("candidate", "step", "loaded_train_seconds", "est_seconds", "fid", "precision",
           "recall", "classifier_score", "mode_coverage")
FIGURE = ROOT / "docs" / "images" / "default_candidates_fid.png"


def baseline_quiet_iteration_s() -> float:
    """The default's quiet iteration as ``make repro`` ran it, last recorded by the
    dvc_pipeline benchmark (its full size)."""
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    details = results["figures"]["repro.default_s"]["details"]
    return round(details["train_wall_s"] / details["train_steps"], 4)


def iteration_ratios(rounds: int = 7, per_round: int = 4,
                     names: list[str] | None = None) -> dict[str, dict]:
    """Each candidate's generator iteration ÷ the baseline's, medians over rounds in which
    every candidate (``names``, default all) and the baseline run ``per_round`` iterations
    in turn (XLA, fixed real batch, EMA on)."""
    import tensorflow as tf

    names = [BASELINE, *(n for n in names or COSTS if n != BASELINE)]
    calls = {}
    for name in names:
        variant, model, batch, train = COSTS[name]
        cfg, steps, _ = _build(SHAPE, model, variant, True, batch, {**train, "ema": 0.999})
        real = tf.random.stateless_uniform([batch, *SHAPE], [5, 6], -1, 1)
        if model.get("conditional"):  # the batch's labels, 0..9 in turn
            real = (real, tf.range(batch, dtype=tf.int32) % 10)

        def iteration(i: int, steps=steps, real=real, n_critic=cfg.n_critic):
            for k in range(n_critic):
                steps.critic_step(real, tf.constant([k, i], tf.int64))
            return steps.generator_step(tf.constant([0, i], tf.int64))["generator_loss"]

        calls[name] = iteration
    result = _alternating(calls, per_round, rounds)
    base_s = baseline_quiet_iteration_s()
    out = {}
    for name in names:
        ratios = [r[name] / r[BASELINE] for r in result.values]
        ratio = statistics.median(ratios)
        out[name] = {"ratio": round(ratio, 3), "quiet_iteration_s": round(ratio * base_s, 4),
                     "loaded_iteration_s": round(statistics.median(r[name] for r in
                                                                  result.values), 4),
                     "round_ratios": [round(v, 3) for v in ratios]}
    out["_load"] = {"max_other_cores": round(result.load, 2), "baseline_quiet_s": base_s}
    return out


def table(runs: dict[str, tuple[str, Path]], ratios: Path = RATIOS, out: Path = TABLE) -> None:
    """Write ``out``: each run's evaluations during training (label -> (``COSTS`` key, its
    ``eval_curves.tsv``)) with estimated quiet seconds = step × the cost key's quiet
    iteration (from ``ratios``, the output of :func:`iteration_ratios`)."""
    quiet = {k: v["quiet_iteration_s"] for k, v in json.loads(ratios.read_text()).items()
             if k in COSTS}
    rows = []
    for label, (cost, curves) in runs.items():
        with curves.open() as f:
            for row in csv.DictReader(f, delimiter="\t"):
                step = int(row["step"])
                rows.append({**{k: row[k] for k in COLUMNS[4:]}, "candidate": label,
                             "step": step, "loaded_train_seconds": row["train_seconds"],
                             "est_seconds": round(step * quiet[cost], 1)})
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def plot(table: Path = TABLE, figure: Path = FIGURE) -> None:
    """FID (classifier features, ``eval_n`` samples) against estimated quiet training
    seconds, one line per candidate of ``table`` (columns candidate, step, est_seconds,
    fid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[tuple[float, float]]] = {}
    with table.open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            lines.setdefault(row["candidate"], []).append((float(row["est_seconds"]),
                                                           float(row["fid"])))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, points in lines.items():
        ax.plot(*zip(*sorted(points), strict=True), marker=".", label=name)
    ax.set(xlabel="estimated quiet training seconds (iterations × the default's quiet "
                  "iteration × cost ratio)", ylabel="FID during training (1k samples)",
           yscale="log", title="Default-run candidates, bundled MNIST, seed 0")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.default_candidates")
    sub = parser.add_subparsers(dest="command", required=True)
    rat = sub.add_parser("ratios", help="print each candidate's iteration cost ÷ the default's")
    rat.add_argument("names", nargs="*", metavar="COST_KEY",
                     help="candidates to time (default: all of COSTS)")
    tab = sub.add_parser("table", help="evaluations during training, est. quiet seconds")
    tab.add_argument("runs", nargs="+", metavar="LABEL=COST_KEY=EVAL_CURVES_TSV")
    tab.add_argument("--ratios", type=Path, default=RATIOS)
    tab.add_argument("--out", type=Path, default=TABLE)
    fig = sub.add_parser("plot", help="FID against estimated quiet seconds")
    fig.add_argument("--table", type=Path, default=TABLE)
    fig.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args(argv)
    if args.command == "ratios":
        if unknown := set(args.names) - set(COSTS):
            parser.error(f"unknown COST_KEY {sorted(unknown)}; known: {', '.join(COSTS)}")
        print(json.dumps(iteration_ratios(names=args.names), indent=1))
    elif args.command == "table":
        if not all(run.count("=") == 2 for run in args.runs):
            parser.error("each run is LABEL=COST_KEY=EVAL_CURVES_TSV")
        table({label: (cost, Path(path)) for label, cost, path in
               (run.split("=") for run in args.runs)}, args.ratios, args.out)
    else:
        plot(args.table, args.figure)


if __name__ == "__main__":
    main(sys.argv[1:])
