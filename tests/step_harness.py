"""Run k training steps of a tiny model on fixed data under any strategy (tests only).

The same global batches and the same seeds are fed whatever the strategy, each replica
taking its contiguous slice, so results can be compared across replica counts. Run as a
script it is one worker of a multi-worker test and saves its final weights.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import tensorflow as tf

from wgan.config import parse_params, resolve_train
from wgan.training_setup import build_training

SHAPE = (28, 28, 1)
CLASSES = 10  # of a conditional model's labels


def tiny_params(variant: str, model: dict | None = None, **train):
    return parse_params({
        "train": {"variant": variant, "batch": 8, "jit_compile": False, **train},
        "model": {"base_channels": 4, "z_dim": 8, **(model or {})},
    })


def run_steps(strategy, variant: str, k: int = 2, stock_layers: bool = False,
              critic_gain: float = 1.0, model: dict | None = None, label: int | None = None,
              **train) -> tuple[dict, dict]:
    """Weights {"critic": [...], "generator": [...]} and the last step's metrics.

    The models are built as training builds them, or with stock Keras layers only.
    ``critic_gain`` scales the critic's initial kernels, so that its input-gradient norms
    exceed 1 and a one-sided penalty is not zero. A ``model.conditional`` pair gets real
    batches of random labels, or all of ``label``.
    """
    params = tiny_params(variant, model, **train)
    cfg = resolve_train(params.train)
    run = build_training(params.model, cfg, SHAPE, strategy, seed=0, xla_layers=not stock_layers,
                         num_classes=CLASSES)
    steps, critic, generator = run.steps, run.critic, run.generator
    for w in critic.trainable_weights:
        if "kernel" in w.path:
            w.assign(w * critic_gain)
    rng = np.random.default_rng(0)
    replicas = strategy.num_replicas_in_sync
    metrics = {}
    for i in range(k):
        real = rng.uniform(-1, 1, (cfg.batch, *SHAPE)).astype(np.float32)
        labels = None
        if run.classes is not None:
            labels = (np.full(cfg.batch, label) if label is not None
                      else rng.integers(0, CLASSES, cfg.batch)).astype(np.int32)
        share = cfg.batch // replicas

        def slice_for(ctx, real=real, share=share, labels=labels):
            part = slice(ctx.replica_id_in_sync_group * share,
                         (ctx.replica_id_in_sync_group + 1) * share)
            return real[part] if run.classes is None else (real[part], labels[part])

        batch = strategy.experimental_distribute_values_from_function(slice_for)
        c = steps.critic_update(batch, tf.constant([0, 2 * i], tf.int64), i)
        g = steps.generator_step(tf.constant([0, 2 * i + 1], tf.int64))
        metrics = {name: float(v) for name, v in {**c, **g}.items()}
    weights = {"critic": [w.numpy() for w in critic.weights],
               "generator": [w.numpy() for w in generator.weights],
               "critic_paths": [w.path for w in critic.weights]}
    return weights, metrics


if __name__ == "__main__":
    variant, out = sys.argv[1], sys.argv[2]
    strategy = (tf.distribute.MultiWorkerMirroredStrategy() if "TF_CONFIG" in os.environ
                else tf.distribute.get_strategy())
    weights, metrics = run_steps(strategy, variant)
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
    np.savez(f"{out}-{task}.npz", *weights["critic"], *weights["generator"])
    with open(f"{out}-{task}.json", "w") as f:
        json.dump({"metrics": metrics, "replicas": strategy.num_replicas_in_sync}, f)
