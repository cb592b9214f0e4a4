"""Is one critic step repeatable? Rerun it from one saved state many times and count outcomes.

A diagnostic, not a test: the step is built and traced once, every trial restores the same
weights and optimizer state, runs one critic step on the same batch and seed, then one
generator step, and compares the critic's weights and metrics with the first trial's. Any
difference is an execution-time one: graph, inputs and state are the same.

    PYTHONPATH=src:tests python tests/repeat_probe.py gan-r1 3000

gan-r1 fails it (hence the three attempts of its replica test in ``test_steps.py``): with
D(x) of the loss from a forward pass separate from the R1 penalty's, up to 2.5% of trials
gave one other outcome (the R1 penalty of a block of samples 0.02-0.1% off), in bursts
(2026-12-05: 16 in 18,000 trials within four minutes, 0 in ~78,000 otherwise), never with
one intra-op thread. The step now takes D(x) from the penalty's own pass
(``wgan.steps._scored_by_penalty``): 0 in ~33,000, which is not yet proof. Compare with
the old step (a worktree at the commit before) in alternation, not against an old figure.

Environment knobs for bisecting: ``INTRA_THREADS`` / ``INTER_THREADS`` (TensorFlow's
thread pools), ``OP_DETERMINISM=1``, ``NO_OFF_TAPE=1`` (the penalty on the plain path).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import tensorflow as tf

if os.environ.get("INTRA_THREADS"):
    tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["INTRA_THREADS"]))
if os.environ.get("INTER_THREADS"):
    tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["INTER_THREADS"]))
if os.environ.get("OP_DETERMINISM"):
    tf.config.experimental.enable_op_determinism()

from step_harness import SHAPE, tiny_params  # noqa: E402

import wgan.steps as steps_module  # noqa: E402
from wgan.config import resolve_train  # noqa: E402
from wgan.training_setup import build_training  # noqa: E402


def probe(variant: str, trials: int) -> tuple[int, list[dict[str, float]]]:
    """(trials whose step differed from the first, their metric differences)."""
    if os.environ.get("NO_OFF_TAPE"):
        steps_module.runs_off_tape = lambda model: False
    params = tiny_params(variant, optimizer="sgd", lr=0.01)
    cfg = resolve_train(params.train)
    run = build_training(params.model, cfg, SHAPE, tf.distribute.get_strategy(), seed=0)
    for w in run.critic.trainable_weights:  # as test_steps' SCALE_VISIBLE (critic_gain 2)
        if "kernel" in w.path:
            w.assign(w * 2.0)
    state = run.critic.weights + run.generator.weights + run.c_opt.variables + run.g_opt.variables
    saved = [v.numpy() for v in state]
    real = np.random.default_rng(0).uniform(-1, 1, (cfg.batch, *SHAPE)).astype(np.float32)
    first, odd = None, []
    for _ in range(trials):
        for v, value in zip(state, saved, strict=True):
            v.assign(value)
        metrics = run.steps.critic_step(real, tf.constant([0, 0], tf.int64))
        outcome = ([w.numpy() for w in run.critic.weights],
                   {k: float(v) for k, v in metrics.items()})
        run.steps.generator_step(tf.constant([0, 1], tf.int64))
        if first is None:
            first = outcome
            continue
        same = all(np.array_equal(a, b) for a, b in zip(first[0], outcome[0], strict=True))
        if not same or first[1] != outcome[1]:
            odd.append({k: outcome[1][k] - first[1][k] for k in first[1]})
    return len(odd), odd


if __name__ == "__main__":
    name, n = sys.argv[1], int(sys.argv[2])
    count, diffs = probe(name, n)
    print(f"{name}: {count} of {n - 1} repeats differ from the first")
    for d in diffs[:3]:
        print("  metric differences:", d)
