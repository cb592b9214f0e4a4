"""Evaluation overhead: the default run's evaluation seconds over its training seconds.

Issue 16 asks that evaluating during training cost at most 10% of the default run's
training time. The default run is ``params.yaml`` as it stands (read here, so a change
of ``train.steps``, ``eval_every``, ``eval_n``, variant or model moves the figure):
bundled MNIST, scored by the domain classifier and SWD.

Two measurements, on prepared bundled MNIST with a domain classifier (1 epoch: the
feature extractor's cost does not depend on how long it was trained) and the
``reference`` stage's features, both made off the clock:

* **Alternating rounds** in one process: each round times ``iterations`` generator
  iterations exactly as ``wgan.train`` runs them (``_train_iteration``, data from
  ``training_stream``, XLA and op determinism as configured) and then one evaluation
  (``Monitor.score`` of the EMA generator at ``eval_n``, what the loop's
  ``eval_seconds`` measures), so both see the same machine speed. The default run's
  overhead is then ``(evaluations × eval s + setup s) / (steps × iteration s)``, where
  *setup* is ``build_monitor`` (reference data read, floor scored; once per run, before
  the loop's clock starts) and *evaluations* is how many ``eval_every`` gives (the last
  step included). The figure with a target is that ratio with the setup included.
* **A real short run** (``wgan.train.train`` at the default params, fewer steps, an
  evaluation every ``cross_every`` steps) as a cross-check: its own ``eval_seconds``
  over its ``wall_time_s`` (training seconds, evaluation excluded), scaled to the
  default run's evaluations per step. Its ``wall_time_s`` includes the XLA compilation of
  the first steps, which a short run amortises less than the default one, so it reads
  somewhat low.
"""

from __future__ import annotations

import shutil
import statistics
import time

from benchmarks.common import ROOT, WORK, Figure, LoadMeter, command, wait_for_quiet
from benchmarks.train_steps import _alternating, _prepared_mnist

TARGET = 0.10
SIZES = {
    # quick: every code path, tiny (no XLA compile, batch 16); its figures say nothing
    # about the default run
    "quick": dict(rounds=1, iterations=2, eval_n=200, cross_steps=4, cross_every=2,
                  model={"base_channels": 4, "z_dim": 8},
                  train={"jit_compile": False, "batch": 16}),
    "default": dict(rounds=5, iterations=20, eval_n=None, cross_steps=300, cross_every=50,
                    model={}, train={}),
}
SIZES["full"] = {**SIZES["default"], "rounds": 9}


def evaluations(steps: int, every: int) -> int:
    """How many evaluations a run of ``steps`` makes: every ``every`` steps and the last."""
    return steps // every + (steps % every != 0)


def _fixture(params):
    """Prepared bundled MNIST, its domain classifier and reference features (made once)."""
    from wgan.classifier import train_classifier
    from wgan.config import ClassifierConfig
    from wgan.reference import write_reference

    prepared, root = _prepared_mnist(), WORK / "eval-overhead"
    classifier, reference = root / "classifier", root / "reference"
    if not (classifier / "info.json").is_file():
        train_classifier(prepared, classifier, ClassifierConfig(epochs=1), seed=0)
    write_reference(prepared, classifier, reference, params)  # for this eval_n
    return prepared, classifier, reference


def _params(spec: dict, steps: int | None = None, every: int | None = None):
    """The default run's params (``params.yaml``), with the size's overrides."""
    from wgan.config import load_params, parse_params, to_dict

    params = to_dict(load_params(ROOT / "params.yaml"))
    params["model"].update(spec["model"])
    params["train"].update(spec["train"])
    params["train"].update({k: v for k, v in {"eval_n": spec["eval_n"], "steps": steps,
                                              "eval_every": every}.items() if v is not None})
    return parse_params(params)


def _alternating_rounds(spec: dict, params, prepared, classifier, reference) -> dict:
    import tensorflow as tf

    from wgan.config import resolve_train
    from wgan.monitor import build_monitor
    from wgan.prepared.format import read_meta
    from wgan.prepared.read import training_stream
    from wgan.train import _train_iteration
    from wgan.training_setup import build_training

    cfg, meta = resolve_train(params.train), read_meta(prepared)
    strategy = tf.distribute.get_strategy()
    run = build_training(params.model, cfg, meta.shape, strategy, params.seed,
                         num_classes=meta.num_classes)
    data = iter(strategy.distribute_datasets_from_function(
        lambda ctx: training_stream(prepared, cfg.batch, seed=params.seed, input_context=ctx,
                                    with_labels=run.classes is not None)))
    wait_for_quiet()
    meter = LoadMeter()
    t0 = time.perf_counter()
    monitor = build_monitor(prepared, classifier, reference, meta, cfg.eval_n, params.seed)
    setup_s, setup_load = time.perf_counter() - t0, meter.stop()
    counter = iter(range(10**9))

    def iterations(_: int):
        for _ in range(spec["iterations"]):
            out = _train_iteration(run, data, cfg, next(counter) % cfg.steps, params.seed)
        return out["generator_loss"]

    result = _alternating({"iteration": iterations,
                           "evaluation": lambda _: monitor.score(run.sampler)[monitor.primary]},
                          1, spec["rounds"])
    iteration = [r["iteration"] / spec["iterations"] for r in result.values]
    evaluation = [r["evaluation"] for r in result.values]
    n_eval = evaluations(cfg.steps, cfg.eval_every)
    ratios = [n_eval * e / (cfg.steps * i) for e, i in zip(evaluation, iteration, strict=True)]
    return {"cfg": cfg, "monitor": monitor, "n_eval": n_eval, "setup_s": setup_s,
            "setup_load": setup_load, "iteration_s": statistics.median(iteration),
            "evaluation_s": statistics.median(evaluation), "ratio": statistics.median(ratios),
            "iteration_rounds": [round(v, 4) for v in iteration],
            "evaluation_rounds": [round(v, 3) for v in evaluation],
            "ratio_rounds": [round(v, 4) for v in ratios], "load": result.load,
            "rounds_discarded_for_load": result.discarded}


def _real_run(spec: dict, prepared, classifier, reference) -> tuple[dict, float]:
    """A short ``wgan.train.train`` at the default params; its train.json and the load."""
    from wgan.train import TrainOutputs, train

    params = _params(spec, spec["cross_steps"], spec["cross_every"])
    out = WORK / "eval-overhead" / "run"
    shutil.rmtree(out, ignore_errors=True)  # never resume an earlier run
    wait_for_quiet()
    meter = LoadMeter()
    summary = train(params, prepared, TrainOutputs.under(out), classifier, reference)
    return summary, meter.stop()


def run(size: str = "default") -> list[Figure]:
    spec = SIZES[size]
    params = _params(spec)
    prepared, classifier, reference = _fixture(params)
    a = _alternating_rounds(spec, params, prepared, classifier, reference)
    cfg, cmd = a["cfg"], command("eval_overhead", size)
    train_s = cfg.steps * a["iteration_s"]
    with_setup = (a["n_eval"] * a["evaluation_s"] + a["setup_s"]) / train_s
    run_what = (f"{cfg.variant}, {cfg.steps} steps, eval_every {cfg.eval_every}, eval_n "
                f"{cfg.eval_n}, primary {a['monitor'].primary}")
    details = {"steps": cfg.steps, "eval_every": cfg.eval_every, "eval_n": cfg.eval_n,
               "evaluations": a["n_eval"], "iteration_s": round(a["iteration_s"], 4),
               "evaluation_s": round(a["evaluation_s"], 3), "setup_s": round(a["setup_s"], 2),
               "setup_load": a["setup_load"], "train_s_estimate": round(train_s, 1),
               "without_setup": round(a["ratio"], 4),
               "iterations_per_round": spec["iterations"],
               "rounds": {"iteration_s": a["iteration_rounds"],
                          "evaluation_s": a["evaluation_rounds"],
                          "ratio_without_setup": a["ratio_rounds"]},
               "rounds_discarded_for_load": a["rounds_discarded_for_load"]}
    figures = [
        Figure(id="eval_overhead.default_run.ratio",
               what=f"evaluation during training / training time of the default run "
                    f"({run_what}; {a['n_eval']} evaluations + reference setup), from "
                    "alternating rounds", value=round(with_setup, 4), unit="×", command=cmd,
               target=f"<= {TARGET}", meets=with_setup <= TARGET,
               load=max(a["load"], a["setup_load"]), details=details),
        Figure(id="eval_overhead.evaluation_s",
               what=f"one evaluation during training (eval_n {cfg.eval_n}, "
                    f"{', '.join(a['monitor'].columns)}), rounds alternating with training "
                    "iterations", value=round(a["evaluation_s"], 3), unit="s", command=cmd,
               load=a["load"], details={"rounds": a["evaluation_rounds"]}),
    ]
    summary, load = _real_run(spec, prepared, classifier, reference)
    made = evaluations(summary["steps"], spec["cross_every"])
    scaled = (a["n_eval"] * summary["eval_seconds"] / made) / (
        cfg.steps * summary["wall_time_s"] / summary["steps"])
    figures.append(Figure(
        id="eval_overhead.real_run.ratio",
        what=f"cross-check, a real run ({spec['cross_steps']} steps, an evaluation every "
             f"{spec['cross_every']}): its eval_seconds per evaluation and wall_time_s "
             f"per step (train.json), scaled to the default run's {a['n_eval']} evaluations "
             f"in {cfg.steps} steps (setup not included)", value=round(scaled, 4), unit="×",
        command=cmd, load=load,
        details={"eval_seconds": summary["eval_seconds"],
                 "wall_time_s": summary["wall_time_s"], "steps": summary["steps"],
                 "evaluations": made,
                 "measured_ratio": round(summary["eval_seconds"] / summary["wall_time_s"], 4)}))
    return figures


if __name__ == "__main__":
    import sys

    for fig in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(fig.id, fig.value, fig.unit, fig.meets, fig.load, fig.details)
